// FullyConnected: an MLP classifier (Scenic's projects/baselines/fully_connected.py).
// Flattens the input, then [Dense(h) + relu] for each h in `model.hid_sizes`, then
// the `output_projection` Dense to num_classes.
#pragma once

#include <torch/nn/modules/linear.h>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::baselines {

class FullyConnected : public model::Network {
 public:
  FullyConnected(const std::vector<int64_t>& hid_sizes, int64_t in_features, int64_t num_classes);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& model_config,
                                                     const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, ...] -> [B, K]
  // The last hidden layer's activations (the input of `output_projection`): [B, h].
  torch::Tensor representation(const torch::Tensor& inputs) override;

  std::vector<torch::nn::Linear> hidden;  // `Dense_i`
  torch::nn::Linear output_projection{nullptr};
};

extern const char* const kFullyConnectedDefaultConfig;

}  // namespace scenic::baselines
