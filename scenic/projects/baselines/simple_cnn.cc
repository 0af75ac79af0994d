#include "scenic/projects/baselines/simple_cnn.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"

namespace scenic::baselines {

const char* const kSimpleCNNDefaultConfig =
    "num_filters: [32, 64, 64]\nkernel_sizes: [3, 3, 3]\nuse_bias: true\n";

SimpleCNN::SimpleCNN(const std::vector<int64_t>& num_filters, const std::vector<int64_t>& kernel_sizes,
                     bool use_bias, int64_t in_channels, int64_t num_classes) {
  if (num_filters.size() != kernel_sizes.size())
    throw Error("config keys 'model.num_filters' and 'model.kernel_sizes' must have the same length (" +
                std::to_string(num_filters.size()) + " vs " + std::to_string(kernel_sizes.size()) + ")");
  int64_t c = in_channels;
  for (size_t i = 0; i < num_filters.size(); ++i) {
    const int64_t k = kernel_sizes[i];
    if (k % 2 == 0)
      throw Error("config key 'model.kernel_sizes': SAME padding needs odd kernels, got " + std::to_string(k));
    torch::nn::Conv2d conv(torch::nn::Conv2dOptions(c, num_filters[i], k).padding(k / 2).bias(use_bias));
    model::init::lecun_normal_(conv->weight);
    if (use_bias) torch::nn::init::zeros_(conv->bias);
    convs.push_back(register_module("Conv_" + std::to_string(i), conv));
    c = num_filters[i];
  }
  output_projection = register_module("output_projection", torch::nn::Linear(c, num_classes));
  model::init::lecun_normal_(output_projection->weight);
  torch::nn::init::zeros_(output_projection->bias);
}

std::shared_ptr<model::Network> SimpleCNN::from_config(const common::ConfigDict& c,
                                                       const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("simple_cnn needs image inputs [-1, C, H, W]");
  return std::make_shared<SimpleCNN>(c.get<std::vector<int64_t>>("num_filters"),
                                     c.get<std::vector<int64_t>>("kernel_sizes"),
                                     c.get<bool>("use_bias", true), meta.input_shape[1],
                                     meta.num_classes);
}

torch::Tensor SimpleCNN::forward(const torch::Tensor& inputs) {
  auto x = inputs;
  for (auto& conv : convs) x = torch::relu(conv(x));  // [B, F, H, W]
  return output_projection(x.mean({2, 3}));          // [B, K]
}

torch::Tensor SimpleCNN::representation(const torch::Tensor& inputs) {
  auto x = inputs;
  for (auto& conv : convs) x = torch::relu(conv(x));  // [B, F, H, W]
  return x.mean({2, 3});                             // [B, F]
}

std::shared_ptr<model::Network> SimpleCNNSegmentation::from_config(const common::ConfigDict& c,
                                                                   const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("simple_cnn_segmentation needs image inputs [-1, C, H, W]");
  return std::make_shared<SimpleCNNSegmentation>(c.get<std::vector<int64_t>>("num_filters"),
                                                 c.get<std::vector<int64_t>>("kernel_sizes"),
                                                 c.get<bool>("use_bias", true), meta.input_shape[1],
                                                 meta.num_classes);
}

torch::Tensor SimpleCNNSegmentation::forward(const torch::Tensor& inputs) {
  auto x = inputs;
  for (auto& conv : convs) x = torch::relu(conv(x));  // [B, F, H, W]
  // Dense over channels at every pixel (Scenic's keep_dims variant).
  return output_projection(x.movedim(1, -1)).movedim(-1, 1);  // [B, K, H, W]
}

}  // namespace scenic::baselines
