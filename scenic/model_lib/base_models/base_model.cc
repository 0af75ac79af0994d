#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

BaseModel::BaseModel(common::ConfigDict config, dataset::MetaData meta_data)
    : config_(std::move(config)), meta_data_(std::move(meta_data)) {}

common::ConfigDict BaseModel::model_config() const {
  if (!config_.has("model")) {
    auto defaults = common::ConfigDict::from_yaml_string(default_network_config(), "default model config");
    for (const auto& key : defaults.keys()) {
      // Copy each default so the resolved config.yaml records it.
      const_cast<common::ConfigDict&>(config_).apply_override("model." + key, defaults.json(key).dump());
    }
  }
  return config_.sub("model");
}

}  // namespace scenic::model
