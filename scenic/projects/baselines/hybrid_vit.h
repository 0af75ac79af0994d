// Hybrid ViT: a BiT-ResNet stem in front of a Vision Transformer (Scenic's
// projects/baselines/hybrid_vit.py; arXiv 2010.11929 §3.1).
//
// With `model.resnet` set: `conv_root` StdConv 7x7/2 (SAME) -> `gn_root` (Flax's default
// GroupNorm: 32 groups, eps 1e-6, unlike BiT-ResNet's 1e-4) -> relu -> max-pool 3x3/2
// (SAME) -> BiT stages `block1`.. (resnet.num_layers = blocks per stage, bottleneck,
// width 64 * resnet.width_factor doubling per stage, first stage stride 1, others 2).
// Then ViT: `embedding` conv (kernel = stride = patches.size, VALID) on the feature map ->
// optional zero `cls` token -> `Transformer` (ViT's Encoder: learned 1-D position
// embedding, pre-LN blocks, `encoder_norm`) -> token/gap/gmp/gsp pooling -> optional
// `pre_logits` Dense + tanh -> zero-initialised `output_projection`. Inputs are NCHW.
//
// Config keys under `model.` (Scenic's): resnet {num_layers: [..], width_factor} or
// null, patches.size, hidden_size, mlp_dim, num_heads, num_layers, representation_size,
// classifier, dropout_rate (0.1), attention_dropout_rate (0.1), stochastic_depth (0).
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <optional>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/masked_layers.h"
#include "scenic/projects/baselines/bit_resnet.h"
#include "scenic/projects/baselines/vit.h"

namespace scenic::baselines {

struct HybridViTOptions {
  ViTOptions vit;  // patches, transformer sizes, classifier, dropout, classes, input shape
  bool use_resnet = true;
  std::vector<int64_t> resnet_num_layers{3, 4, 9};  // blocks per stage (may be empty)
  double resnet_width_factor = 1.0;

  static HybridViTOptions from_config(const common::ConfigDict& model_config, const dataset::MetaData& meta);
};

class HybridViT : public model::Network {
 public:
  explicit HybridViT(const HybridViTOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c, const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K]

  StdConv conv_root{nullptr};
  model::masked::GroupNorm gn_root{nullptr};
  std::vector<ResNetStage> stages;  // `block1`..
  torch::nn::Conv2d embedding{nullptr};
  torch::Tensor cls;  // [1, 1, D] for the token classifier
  Encoder Transformer{nullptr};
  torch::nn::Linear pre_logits{nullptr}, output_projection{nullptr};

 private:
  HybridViTOptions options_;
};

// Scenic's default_flax_model_config (hidden 16, 1 layer, patch 4, resnet [1] x1, gap).
extern const char* const kHybridViTDefaultConfig;

}  // namespace scenic::baselines
