#include "scenic/projects/baselines/unet.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/nn_ops.h"

namespace scenic::baselines {

const char* const kUNetDefaultConfig = R"(
padding: SAME
use_batch_norm: false
block_size: [64, 128, 256, 512]
)";

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t pad) {
  torch::nn::Conv2d c(torch::nn::Conv2dOptions(in, out, k).padding(pad));
  model::init::lecun_normal_(c->weight);  // Flax nn.Conv defaults
  torch::nn::init::zeros_(c->bias);
  return c;
}

FlaxBatchNorm batch_norm(int64_t c) { return FlaxBatchNorm(c, FlaxBatchNormOptions{}); }  // Flax defaults

}  // namespace

ConvRelu2Impl::ConvRelu2Impl(int64_t in, int64_t features, bool same, bool use_batch_norm) {
  conv1 = register_module("conv1", conv(in, features, 3, same ? 1 : 0));
  conv2 = register_module("conv2", conv(features, features, 3, same ? 1 : 0));
  if (use_batch_norm) {
    BatchNorm_0 = register_module("BatchNorm_0", batch_norm(features));
    BatchNorm_1 = register_module("BatchNorm_1", batch_norm(features));
  }
}

torch::Tensor ConvRelu2Impl::forward(const torch::Tensor& input) {
  auto x = conv1(input);
  if (!BatchNorm_0.is_empty()) x = BatchNorm_0(x);
  x = conv2(torch::relu(x));
  if (!BatchNorm_1.is_empty()) x = BatchNorm_1(x);
  return torch::relu(x);
}

DeConv3x3Impl::DeConv3x3Impl(int64_t in, int64_t features, bool same, bool use_batch_norm)
    : same_padding_(same) {
  Conv_0 = register_module("Conv_0", conv(in, features, 3, 0));
  if (use_batch_norm) BatchNorm_0 = register_module("BatchNorm_0", batch_norm(features));
}

torch::Tensor DeConv3x3Impl::forward(const torch::Tensor& x) {
  // Flax: conv of the 2x input-dilated x padded (low, high) = (1, 2) [SAME] or (0, 0)
  // [VALID]. The transposed conv pads the dilated input by k - 1 - padding before and
  // that + output_padding after, with the kernel flipped and in/out swapped.
  const int64_t low = same_padding_ ? 1 : 0, high = same_padding_ ? 2 : 0, k = 3;
  auto w = Conv_0->weight.flip({2, 3}).transpose(0, 1);  // [in, out, 3, 3]
  auto y = torch::conv_transpose2d(x, w, Conv_0->bias, /*stride=*/{2, 2}, /*padding=*/{k - 1 - low, k - 1 - low},
                                   /*output_padding=*/{high - low, high - low});  // [B, out, 2H, 2W]
  return BatchNorm_0.is_empty() ? y : BatchNorm_0(y);
}

UNetBlockImpl::UNetBlockImpl(Kind kind, int64_t in, int64_t features, int64_t num_classes, bool same,
                             bool use_batch_norm) {
  ConvRelu2_0 = register_module("ConvRelu2_0", ConvRelu2(in, features, same, use_batch_norm));
  if (kind == Kind::kUp) {
    deconv = register_module("deconv", DeConv3x3(features, features / 2, same, use_batch_norm));
  } else if (kind == Kind::kOutput) {
    conv1x1 = register_module("conv1x1", conv(features, num_classes, 1, 0));
    if (use_batch_norm) BatchNorm_0 = register_module("BatchNorm_0", batch_norm(num_classes));
  }
}

torch::Tensor UNetBlockImpl::forward(const torch::Tensor& input) {
  auto x = ConvRelu2_0(input);
  if (!deconv.is_empty()) return deconv(x);
  if (!conv1x1.is_empty()) {
    x = conv1x1(x);
    if (!BatchNorm_0.is_empty()) x = BatchNorm_0(x);
  }
  return x;
}

UNet::UNet(const UNetOptions& o) : options_(o) {
  if (o.block_size.empty()) throw Error("config key 'model.block_size' must not be empty");
  if (o.padding != "SAME" && o.padding != "VALID")
    throw Error("config key 'model.padding': unknown padding '" + o.padding + "' (SAME or VALID)");
  const bool same = o.padding == "SAME";
  using Kind = UNetBlockImpl::Kind;
  int64_t c = o.in_channels;
  for (size_t i = 0; i < o.block_size.size(); ++i) {
    down.push_back(register_module("0_down_" + std::to_string(i),
                                   UNetBlock(Kind::kDown, c, o.block_size[i], 0, same, o.use_batch_norm)));
    c = o.block_size[i];
  }
  const int64_t fb = 2 * o.block_size.back();
  bottleneck = register_module("1_bottleneck", UNetBlock(Kind::kUp, c, fb, 0, same, o.use_batch_norm));
  c = fb / 2;
  // Up levels use block_size reversed without its last entry (f_n, ..., f_1), each
  // concatenating the skip of the same level.
  for (size_t i = 0; i + 1 < o.block_size.size(); ++i) {
    const int64_t f = o.block_size[o.block_size.size() - 1 - i];
    up.push_back(register_module("2_up_" + std::to_string(i),
                                 UNetBlock(Kind::kUp, c + f, f, 0, same, o.use_batch_norm)));
    c = f / 2;
  }
  output_projection = register_module(
      "output_projection", UNetBlock(Kind::kOutput, c, o.block_size.front(), o.num_classes, same, o.use_batch_norm));
}

std::shared_ptr<model::Network> UNet::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("UNet needs image inputs [-1, C, H, W], the dataset gives " + std::to_string(meta.input_shape.size()) +
                " dims");
  UNetOptions o;
  o.block_size = c.get<std::vector<int64_t>>("block_size", o.block_size);
  o.padding = c.get<std::string>("padding", "SAME");
  o.use_batch_norm = c.get<bool>("use_batch_norm", true);
  o.in_channels = meta.input_shape[1];
  o.num_classes = meta.num_classes;
  return std::make_shared<UNet>(o);
}

torch::Tensor UNet::forward(const torch::Tensor& inputs) {
  if (inputs.dim() != 4 || inputs.size(1) != options_.in_channels)
    throw Error("UNet: expected NCHW inputs with " + std::to_string(options_.in_channels) + " channels, got " +
                std::to_string(inputs.dim()) + "-d input");
  if (options_.padding == "SAME") {
    const int64_t m = int64_t{1} << (options_.block_size.size());
    if (inputs.size(2) % m || inputs.size(3) % m)
      throw Error("UNet: with SAME padding the image size " + std::to_string(inputs.size(2)) + "x" +
                  std::to_string(inputs.size(3)) + " must be divisible by " + std::to_string(m));
  }
  std::vector<torch::Tensor> skips;
  auto x = inputs;
  for (auto& block : down) {
    auto residual = block(x);                             // [B, f_i, h, w]
    skips.push_back(residual);
    x = torch::max_pool2d(residual, {2, 2}, {2, 2});      // [B, f_i, h/2, w/2]
  }
  x = bottleneck(x);                                      // [B, f_n, 2h, 2w]
  for (auto& block : up) {
    auto skip = skips.back();
    skips.pop_back();
    x = torch::cat({x, model::central_crop(skip, {x.size(2), x.size(3)})}, 1);
    x = block(x);
  }
  // skips[0] is left unused, as in Scenic (see unet.h).
  return output_projection(x);                            // [B, K, H, W]
}

}  // namespace scenic::baselines
