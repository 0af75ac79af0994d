// MLP-Mixer (Scenic's projects/baselines/mixer.py; arXiv 2105.01601).
//
// Conv patch embedding `embedding` (kernel = stride = patch, VALID) -> tokens [B, N, D]
// -> `num_layers` x `mixerblock_i` -> LayerNorm `pre_logits_norm` -> mean over tokens
// -> `pre_logits` (identity) -> `output_projection` (zero kernel and bias).
//
// MixerBlock, as Scenic codes it (parameter names follow Flax's auto-naming):
//   x = inputs + SD(Affine_0(T(token_mixing(T(LayerNorm_0(inputs))))))   T = swap N, D
//   y = channel_mixing(LayerNorm_1(x))
//   out = SD(y) + Affine_1(x)
// token_mixing and channel_mixing are MlpBlocks (Dense, gelu, dropout, Dense, dropout;
// xavier_uniform kernels, N(0, 1e-6) biases) over the N tokens and the D channels. The
// Affine layers (ResMLP layer scale, scale starts at `layer_scale`, no bias) exist only
// when `layer_scale` is set. Scenic applies the second one to the residual stream `x`,
// not to the channel-mixing branch `y` (most likely a slip for `y = Affine(y)`); we
// replicate it so Scenic checkpoints trained with layer scale give the same outputs.
// Stochastic depth grows linearly: rate_i = stochastic_depth * i / max(L - 1, 1).
// LayerNorm eps is Flax's 1e-6.
//
// Config keys under `model.` (Scenic's): patch_size [ph, pw], hidden_size, num_layers,
// channels_mlp_dim, sequence_mlp_dim, dropout_rate (default 0.1), stochastic_depth
// (default 0), layer_scale (default null). Our addition: `variant` ("B/16": Scenic's
// imagenet_augreg_mixer_config table; explicit keys override it). Inputs are NCHW.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/attention_layers.h"
#include "scenic/model_lib/layers/nn_layers.h"

namespace scenic::baselines {

struct MixerOptions {
  std::vector<int64_t> patch_size{16, 16};
  int64_t hidden_size = 768;
  int64_t num_layers = 12;
  int64_t channels_mlp_dim = 3072;
  int64_t sequence_mlp_dim = 384;
  double dropout_rate = 0.1;
  double stochastic_depth = 0.0;
  std::optional<double> layer_scale;
  int64_t num_classes = 1000;
  std::vector<int64_t> input_shape{-1, 3, 224, 224};  // [-1, C, H, W]

  // "Ti/16", "S/32", "B/16", "L/16", "H/14", ...: sizes from Scenic's Mixer config table.
  static MixerOptions variant(const std::string& name);
  static MixerOptions from_config(const common::ConfigDict& model_config, const dataset::MetaData& meta);
};

class MixerBlockImpl : public torch::nn::Module {
 public:
  MixerBlockImpl(int64_t num_tokens, const MixerOptions& o, double stochastic_depth);
  torch::Tensor forward(const torch::Tensor& inputs);  // [B, N, D] -> [B, N, D]

  torch::nn::LayerNorm LayerNorm_0{nullptr}, LayerNorm_1{nullptr};
  model::MlpBlock token_mixing{nullptr}, channel_mixing{nullptr};
  model::Affine Affine_0{nullptr}, Affine_1{nullptr};  // layer_scale only

 private:
  // token_mixing applied across the tokens of x [B, N, D], without transposing x.
  // With `residual` defined: residual + that.
  torch::Tensor mix_tokens(const torch::Tensor& x, const torch::Tensor& residual = {});

  double stochastic_depth_;
  double dropout_rate_;
};
TORCH_MODULE(MixerBlock);

class Mixer : public model::Network {
 public:
  explicit Mixer(const MixerOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c, const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K]
  bool splits_batch_on_cpu() const override { return true; }       // train_lib/batch_split.h

  torch::nn::Conv2d embedding{nullptr};
  std::vector<MixerBlock> blocks;  // `mixerblock_i`
  torch::nn::LayerNorm pre_logits_norm{nullptr};
  torch::nn::Linear output_projection{nullptr};

 private:
  MixerOptions options_;
};

// Scenic's default_flax_model_config: patch 4, hidden 16, 1 layer, MLPs 32, no dropout.
extern const char* const kMixerDefaultConfig;

}  // namespace scenic::baselines
