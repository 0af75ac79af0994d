#include "scenic/projects/baselines/fully_connected.h"

#include <torch/torch.h>

#include "scenic/model_lib/layers/initializers.h"

namespace scenic::baselines {

const char* const kFullyConnectedDefaultConfig = "hid_sizes: [64, 64]\n";

namespace {
torch::nn::Linear dense(int64_t in, int64_t out) {
  torch::nn::Linear l(in, out);
  model::init::lecun_normal_(l->weight);  // Flax Dense defaults
  torch::nn::init::zeros_(l->bias);
  return l;
}
}  // namespace

FullyConnected::FullyConnected(const std::vector<int64_t>& hid_sizes, int64_t in_features,
                               int64_t num_classes) {
  int64_t width = in_features;
  for (size_t i = 0; i < hid_sizes.size(); ++i) {
    hidden.push_back(register_module("Dense_" + std::to_string(i), dense(width, hid_sizes[i])));
    width = hid_sizes[i];
  }
  output_projection = register_module("output_projection", dense(width, num_classes));
}

std::shared_ptr<model::Network> FullyConnected::from_config(const common::ConfigDict& c,
                                                            const dataset::MetaData& meta) {
  int64_t in_features = 1;
  for (size_t i = 1; i < meta.input_shape.size(); ++i) in_features *= meta.input_shape[i];
  return std::make_shared<FullyConnected>(c.get<std::vector<int64_t>>("hid_sizes"), in_features,
                                          meta.num_classes);
}

torch::Tensor FullyConnected::forward(const torch::Tensor& inputs) {
  auto x = inputs.flatten(1);  // [B, C*H*W]
  for (auto& layer : hidden) x = torch::relu(layer(x));
  return output_projection(x);
}

torch::Tensor FullyConnected::representation(const torch::Tensor& inputs) {
  auto x = inputs.flatten(1);  // [B, C*H*W]
  for (auto& layer : hidden) x = torch::relu(layer(x));
  return x;                    // [B, h]
}

}  // namespace scenic::baselines
