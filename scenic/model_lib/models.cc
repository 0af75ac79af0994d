#include "scenic/model_lib/models.h"

namespace scenic::model {

ModelRegistry& ModelRegistry::global() {
  static ModelRegistry registry;
  return registry;
}

}  // namespace scenic::model
