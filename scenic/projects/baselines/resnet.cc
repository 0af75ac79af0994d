#include "scenic/projects/baselines/resnet.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/batch_norm_act.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/pointwise_conv.h"

namespace scenic::baselines {

const char* const kResNetDefaultConfig = "num_filters: 16\nnum_layers: 5\n";

FlaxBatchNormImpl::FlaxBatchNormImpl(int64_t num_features, FlaxBatchNormOptions options)
    : options_(options) {
  scale = register_parameter("scale", torch::full({num_features}, options.scale_init));
  bias = register_parameter("bias", torch::zeros({num_features}));
  mean = register_buffer("mean", torch::zeros({num_features}));
  var = register_buffer("var", torch::ones({num_features}));
}

torch::Tensor FlaxBatchNormImpl::forward(const torch::Tensor& x, const torch::Tensor& residual, bool relu) {
  if (x.dim() < 2 || x.size(1) != scale.size(0))
    throw Error("BatchNorm: expected [B, " + std::to_string(scale.size(0)) + ", ...], got " +
                std::to_string(x.dim()) + "-d input with " + (x.dim() >= 2 ? std::to_string(x.size(1)) : "no") +
                " channels");
  if (!is_training())
    return model::batch_norm_act_eval(x, scale, bias, mean, var, options_.epsilon, residual, relu);
  // Batch statistics; the running buffers are updated here (not by ATen) so that they
  // get Flax's biased variance: var = 1 / invstd^2 - eps.
  auto out = model::batch_norm_act_train(x, scale, bias, options_.epsilon, residual, relu);
  torch::NoGradGuard no_grad;
  const double m = options_.momentum;
  auto batch_var = (out.invstd.square().reciprocal() - options_.epsilon).clamp_min(0.0);
  mean.mul_(m).add_(out.mean.to(mean.dtype()), 1.0 - m);
  var.mul_(m).add_(batch_var.to(var.dtype()), 1.0 - m);
  return out.y;
}

std::pair<std::vector<int64_t>, bool> resnet_block_sizes(int64_t num_layers) {
  static const std::map<int64_t, std::pair<std::vector<int64_t>, bool>> kOptions{
      {5, {{1}, true}},           // only strided blocks, total stride 4
      {8, {{1, 1}, true}},        // total stride 8
      {11, {{1, 1, 1}, true}},    // total stride 16
      {14, {{1, 1, 1, 1}, true}}, // total stride 32
      {9, {{1, 1, 1, 1}, false}},
      {18, {{2, 2, 2, 2}, false}},
      {26, {{2, 2, 2, 2}, true}},
      {34, {{3, 4, 6, 3}, false}},
      {50, {{3, 4, 6, 3}, true}},
      {101, {{3, 4, 23, 3}, true}},
      {152, {{3, 8, 36, 3}, true}},
      {200, {{3, 24, 36, 3}, true}},
  };
  auto it = kOptions.find(num_layers);
  if (it == kOptions.end())
    throw Error("config key 'num_layers': no ResNet with " + std::to_string(num_layers) +
                " layers (supported: 5, 8, 9, 11, 14, 18, 26, 34, 50, 101, 152, 200)");
  return it->second;
}

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  torch::nn::Conv2d c(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
  model::init::lecun_normal_(c->weight);  // Flax nn.Conv default
  return c;
}

// A 1x1 convolution runs as a matrix product where its weights outweigh its activations
// (pointwise_conv.h); other kernels as they are.
torch::Tensor run_conv(torch::nn::Conv2d& c, const torch::Tensor& x) {
  const auto& o = c->options;
  const auto* pad = std::get_if<torch::ExpandingArray<2>>(&o.padding());
  if ((*o.kernel_size())[0] != 1 || (*o.kernel_size())[1] != 1 || (*o.stride())[0] != (*o.stride())[1] ||
      pad == nullptr || (**pad)[0] != 0 || (**pad)[1] != 0 || (*o.dilation())[0] != 1 || o.groups() != 1)
    return c->forward(x);
  return model::conv1x1(x, c->weight, c->bias, (*o.stride())[0]);
}

FlaxBatchNorm bn(int64_t c, double scale_init = 1.0) {
  FlaxBatchNormOptions o;
  o.momentum = 0.9;
  o.epsilon = 1e-5;
  o.scale_init = scale_init;
  return FlaxBatchNorm(c, o);
}

}  // namespace

