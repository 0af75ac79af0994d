#include "scenic/projects/baselines/baselines.h"

#include "scenic/model_lib/base_models/classification_model.h"
#include "scenic/model_lib/base_models/multilabel_classification_model.h"
#include "scenic/projects/baselines/fully_connected.h"
#include "scenic/projects/baselines/simple_cnn.h"
#include "scenic/projects/baselines/vit.h"

namespace scenic::baselines {
namespace {

template <typename TaskModel>
model::ModelFactory factory(typename model::NetworkModel<TaskModel>::NetworkFn network_fn,
                            const char* default_config) {
  return [network_fn, default_config](const common::ConfigDict& config, const dataset::MetaData& meta) {
    return std::make_unique<model::NetworkModel<TaskModel>>(config, meta, network_fn, default_config);
  };
}

std::shared_ptr<model::Network> make_vit(const common::ConfigDict& c, const dataset::MetaData& meta) {
  return std::make_shared<ViT>(ViTOptions::from_config(c, meta));
}

}  // namespace

void register_baseline_models(model::ModelRegistry& registry) {
  using model::ClassificationModel;
  using model::MultiLabelClassificationModel;
  registry.add("fully_connected_classification",
               factory<ClassificationModel>(FullyConnected::from_config, kFullyConnectedDefaultConfig));
  registry.add("simple_cnn_classification",
               factory<ClassificationModel>(SimpleCNN::from_config, kSimpleCNNDefaultConfig));
  registry.add("vit_multilabel_classification",
               factory<MultiLabelClassificationModel>(make_vit, kViTDefaultConfig));
  registry.add("vit_classification", factory<ClassificationModel>(make_vit, kViTDefaultConfig));
}

}  // namespace scenic::baselines
