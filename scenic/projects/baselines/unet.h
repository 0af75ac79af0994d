// U-Net for segmentation (Scenic's projects/baselines/unet.py; arXiv 1505.04597).
//
// For block_size (f_0, ..., f_n) (default (64, 128, 256, 512)):
//   `0_down_i`:     ConvRelu2(f_i), skip saved, max-pool 2x2/2            (i = 0..n)
//   `1_bottleneck`: ConvRelu2(2 f_n) -> `deconv` DeConv3x3(f_n)
//   `2_up_i`:       concat [x, central_crop(skip)] -> ConvRelu2(f) -> `deconv` DeConv3x3(f / 2)
//                   for f = f_n, ..., f_1
//   `output_projection`: ConvRelu2(f_0) -> `conv1x1` (num_classes) -> BatchNorm
// ConvRelu2 = 2 x [3x3 conv (`conv1`, `conv2`, with bias), BatchNorm, relu]; DeConv3x3 =
// a 3x3 conv (`Conv_0`) with input dilation 2 and pads ((1, 2), (1, 2)) ('SAME'; (0, 0)
// for 'VALID') -> BatchNorm: it doubles H and W. We run it as the equivalent transposed
// convolution (stride 2, padding k - 1 - low, output padding high - low) with the kernel
// flipped, so the stored `Conv_0.weight` [out, in, 3, 3] is the forward-conv kernel, as
// Flax stores it. BatchNorm is Flax's default (momentum 0.99, eps 1e-5), named
// `BatchNorm_0`, `BatchNorm_1` in creation order as Flax auto-names them.
//
// As Scenic codes it, the first-level skip (f_0 channels, full resolution) is saved but
// never used: n + 1 skips are pushed and only n popped, so `output_projection` sees only
// the upsampled path. We replicate it (Scenic's test count 34,491,599 depends on it).
//
// Output: per-pixel logits [B, num_classes, H, W] (NCHW; Scenic's is NHWC). With 'SAME'
// padding H and W must be divisible by 2^(n+1). Config keys under `model.`: block_size,
// padding ('SAME' | 'VALID'), use_batch_norm (default true).
#pragma once

#include <torch/nn/modules/conv.h>

#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/projects/baselines/resnet.h"

namespace scenic::baselines {

class ConvRelu2Impl : public torch::nn::Module {
 public:
  ConvRelu2Impl(int64_t in_channels, int64_t features, bool same_padding, bool use_batch_norm);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  FlaxBatchNorm BatchNorm_0{nullptr}, BatchNorm_1{nullptr};
};
TORCH_MODULE(ConvRelu2);

// 2x upsampling conv: [B, in, H, W] -> [B, features, 2H, 2W] ('SAME') or [.., 2H-3, 2W-3] ('VALID').
class DeConv3x3Impl : public torch::nn::Module {
 public:
  DeConv3x3Impl(int64_t in_channels, int64_t features, bool same_padding, bool use_batch_norm);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d Conv_0{nullptr};  // holds the parameters; forward runs conv_transpose2d
  FlaxBatchNorm BatchNorm_0{nullptr};

 private:
  bool same_padding_;
};
TORCH_MODULE(DeConv3x3);

// One of Scenic's UNet sub-blocks: ConvRelu2_0, then `deconv` (bottleneck and up blocks)
// or `conv1x1` + BatchNorm_0 (output block). Down blocks have only ConvRelu2_0.
class UNetBlockImpl : public torch::nn::Module {
 public:
  enum class Kind { kDown, kUp, kOutput };
  UNetBlockImpl(Kind kind, int64_t in_channels, int64_t features, int64_t num_classes, bool same_padding,
                bool use_batch_norm);
  torch::Tensor forward(const torch::Tensor& x);

  ConvRelu2 ConvRelu2_0{nullptr};
  DeConv3x3 deconv{nullptr};
  torch::nn::Conv2d conv1x1{nullptr};
  FlaxBatchNorm BatchNorm_0{nullptr};
};
TORCH_MODULE(UNetBlock);

struct UNetOptions {
  std::vector<int64_t> block_size{64, 128, 256, 512};
  std::string padding = "SAME";
  bool use_batch_norm = true;
  int64_t in_channels = 3;
  int64_t num_classes = 2;
};

class UNet : public model::Network {
 public:
  explicit UNet(const UNetOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c, const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K, H', W']

  std::vector<UNetBlock> down;  // `0_down_i`
  UNetBlock bottleneck{nullptr};  // `1_bottleneck`
  std::vector<UNetBlock> up;    // `2_up_i`
  UNetBlock output_projection{nullptr};

 private:
  UNetOptions options_;
};

// Scenic's default_flax_model_config: SAME, no batch norm, blocks (64, 128, 256, 512).
extern const char* const kUNetDefaultConfig;

}  // namespace scenic::baselines
