#include "scenic/projects/baselines/bit_resnet.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/nn_ops.h"
#include "scenic/projects/baselines/resnet.h"

namespace scenic::baselines {

const char* const kBitResNetDefaultConfig = "width_factor: 1\nnum_layers: 5\n";

torch::Tensor weight_standardize(const torch::Tensor& w, double eps) {
  auto centered = w - w.mean({1, 2, 3}, /*keepdim=*/true);
  return centered / torch::sqrt(centered.square().mean({1, 2, 3}, /*keepdim=*/true) + eps);
}

StdConvImpl::StdConvImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                         int64_t dilation)
    : kernel_(kernel), stride_(stride), dilation_(dilation) {
  weight = register_parameter("weight", torch::empty({out_channels, in_channels, kernel, kernel}));
  model::init::lecun_normal_(weight);
}

torch::Tensor StdConvImpl::forward(const torch::Tensor& x) {
  const int64_t eff = (kernel_ - 1) * dilation_ + 1;
  auto padded = model::pad_spatial(
      x, model::resolve_padding("SAME", {x.size(2), x.size(3)}, {eff, eff}, {stride_, stride_}));
  const std::vector<int64_t> stride{stride_, stride_}, no_pad{0, 0}, dilation{dilation_, dilation_};
  return torch::conv2d(padded, weight_standardize(weight), /*bias=*/{}, stride, no_pad, dilation);
}

torch::Tensor max_pool_3x3_same(const torch::Tensor& x) {
  auto pads = model::resolve_padding("SAME", {x.size(2), x.size(3)}, {3, 3}, {2, 2});
  auto padded = model::pad_spatial(x, pads, -std::numeric_limits<double>::infinity());
  return torch::max_pool2d(padded, {3, 3}, {2, 2});
}

namespace {
model::masked::GroupNorm group_norm(int64_t channels, int64_t groups, bool zero_scale = false) {
  model::masked::GroupNormOptions o;
  o.num_groups = groups;
  o.epsilon = 1e-4;
  model::masked::GroupNorm gn(channels, o);
  if (zero_scale) {
    torch::NoGradGuard no_grad;
    gn->scale.zero_();
  }
  return gn;
}
}  // namespace

ResidualUnitImpl::ResidualUnitImpl(int64_t in_channels, int64_t nout, int64_t stride, int64_t dilation,
                                   bool bottleneck, int64_t groups)
    : out_channels_(bottleneck ? 4 * nout : nout) {
  if (in_channels != out_channels_ || stride != 1) {
    conv_proj = register_module("conv_proj", StdConv(in_channels, out_channels_, 1, stride));
    gn_proj = register_module("gn_proj", group_norm(out_channels_, groups));
  }
  int64_t c = in_channels;
  if (bottleneck) {
    conv1 = register_module("conv1", StdConv(c, nout, 1));
    gn1 = register_module("gn1", group_norm(nout, groups));
    c = nout;
  }
  conv2 = register_module("conv2", StdConv(c, nout, 3, stride, dilation));
  gn2 = register_module("gn2", group_norm(nout, groups));
  conv3 = register_module("conv3", StdConv(nout, out_channels_, bottleneck ? 1 : 3));
  gn3 = register_module("gn3", group_norm(out_channels_, groups, /*zero_scale=*/true));
}

torch::Tensor ResidualUnitImpl::forward(const torch::Tensor& x) {
  auto residual = conv_proj.is_empty() ? x : gn_proj(conv_proj(x)).first;  // [B, C_out, H/s, W/s]
  auto h = x;
  if (!conv1.is_empty()) h = torch::relu(gn1(conv1(h)).first);
  h = torch::relu(gn2(conv2(h)).first);
  h = gn3(conv3(h)).first;
  return torch::relu(residual + h);
}

ResNetStageImpl::ResNetStageImpl(int64_t in_channels, int64_t block_size, int64_t nout, int64_t first_stride,
                                 int64_t first_dilation, bool bottleneck, int64_t groups) {
  int64_t c = in_channels;
  for (int64_t i = 0; i < block_size; ++i) {
    ResidualUnit unit(c, nout, i == 0 ? first_stride : 1, i == 0 ? first_dilation : 1, bottleneck, groups);
    c = unit->out_channels();
    units.push_back(register_module("unit" + std::to_string(i + 1), unit));
  }
}

