// ViT: the Vision Transformer (Scenic's projects/baselines/vit.py).
//
// Conv patch embedding `embedding` (kernel = stride = patch) -> optional zero-init `cls`
// token -> `Transformer`: learned 1-D position embedding, dropout, `num_layers` pre-LN
// `encoderblock_i` (LayerNorm, multi-head self-attention, dropout, stochastic depth,
// residual; LayerNorm, MlpBlock, stochastic depth, residual), `encoder_norm` -> pooling
// (`token` (alias '0'), `gap`, `gmp`, `gsp`, `map`, or `none`: no pooling, a prediction
// per token) -> optional `pre_logits` Dense+tanh
// (`representation_size`) -> zero-initialised `output_projection`. Parameter names follow
// Flax's tree so Scenic checkpoints map name for name. Inputs are NCHW.
//
// With the `token` classifier the last block runs for the class token's row only (keys
// and values from every token; Encoder1DBlock::forward_prefix): the same logits and
// gradients as the full encoder, ~1/L less work for L blocks.
//
// Position embeddings (`positional_embedding`): learned_1d (default), sinusoidal_1d
// (fixed table), sinusoidal_2d (fixed 2-D sin-cos; needs a square token grid, so no
// class token, as in Scenic) or none. Stochastic depth grows linearly over the layers.
//
// Config keys under `model.`: patches.size, hidden_size, mlp_dim, num_heads, num_layers,
// representation_size, classifier, positional_embedding, dropout_rate,
// attention_dropout_rate, stochastic_depth; and `variant` ("Ti/16", "S/32", "B/16",
// "L/16", "H/14": size and patch, Scenic's table) to fill any of the size keys not given.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/attention_layers.h"
#include "scenic/model_lib/layers/transformer_layers.h"

namespace scenic::baselines {

struct ViTOptions {
  std::vector<int64_t> patch_size{16, 16};
  int64_t hidden_size = 768;
  int64_t mlp_dim = 3072;
  int64_t num_heads = 12;
  int64_t num_layers = 12;
  std::optional<int64_t> representation_size;
  std::string classifier = "token";
  std::string positional_embedding = "learned_1d";
  double dropout_rate = 0.1;
  double attention_dropout_rate = 0.1;
  double stochastic_depth = 0.0;
  int64_t num_classes = 1000;
  std::vector<int64_t> input_shape{-1, 3, 224, 224};  // [-1, C, H, W]

  static ViTOptions from_config(const common::ConfigDict& model_config, const dataset::MetaData& meta);
};

// The pre-LN block is the shared one (model_lib/layers/transformer_layers.h).
using Encoder1DBlock = model::Encoder1DBlock;

// Learned 1-D position embedding `pos_embedding` [1, N, D], N(0, 0.02) init.
class AddPositionEmbsImpl : public torch::nn::Module {
 public:
  AddPositionEmbsImpl(int64_t num_tokens, int64_t width);
  torch::Tensor forward(const torch::Tensor& x) { return x + pos_embedding; }
  torch::Tensor pos_embedding;
};
TORCH_MODULE(AddPositionEmbs);

// Multihead attention pooling (big_vision's MAPHead, Scenic's `map` classifier): a
// learned `probe` query attends over the tokens, then LayerNorm + MLP with a residual.
class MAPHeadImpl : public torch::nn::Module {
 public:
  MAPHeadImpl(int64_t width, int64_t num_heads, int64_t mlp_dim);
  torch::Tensor forward(const torch::Tensor& x);  // [B, N, D] -> [B, D]

  torch::Tensor probe;  // [1, 1, D]
  model::MultiHeadAttention MultiHeadDotProductAttention_0{nullptr};
  torch::nn::LayerNorm LayerNorm_0{nullptr};
  model::MlpBlock MlpBlock_0{nullptr};
};
TORCH_MODULE(MAPHead);

// Position embedding, dropout, the blocks and the final norm.
class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const ViTOptions& o, int64_t num_tokens);
  // [B, N, D] -> [B, N, D]; with keep_tokens = n > 0, only the first n tokens of that
  // ([B, n, D]): the last block then computes just those rows (forward_prefix).
  torch::Tensor forward(const torch::Tensor& x, int64_t keep_tokens = 0);

  AddPositionEmbs posembed_input{nullptr};  // learned_1d only (sinusoidal ones are fixed)
  std::vector<Encoder1DBlock> blocks;  // registered as `encoderblock_i`
  torch::nn::LayerNorm encoder_norm{nullptr};

 private:
  double dropout_rate_;
  std::string positional_embedding_;
  torch::Tensor fixed_posemb_;  // [1, N, D] for the sinusoidal embeddings
};
TORCH_MODULE(Encoder);

class ViT : public model::Network {
 public:
  explicit ViT(const ViTOptions& options);
  // [B, C, H, W] -> [B, K] ([B, N, K] with classifier `none`).
  torch::Tensor forward(const torch::Tensor& inputs) override;
  // The pooled encoding after `pre_logits` (when present), before the head: [B, D].
  torch::Tensor representation(const torch::Tensor& inputs) override;
  bool splits_batch_on_cpu() const override { return true; }  // train_lib/batch_split.h

  torch::nn::Conv2d embedding{nullptr};
  torch::Tensor cls;  // [1, 1, D] for the token classifier
  Encoder Transformer{nullptr};
  MAPHead MAPHead_0{nullptr};  // classifier `map`
  torch::nn::Linear pre_logits{nullptr}, output_projection{nullptr};

 private:
  ViTOptions options_;
};

// The default `model:` block (ViT-Ti-like for small images).
extern const char* const kViTDefaultConfig;

}  // namespace scenic::baselines
