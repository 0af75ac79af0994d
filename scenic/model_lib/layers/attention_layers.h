// Multi-head dot-product attention and the Transformer MLP block.
//
// Mirrors Scenic's model_lib/layers/attention_layers.py (MultiHeadAttention, MlpBlock)
// with Flax's parameter naming (`query`, `key`, `value`, `out`; `Dense_0`, `Dense_1`)
// so that Flax checkpoints map name for name. Sequences are [B, N, D]. The attention
// runs through at::scaled_dot_product_attention (fused kernels, no [N, N] weights kept)
// unless the caller asks for the attention weights.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

namespace scenic::model {

struct MultiHeadAttentionOptions {
  int64_t num_heads = 1;
  int64_t qkv_features = 0;  // 0: the input width
  int64_t out_features = 0;  // 0: the input width
  double dropout_rate = 0.0;  // on the attention weights
  bool use_bias = true;
};

class MultiHeadAttentionImpl : public torch::nn::Module {
 public:
  MultiHeadAttentionImpl(int64_t in_features, MultiHeadAttentionOptions options);
  // Self-attention when `inputs_kv` is undefined. inputs_q [B, Nq, D], inputs_kv [B, Nk, D].
  torch::Tensor forward(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv = {});
  // The slow path: also returns the attention weights [B, H, Nq, Nk] (after softmax,
  // before dropout), for analysis.
  std::pair<torch::Tensor, torch::Tensor> forward_with_weights(const torch::Tensor& inputs_q,
                                                               const torch::Tensor& inputs_kv = {});

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};

 private:
  torch::Tensor split_heads(const torch::Tensor& x) const;  // [B, N, H*d] -> [B, H, N, d]
  MultiHeadAttentionOptions options_;
  int64_t head_dim_ = 0;
};
TORCH_MODULE(MultiHeadAttention);

struct MlpBlockOptions {
  int64_t mlp_dim = 0;
  int64_t out_dim = 0;  // 0: the input width
  double dropout_rate = 0.1;
};

// Dense(mlp_dim) -> gelu (tanh approximation, as jax.nn.gelu) -> dropout -> Dense -> dropout.
class MlpBlockImpl : public torch::nn::Module {
 public:
  MlpBlockImpl(int64_t in_features, MlpBlockOptions options);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear Dense_0{nullptr}, Dense_1{nullptr};

 private:
  double dropout_rate_;
};
TORCH_MODULE(MlpBlock);

}  // namespace scenic::model