torch::Tensor ResNetStageImpl::forward(torch::Tensor x) {
  for (auto& unit : units) x = unit(x);
  return x;
}

BitResNet::BitResNet(const BitResNetOptions& o) : options_(o) {
  if (o.max_output_stride != 4 && o.max_output_stride != 8 && o.max_output_stride != 16 &&
      o.max_output_stride != 32)
    throw Error("BitResNet: max_output_stride must be 4, 8, 16 or 32, got " + std::to_string(o.max_output_stride));
  const auto [blocks, bottleneck] = resnet_block_sizes(o.num_layers);
  const auto width = static_cast<int64_t>(64 * o.width_factor);  // Scenic: int(64 * width_factor)
  if (width <= 0 || width % o.gn_num_groups != 0)
    throw Error("BitResNet: width 64 * width_factor = " + std::to_string(width) +
                " must be a positive multiple of gn_num_groups = " + std::to_string(o.gn_num_groups));
  conv_root = register_module("conv_root", StdConv(o.in_channels, width, 7, 2));
  gn_root = register_module("gn_root", group_norm(width, o.gn_num_groups));
  int64_t c = width, stride = 4;
  for (size_t i = 0; i < blocks.size(); ++i) {
    int64_t first_stride = 1, first_dilation = 1;
    if (i > 0) {
      const bool max_stride_reached = o.max_output_stride <= stride;
      first_stride = max_stride_reached ? 1 : 2;
      first_dilation = max_stride_reached ? 2 : 1;
      if (!max_stride_reached) stride *= 2;
    }
    ResNetStage stage(c, blocks[i], width << i, first_stride, first_dilation, bottleneck, o.gn_num_groups);
    c = stage->out_channels();
    stages.push_back(register_module("block" + std::to_string(i + 1), stage));
  }
  if (o.num_classes > 0) {
    output_projection = register_module("output_projection", torch::nn::Linear(c, o.num_classes));
    torch::nn::init::zeros_(output_projection->weight);
    torch::nn::init::zeros_(output_projection->bias);
  }
}

std::shared_ptr<model::Network> BitResNet::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("BitResNet needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(meta.input_shape.size()) + " dims");
  BitResNetOptions o;
  o.num_layers = c.get<int64_t>("num_layers");
  o.width_factor = c.get<double>("width_factor", 1.0);
  o.gn_num_groups = c.get<int64_t>("gn_num_groups", 32);
  o.max_output_stride = c.get<int64_t>("max_output_stride", 32);
  o.in_channels = meta.input_shape[1];
  o.num_classes = meta.num_classes;
  return std::make_shared<BitResNet>(o);
}

std::map<std::string, torch::Tensor> BitResNet::forward_features(const torch::Tensor& inputs) {
  if (inputs.dim() != 4 || inputs.size(1) != options_.in_channels)
    throw Error("BitResNet: expected NCHW inputs with " + std::to_string(options_.in_channels) +
                " channels, got " + std::to_string(inputs.dim()) + "-d input");
  auto x = torch::relu(gn_root(conv_root(inputs)).first);  // [B, W, H/2, W/2]
  x = max_pool_3x3_same(x);                                // [B, W, H/4, W/4]
  std::map<std::string, torch::Tensor> out{{"stem", x}};
  for (size_t i = 0; i < stages.size(); ++i) {
    x = stages[i](x);
    out["stage_" + std::to_string(i + 1)] = x;
  }
  return out;
}

torch::Tensor BitResNet::forward(const torch::Tensor& inputs) {
  auto features = forward_features(inputs);
  auto x = features["stage_" + std::to_string(stages.size())].mean({2, 3});  // [B, C]; pre_logits
  return output_projection.is_empty() ? x : output_projection(x);            // [B, K]
}

}  // namespace scenic::baselines
