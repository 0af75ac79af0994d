// Transformer encoder block, pre-LN, as in ViT.
//
// Mirrors the `Encoder1DBlock` of Scenic's projects/baselines/vit.py (the block shared by
// ViT and its descendants: ViViT, TokenLearner, MBT, ...), with Flax's parameter names
// (`LayerNorm_0`, `MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`) so Flax
// checkpoints map name for name:
//   x = inputs + SD(Dropout(MHA(LN_0(inputs))))
//   y = x + SD(MlpBlock(LN_2(x)))
// where SD is stochastic depth and the layer norms use Flax's epsilon 1e-6. Sequences
// are [B, N, D].
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "scenic/model_lib/layers/attention_layers.h"

namespace scenic::model {

struct Encoder1DBlockOptions {
  int64_t mlp_dim = 0;
  int64_t num_heads = 1;
  double dropout_rate = 0.1;            // after the attention and inside the MLP block
  double attention_dropout_rate = 0.1;  // on the attention weights (not broadcast)
  double stochastic_depth = 0.0;        // per-example drop rate of both residual branches
};

// A LayerNorm over the last dim with Flax's epsilon (1e-6; LibTorch's default is 1e-5).
torch::nn::LayerNorm flax_layer_norm(int64_t features);

class Encoder1DBlockImpl : public torch::nn::Module {
 public:
  Encoder1DBlockImpl(int64_t hidden_size, Encoder1DBlockOptions options);
  // [B, N, D] -> [B, N, D]. `args` reaches the attention (masks, biases, pos-embs).
  torch::Tensor forward(const torch::Tensor& inputs, const AttentionArgs& args = {});
  // forward(inputs)[:, :n]: keys and values from every token, the queries and all that
  // follows (the attention's output projection, the MLP, both residuals) for the first `n`
  // tokens only. The same values and gradients as forward() then a slice, for about
  // (2 + 10 n / N) / 12 of the work: for a model that reads only its class token after
  // the last block (ViT's `token` classifier). Without attention args (their query rows
  // would need the same cut). With dropout in training the masks are drawn for the kept
  // tokens only (same distribution, another random stream).
  torch::Tensor forward_prefix(const torch::Tensor& inputs, int64_t n);

  torch::nn::LayerNorm LayerNorm_0{nullptr}, LayerNorm_2{nullptr};
  MultiHeadAttention MultiHeadDotProductAttention_1{nullptr};
  MlpBlock MlpBlock_3{nullptr};

 private:
  // rows < 0: every token; else the first `rows` (forward_prefix).
  torch::Tensor run(const torch::Tensor& inputs, int64_t rows, const AttentionArgs& args);
  Encoder1DBlockOptions options_;
};
TORCH_MODULE(Encoder1DBlock);

}  // namespace scenic::model
