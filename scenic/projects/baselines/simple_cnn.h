// SimpleCNN: a stack of stride-1 'SAME' convolutions with relu, then global average
// pooling and a Dense classifier (Scenic's projects/baselines/simple_cnn.py,
// classification variant; SimpleCNNSegmentation below is the per-pixel variant).
// Keys under `model.`: num_filters, kernel_sizes, use_bias.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::baselines {

class SimpleCNN : public model::Network {
 public:
  SimpleCNN(const std::vector<int64_t>& num_filters, const std::vector<int64_t>& kernel_sizes,
            bool use_bias, int64_t in_channels, int64_t num_classes);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& model_config,
                                                     const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K]
  // The pooled features before `output_projection`: [B, C, H, W] -> [B, F].
  torch::Tensor representation(const torch::Tensor& inputs) override;

  std::vector<torch::nn::Conv2d> convs;  // `Conv_i`
  torch::nn::Linear output_projection{nullptr};
};

// The segmentation variant (Scenic's SimpleCNN with per-pixel output, registered as
// `simple_cnn_segmentation`): the same convolutions, no pooling, and `output_projection`
// applied to every pixel's features (a Dense over the channel axis, so the parameters
// have the classification variant's names and shapes and checkpoints carry over).
class SimpleCNNSegmentation : public SimpleCNN {
 public:
  using SimpleCNN::SimpleCNN;
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& model_config,
                                                     const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K, H, W]
};

extern const char* const kSimpleCNNDefaultConfig;

}  // namespace scenic::baselines