ResidualBlockImpl::ResidualBlockImpl(int64_t in_channels, int64_t filters, int64_t stride, bool bottleneck)
    : out_channels_(bottleneck ? 4 * filters : filters) {
  // Scenic's condition (with filters * 4 even for basic blocks), kept for checkpoint parity.
  const bool needs_projection = in_channels != filters * 4 || stride != 1;
  if (needs_projection) {
    proj_conv = register_module("proj_conv", conv(in_channels, out_channels_, 1, stride, 0));
    proj_bn = register_module("proj_bn", bn(out_channels_));
  }
  int64_t c = in_channels;
  if (bottleneck) {
    conv1 = register_module("conv1", conv(c, filters, 1, 1, 0));
    bn1 = register_module("bn1", bn(filters));
    c = filters;
  }
  conv2 = register_module("conv2", conv(c, filters, 3, stride, 1));
  bn2 = register_module("bn2", bn(filters));
  conv3 = register_module("conv3", bottleneck ? conv(filters, out_channels_, 1, 1, 0)
                                              : conv(filters, out_channels_, 3, 1, 1));
  bn3 = register_module("bn3", bn(out_channels_, /*scale_init=*/0.0));
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  auto residual = proj_conv.is_empty() ? x : proj_bn(run_conv(proj_conv, x));  // [B, C_out, H/s, W/s]
  auto h = x;
  if (!conv1.is_empty()) h = bn1->forward(run_conv(conv1, h), {}, /*relu=*/true);  // [B, F, H, W]
  auto y = bn2->forward(conv2(h), {}, /*relu=*/true);                           // [B, F, H/s, W/s]
  return bn3->forward(run_conv(conv3, y), residual, /*relu=*/true);  // relu(shortcut + bn3(...)): [B, C_out, H/s, W/s]
}

ResNet::ResNet(const ResNetOptions& o) : options_(o) {
  const auto [block_sizes, bottleneck] = resnet_block_sizes(o.num_layers);
  if (o.num_filters <= 0) throw Error("config key 'num_filters' must be positive, got " + std::to_string(o.num_filters));
  stem_conv = register_module("stem_conv", conv(o.in_channels, o.num_filters, 7, 2, 3));
  init_bn = register_module("init_bn", bn(o.num_filters));
  int64_t c = o.num_filters, k = 0;
  for (size_t i = 0; i < block_sizes.size(); ++i) {
    stages.emplace_back();
    for (int64_t j = 0; j < block_sizes[i]; ++j) {
      const int64_t stride = (i > 0 && j == 0) ? 2 : 1;
      ResidualBlock block(c, o.num_filters << i, stride, bottleneck);
      c = block->out_channels();
      stages.back().push_back(register_module("ResidualBlock_" + std::to_string(k++), block));
    }
  }
  if (o.num_classes > 0) {
    output_projection = register_module("output_projection", torch::nn::Linear(c, o.num_classes));
    model::init::lecun_normal_(output_projection->weight);
    torch::nn::init::zeros_(output_projection->bias);
  }
  if (o.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters())
      if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

std::shared_ptr<model::Network> ResNet::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("ResNet needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(meta.input_shape.size()) + " dims");
  ResNetOptions o;
  o.num_filters = c.get<int64_t>("num_filters");
  o.num_layers = c.get<int64_t>("num_layers");
  o.channels_last = c.get<bool>("channels_last", o.channels_last);
  o.in_channels = meta.input_shape[1];
  o.num_classes = meta.num_classes;
  return std::make_shared<ResNet>(o);
}

std::map<std::string, torch::Tensor> ResNet::forward_features(const torch::Tensor& inputs) {
  if (inputs.dim() != 4 || inputs.size(1) != options_.in_channels)
    throw Error("ResNet: expected NCHW inputs with " + std::to_string(options_.in_channels) +
                " channels, got " + std::to_string(inputs.dim()) + "-d input");
  const auto in = options_.channels_last ? inputs.contiguous(torch::MemoryFormat::ChannelsLast) : inputs;
  auto x = init_bn->forward(stem_conv(in), {}, /*relu=*/true);  // [B, F, H/2, W/2]
  x = torch::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});  // [B, F, H/4, W/4]
  std::map<std::string, torch::Tensor> out{{"stem", x}};
  for (size_t i = 0; i < stages.size(); ++i) {
    for (auto& block : stages[i]) x = block(x);
    out["stage_" + std::to_string(i + 1)] = x;        // [B, F 2^i (x4), H/2^(i+2), W/2^(i+2)]
  }
  return out;
}

torch::Tensor ResNet::forward(const torch::Tensor& inputs) {
  auto features = forward_features(inputs);
  auto x = features["stage_" + std::to_string(stages.size())].mean({2, 3});  // [B, C]; pre_logits
  return output_projection.is_empty() ? x : output_projection(x);            // [B, K]
}

}  // namespace scenic::baselines
