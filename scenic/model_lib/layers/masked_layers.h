// Padding-aware ("masked") layers (Scenic's model_lib/layers/masked_layers.py).
//
// When images of different sizes are padded to one batch shape, a plain convolution
// sees different edges on the padded and the real borders, a plain BatchNorm averages
// over padding, and so on. These layers take, beside the input, `spatial_shape`: the
// per-example unpadded spatial size, int64 [B, n] ((h, w) for images), real content in
// the top-left corner of each example. Each returns its output, with the padded
// positions set to 0, together with the output's spatial shape, so layers chain:
//   auto [y, s] = conv(x, spatial_shape); std::tie(y, s) = bn(y, s); ...
// An undefined `spatial_shape` gives the plain layer (and an undefined shape back).
//
// Layout: inputs are channels-first [B, C, spatial...] (NCHW for images; Scenic is
// channels-last). BatchNorm, GroupNorm and the masks work for any number of spatial
// dims; Conv and the pools are 2-D.
//
// Differences from Scenic, on purpose: the layers zero the padded inputs themselves
// (Scenic assumes the caller already did), so whatever the padding holds cannot leak in;
// and the batch variance is clamped at 0 against rounding. Cross-device statistics
// (Scenic's `axis_name` psum) are not implemented here.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <optional>
#include <utility>

#include "scenic/model_lib/layers/nn_ops.h"

namespace scenic::model::masked {

// (outputs, their per-example spatial shape [B, n]); the shape is undefined when none
// was given. A pair so that both `auto [y, s] = ...` and `std::tie(y, s) = ...` work.
using Masked = std::pair<torch::Tensor, torch::Tensor>;

// bool [B, padded_shape...]: true where every index is below the example's size.
torch::Tensor mask_from_spatial(torch::IntArrayRef padded_shape, const torch::Tensor& spatial_shape);

// x [B, C, spatial...] with the positions outside each example's spatial shape set to `value`.
torch::Tensor apply_spatial_mask(const torch::Tensor& x, const torch::Tensor& spatial_shape, double value = 0.0);

// The per-example output spatial shape [B, 2] of a 2-D convolution or pooling window on
// inputs of per-example shape `spatial_shape` [B, 2] (Scenic's _conv_output_shape: SAME
// pads are computed from each example's own size; sizes never go below 0).
torch::Tensor conv_output_shape(const torch::Tensor& spatial_shape, std::pair<int64_t, int64_t> kernel,
                                std::pair<int64_t, int64_t> strides, const Padding& padding,
                                std::pair<int64_t, int64_t> kernel_dilation = {1, 1});

// Average / max pooling of x [B, C, H, W] (Flax defaults: strides 1, VALID) that returns
// the new spatial shape and zeroes the padded outputs. max_pool first sets the padded
// inputs to -inf. 'SAME' with a window other than 1x1 throws when a spatial shape is
// given (each example would need its own padding).
Masked avg_pool(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                std::pair<int64_t, int64_t> strides = {1, 1}, const Padding& padding = {},
                const torch::Tensor& spatial_shape = {});
Masked max_pool(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                std::pair<int64_t, int64_t> strides = {1, 1}, const Padding& padding = {},
                const torch::Tensor& spatial_shape = {});

struct BatchNormOptions {
  // Flax convention: running = momentum * running + (1 - momentum) * batch. This is
  // 1 - torch's BatchNorm momentum (Flax 0.99 = torch 0.01).
  double momentum = 0.99;
  double epsilon = 1e-5;
  bool use_bias = true;
  bool use_scale = true;
};

// Masked BatchNorm over the channel axis (dim 1). In training (is_training()) it
// normalizes with the batch mean and biased variance over the unpadded positions of
// every example, and updates the running `mean` and `var` buffers (Flax's batch_stats;
// they start at 0 and 1 and store the biased variance, as Flax does, where torch stores
// the unbiased one). In eval it uses the running statistics and updates nothing.
// Parameters `scale` (ones) and `bias` (zeros), [C]. Computed in at least float32.
class BatchNormImpl : public torch::nn::Module {
 public:
  explicit BatchNormImpl(int64_t num_features, BatchNormOptions options = {});
  Masked forward(const torch::Tensor& x, const torch::Tensor& spatial_shape = {});

  torch::Tensor scale, bias;  // parameters (undefined when disabled)
  torch::Tensor mean, var;    // buffers

 private:
  BatchNormOptions options_;
};
TORCH_MODULE(BatchNorm);

struct GroupNormOptions {
  // Exactly one of the two must be set (Scenic: num_groups = 32 by default).
  std::optional<int64_t> num_groups = 32;
  std::optional<int64_t> group_size;
  double epsilon = 1e-6;
  bool use_bias = true;
  bool use_scale = true;
  // True: statistics over the unpadded positions only. False: over the whole padded
  // extent (padding counted as zeros), every example weighted alike (Scenic's flag).
  bool spatial_norm = true;
};

// Masked GroupNorm (arXiv 1803.08494): per example and group of channels, mean and
// biased variance over the group's channels and the unpadded positions. Parameters
// `scale` (ones) and `bias` (zeros), [C]. Holds no state.
class GroupNormImpl : public torch::nn::Module {
 public:
  explicit GroupNormImpl(int64_t num_channels, GroupNormOptions options = {});
  Masked forward(const torch::Tensor& x, const torch::Tensor& spatial_shape = {});

  int64_t num_groups() const { return groups_; }
  torch::Tensor scale, bias;

 private:
  GroupNormOptions options_;
  int64_t channels_ = 0;
  int64_t groups_ = 0;
};
TORCH_MODULE(GroupNorm);

struct ConvOptions {
  std::pair<int64_t, int64_t> kernel_size{3, 3};
  std::pair<int64_t, int64_t> strides{1, 1};
  Padding padding = "SAME";  // Flax's nn.Conv default
  std::pair<int64_t, int64_t> kernel_dilation{1, 1};
  bool use_bias = true;
};

// Masked 2-D convolution x [B, in, H, W] -> [B, features, oh, ow]. With a spatial shape,
// 'SAME' padding and a kernel other than 1x1 throw (as in Scenic: each example would need
// its own padding); use 'VALID' or explicit pads. Parameters `kernel`
// [features, in, kh, kw] (torch's OIHW; a Flax HWIO kernel maps by permute(3, 2, 0, 1)),
// lecun_normal as Flax; `bias` [features], zeros.
class ConvImpl : public torch::nn::Module {
 public:
  ConvImpl(int64_t in_channels, int64_t features, ConvOptions options = {});
  Masked forward(const torch::Tensor& x, const torch::Tensor& spatial_shape = {});

  torch::Tensor kernel, bias;

 private:
  ConvOptions options_;
};
TORCH_MODULE(Conv);

}  // namespace scenic::model::masked
