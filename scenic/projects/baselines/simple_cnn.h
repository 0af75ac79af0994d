// SimpleCNN: a stack of stride-1 'SAME' convolutions with relu, then global average
// pooling and a Dense classifier (Scenic's projects/baselines/simple_cnn.py,
// classification variant). Keys under `model.`: num_filters, kernel_sizes, use_bias.
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

  std::vector<torch::nn::Conv2d> convs;  // `Conv_i`
  torch::nn::Linear output_projection{nullptr};
};

extern const char* const kSimpleCNNDefaultConfig;

}  // namespace scenic::baselines
