#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

DatasetRegistry& DatasetRegistry::global() {
  static DatasetRegistry registry;
  return registry;
}

}  // namespace scenic::dataset
