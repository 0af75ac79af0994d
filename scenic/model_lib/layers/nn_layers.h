// Small neural-network modules (Scenic's model_lib/layers/nn_layers.py): stochastic
// depth, the Residual connection family, Squeeze-and-Excite and the ResMLP-style Affine
// (per-channel scale and bias, a.k.a. layer scale).
//
// Parameter names follow Flax's auto-naming so Flax checkpoints map name for name:
// Residual's dense gates are `Dense_0`, `Dense_1`, ... in Scenic's creation order, plus
// `rezero_alpha` and `b_g`; SqueezeAndExcite has `Dense_0`, `Dense_1`; Affine has `scale`
// and `bias`. Dense layers are torch::nn::Linear, whose weight is [out, in] (Flax's
// kernel transposed). Residual and Affine act on the last axis as in Scenic (tokens
// [B, N, D]); SqueezeAndExcite takes NCHW images [B, C, H, W] (Scenic: NHWC), and Affine
// can be pointed at the channel axis of an NCHW image with `channel_dim = 1`.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace scenic::model {

// StochasticDepth: in training, drops whole examples of the residual branch `x` [B, ...]
// with probability `rate` and scales survivors by 1 / (1 - rate); identity otherwise.
// Rate 1 gives zeros (as Flax's Dropout), not 0/0.
torch::Tensor stochastic_depth(const torch::Tensor& x, double rate, bool training);

// residual + stochastic_depth(x, rate, training) in one pass (addcmul with the [B, 1, ...]
// scale); the same mask draw as stochastic_depth.
torch::Tensor stochastic_depth_add(const torch::Tensor& x, double rate, bool training,
                                   const torch::Tensor& residual);

// Module form of stochastic_depth (Scenic's StochasticDepth); training follows
// is_training(). No parameters.
class StochasticDepthImpl : public torch::nn::Module {
 public:
  explicit StochasticDepthImpl(double rate = 0.0) : rate_(rate) {}
  torch::Tensor forward(const torch::Tensor& x) { return stochastic_depth(x, rate_, is_training()); }
  double rate() const { return rate_; }

 private:
  double rate_;
};
TORCH_MODULE(StochasticDepth);

// Residual connection of a module's input x and output y, both [..., features]:
//   add:     x + y
//   highway: g = sigmoid(Dense_0(x)); (1 - g) x + g y        (Dense_0 bias starts at -10)
//   rezero:  x + rezero_alpha * y                            (alpha starts at 0)
//   sigtanh: x + sigmoid(Dense_0(y)) * tanh(Dense_1(y))       (Dense_0 bias -10; Dense_1 no bias)
//   gated (GRU-like gate of arXiv 1910.06764; all Dense without bias):
//            r = sigmoid(Dense_0(x) + Dense_1(y))
//            z = sigmoid(Dense_2(x) + Dense_3(y) - b_g)        (b_g starts at 10)
//            h = tanh(Dense_4(y) + Dense_5(r * x))
//            (1 - z) x + z h
// Every Dense kernel starts at zero, so each gated variant starts close to the identity
// map on x (Scenic's choice).
class ResidualImpl : public torch::nn::Module {
 public:
  // `features` is the size of the last axis (unused for "add"). Unknown types throw.
  explicit ResidualImpl(int64_t features, std::string residual_type = "add");
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& y);

  const std::string& residual_type() const { return type_; }
  // Dense_i as registered (empty for "add" and "rezero").
  std::vector<torch::nn::Linear> dense;
  torch::Tensor rezero_alpha;  // [1], rezero only
  torch::Tensor b_g;           // [features], gated only

 private:
  torch::nn::Linear add_dense(bool bias, double bias_value);
  std::string type_;
  int64_t features_;
};
TORCH_MODULE(Residual);

// Squeeze-and-Excitation (SENet, arXiv 1709.01507) on NCHW images [B, C, H, W]:
// s = sigmoid(Dense_1(relu(Dense_0(mean_hw(x))))) [B, C]; returns x * s per channel.
// Dense_0 maps C -> C / reduction_factor. Flax Dense init: lecun_normal kernel, zero bias.
class SqueezeAndExciteImpl : public torch::nn::Module {
 public:
  explicit SqueezeAndExciteImpl(int64_t channels, int64_t reduction_factor = 4);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear Dense_0{nullptr}, Dense_1{nullptr};
};
TORCH_MODULE(SqueezeAndExcite);

struct AffineOptions {
  bool use_bias = true;
  double scale_init = 1.0;  // constant; a small value (e.g. 1e-1) gives ResMLP/CaiT layer scale
  double bias_init = 0.0;
  int64_t channel_dim = -1;  // the axis the per-channel parameters act on
};

// ResMLP's Affine: scale * x + bias along `channel_dim`; parameters `scale`, `bias` [features].
class AffineImpl : public torch::nn::Module {
 public:
  explicit AffineImpl(int64_t features, AffineOptions options = {});
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor scale, bias;  // bias undefined when use_bias is false

 private:
  AffineOptions options_;
};
TORCH_MODULE(Affine);

}  // namespace scenic::model
