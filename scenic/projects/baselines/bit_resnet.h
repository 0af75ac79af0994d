// BiT-ResNet: ResNet v1 with weight-standardized convolutions and GroupNorm (Scenic's
// projects/baselines/bit_resnet.py, a port of big_transfer's bit_jax/models.py).
//
// Root `conv_root` StdConv 7x7/2 (SAME) -> `gn_root` -> relu -> max-pool 3x3/2 (SAME);
// stages `block1`..`blockN` of `unit1`..`unitM` (ResidualUnit: [conv_proj + gn_proj],
// conv1 1x1 + gn1 + relu, conv2 3x3/s (dilated when max_output_stride is reached) + gn2 +
// relu, conv3 + gn3 (scale starts at 0), relu(shortcut + y)); width 64 * width_factor,
// doubled per stage; GAP -> `pre_logits` (identity) -> `output_projection` (zero kernel
// and bias). No BatchNorm, so no state: train and eval give the same outputs.
//
// Flax details kept: every StdConv is bias-free and pads 'SAME' as XLA does (the smaller
// half before: a 7x7/2 conv on 224 pads (2, 3)); kernels are standardized per output
// channel over (in, kh, kw) with the biased variance and eps 1e-10 on every call;
// GroupNorm has 32 groups (`gn_num_groups`) and eps 1e-4. The projection is used when
// C_in != the unit's output width or stride != 1 (BiT's rule, not Scenic ResNet's).
//
// Config keys (Scenic's, at the top level; the registration also accepts them under
// `model:`): `num_layers` (as ResNet), `width_factor` (default 1), `gn_num_groups`
// (default 32), `max_output_stride` (4, 8, 16 or 32; default 32). Inputs are NCHW.
#pragma once

#include <torch/nn/modules/linear.h>

#include <map>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/masked_layers.h"

namespace scenic::baselines {

// (w - mean) / sqrt(mean((w - mean)^2) + eps) per output channel of an OIHW kernel
// (over dims 1, 2, 3: Flax's HWIO axes [0, 1, 2]).
torch::Tensor weight_standardize(const torch::Tensor& w, double eps = 1e-10);

// Bias-free convolution with a weight-standardized kernel `weight` [out, in, kh, kw]
// (lecun_normal init) and XLA 'SAME' padding.
class StdConvImpl : public torch::nn::Module {
 public:
  StdConvImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1,
              int64_t dilation = 1);
  torch::Tensor forward(const torch::Tensor& x);  // [B, in, H, W] -> [B, out, ceil(H/s), ceil(W/s)]

  torch::Tensor weight;

 private:
  int64_t kernel_, stride_, dilation_;
};
TORCH_MODULE(StdConv);

// max-pool 3x3/2 with XLA 'SAME' padding (pads are -inf), as nn.max_pool(..., 'SAME').
torch::Tensor max_pool_3x3_same(const torch::Tensor& x);

class ResidualUnitImpl : public torch::nn::Module {
 public:
  // `nout` is the bottleneck width (output nout * 4) or, for basic units, the output width.
  ResidualUnitImpl(int64_t in_channels, int64_t nout, int64_t stride, int64_t dilation, bool bottleneck,
                   int64_t gn_num_groups);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return out_channels_; }

  StdConv conv_proj{nullptr}, conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  model::masked::GroupNorm gn_proj{nullptr}, gn1{nullptr}, gn2{nullptr}, gn3{nullptr};

 private:
  int64_t out_channels_;
};
TORCH_MODULE(ResidualUnit);

// `unit1` (first_stride, first_dilation) then `unit2`.. (stride 1, no dilation).
class ResNetStageImpl : public torch::nn::Module {
 public:
  ResNetStageImpl(int64_t in_channels, int64_t block_size, int64_t nout, int64_t first_stride,
                  int64_t first_dilation, bool bottleneck, int64_t gn_num_groups);
  torch::Tensor forward(torch::Tensor x);
  int64_t out_channels() const { return units.back()->out_channels(); }

  std::vector<ResidualUnit> units;
};
TORCH_MODULE(ResNetStage);

struct BitResNetOptions {
  int64_t num_layers = 50;
  double width_factor = 1.0;
  int64_t gn_num_groups = 32;
  int64_t max_output_stride = 32;
  int64_t in_channels = 3;
  int64_t num_classes = 1000;  // <= 0: no head (forward returns the pooled features)
};

class BitResNet : public model::Network {
 public:
  explicit BitResNet(const BitResNetOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c,
                                                     const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K]
  // `stem` and `stage_1`..`stage_n` (Scenic's dict has no `stage_1`; we add it).
  std::map<std::string, torch::Tensor> forward_features(const torch::Tensor& inputs);

  StdConv conv_root{nullptr};
  model::masked::GroupNorm gn_root{nullptr};
  std::vector<ResNetStage> stages;  // `block1`..
  torch::nn::Linear output_projection{nullptr};

 private:
  BitResNetOptions options_;
};

// Scenic's testing default: width_factor 1, num_layers 5.
extern const char* const kBitResNetDefaultConfig;

}  // namespace scenic::baselines
