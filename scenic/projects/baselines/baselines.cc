#include "scenic/projects/baselines/baselines.h"

#include "scenic/model_lib/base_models/classification_model.h"
#include "scenic/model_lib/base_models/multilabel_classification_model.h"
#include "scenic/model_lib/base_models/segmentation_model.h"
#include "scenic/common_lib/errors.h"
#include "scenic/projects/baselines/axial_resnet.h"
#include "scenic/projects/baselines/bit_resnet.h"
#include "scenic/projects/baselines/detr/detr_base_model.h"
#include "scenic/projects/baselines/detr/detr_trainer.h"
#include "scenic/projects/baselines/fully_connected.h"
#include "scenic/projects/baselines/hybrid_vit.h"
#include "scenic/projects/baselines/mixer.h"
#include "scenic/projects/baselines/resnet.h"
#include "scenic/projects/baselines/simple_cnn.h"
#include "scenic/projects/baselines/unet.h"
#include "scenic/projects/baselines/vit.h"

namespace scenic::baselines {
namespace {

// Scenic's configs carry `model_dtype_str` at the top level ('float32' or 'bfloat16');
// parameters here are float32 (mixed precision is `autocast_dtype`).
void check_model_dtype(const common::ConfigDict& config) {
  const auto dtype = config.get<std::string>("model_dtype_str", "float32");
  if (dtype != "float32")
    throw Error("config key 'model_dtype_str': only float32 is supported, got '" + dtype +
                "' (for bfloat16 compute with float32 weights set autocast_dtype: bfloat16)");
}

template <typename TaskModel>
model::ModelFactory factory(typename model::NetworkModel<TaskModel>::NetworkFn network_fn,
                            const char* default_config) {
  return [network_fn, default_config](const common::ConfigDict& config, const dataset::MetaData& meta) {
    check_model_dtype(config);
    return std::make_unique<model::NetworkModel<TaskModel>>(config, meta, network_fn, default_config);
  };
}

// Scenic's ResNet and BiT-ResNet models read their keys at the top level of the config
// (`num_filters`, `num_layers`, `width_factor`, `model_dtype_str`; see
// configs/imagenet/imagenet_resnet_config.py), not under `model:`. This task model hands
// the network factory the config root when `num_layers` is there, and otherwise the
// `model:` view (filled from the defaults when absent), so both layouts work.
template <typename TaskModel>
class TopLevelKeysModel : public TaskModel {
 public:
  using NetworkFn = typename model::NetworkModel<TaskModel>::NetworkFn;
  TopLevelKeysModel(common::ConfigDict config, dataset::MetaData meta, NetworkFn fn, std::string defaults)
      : TaskModel(std::move(config), std::move(meta)), fn_(std::move(fn)), defaults_(std::move(defaults)) {}

  std::shared_ptr<model::Network> build_network() const override {
    check_model_dtype(this->config_);
    if (this->config_.has("num_layers")) return fn_(this->config_, this->meta_data_);
    return fn_(this->model_config(), this->meta_data_);
  }
  std::string default_network_config() const override { return defaults_; }

 private:
  NetworkFn fn_;
  std::string defaults_;
};

template <typename TaskModel>
model::ModelFactory top_level_factory(typename TopLevelKeysModel<TaskModel>::NetworkFn network_fn,
                                      const char* default_config) {
  return [network_fn, default_config](const common::ConfigDict& config, const dataset::MetaData& meta) {
    return std::make_unique<TopLevelKeysModel<TaskModel>>(config, meta, network_fn, default_config);
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
  registry.add("resnet_classification", top_level_factory<ClassificationModel>(ResNet::from_config, kResNetDefaultConfig));
  registry.add("resnet_multilabel_classification",
               top_level_factory<MultiLabelClassificationModel>(ResNet::from_config, kResNetDefaultConfig));
  registry.add("bit_resnet_classification",
               top_level_factory<ClassificationModel>(BitResNet::from_config, kBitResNetDefaultConfig));
  registry.add("bit_resnet_multilabel_classification",
               top_level_factory<MultiLabelClassificationModel>(BitResNet::from_config, kBitResNetDefaultConfig));
  registry.add("axial_resnet_classification",
               top_level_factory<ClassificationModel>(AxialResNet::from_config, kAxialResNetDefaultConfig));
  registry.add("axial_resnet_multilabel_classification",
               top_level_factory<MultiLabelClassificationModel>(AxialResNet::from_config, kAxialResNetDefaultConfig));
  registry.add("mixer_classification", factory<ClassificationModel>(Mixer::from_config, kMixerDefaultConfig));
  registry.add("mixer_multilabel_classification",
               factory<MultiLabelClassificationModel>(Mixer::from_config, kMixerDefaultConfig));
  registry.add("hybrid_vit_classification",
               factory<ClassificationModel>(HybridViT::from_config, kHybridViTDefaultConfig));
  registry.add("hybrid_vit_multilabel_classification",
               factory<MultiLabelClassificationModel>(HybridViT::from_config, kHybridViTDefaultConfig));
  registry.add("unet_segmentation", factory<model::SegmentationModel>(UNet::from_config, kUNetDefaultConfig));
  registry.add("simple_cnn_segmentation",
               factory<model::SegmentationModel>(SimpleCNNSegmentation::from_config, kSimpleCNNDefaultConfig));
  registry.add("detr", [](const common::ConfigDict& c, const dataset::MetaData& m) {
    return std::make_unique<detr::DetrModel>(c, m);
  });
  // The DETR trainer lives in this project (train_lib cannot depend on projects).
  detr::register_detr_trainer(train::TrainerRegistry::global());
}

}  // namespace scenic::baselines
