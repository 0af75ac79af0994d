// The model registry: `model_name` -> factory (Scenic's model_lib/models.py).
// Projects add their models from an explicit registration function that main() calls.
#pragma once

#include "scenic/common_lib/registry.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

class ModelRegistry : public common::Registry<ModelFactory> {
 public:
  ModelRegistry() : Registry("model_name") {}
  static ModelRegistry& global();
};

}  // namespace scenic::model
