// Dot-product attention (plain and head-axial), multi-head attention and the Transformer
// MLP block.
//
// Mirrors Scenic's model_lib/layers/attention_layers.py: `dot_product_attention`,
// `axial_dot_product_attention`, `MultiHeadAttention` and `MlpBlock`, with Flax's
// parameter naming (`query`, `key`, `value`, `out`; `Dense_0`, `Dense_1`) so that Flax
// checkpoints map name for name. The free functions take Scenic's layout
// [batch..., N, heads, head_dim]; the module takes [batch..., N, D] (or, for axial
// attention, [B, s_1, ..., s_n, D]). The plain attention runs through
// at::scaled_dot_product_attention (fused kernels, no [Nq, Nk] weights kept) unless the
// caller asks for the attention weights or broadcast dropout is active in training, which
// the fused kernels cannot express.
//
// The position-embedding and the Encoder1DBlock parts of Scenic's file live in
// position_embeddings.h and transformer_layers.h.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

namespace scenic::model {

// The keyword arguments of Scenic's dot_product_attention (dtype/precision aside).
struct DotProductAttentionOptions {
  // Additive logits bias, broadcastable to [batch..., heads, Nq, Nk] (masks, proximity,
  // relative position bias). Float, added before the softmax.
  torch::Tensor bias;
  // Additive bias per key, [batch..., Nk]: e.g. 0 for real keys, -1e9 for padding.
  torch::Tensor bias_kv;
  double dropout_rate = 0.0;
  // Scenic's broadcast: one dropout mask shared along dim 0 (batch) and dim -2 of the
  // weights. For plain attention the weights are [B, H, Nq, Nk], so dim -2 is the
  // *query* axis (Scenic's comment says "heads"; we follow its code).
  bool broadcast_dropout = true;
  bool deterministic = true;  // true: no dropout
};

// softmax(q k^T / sqrt(d) + bias + bias_kv) v. q [batch..., Nq, H, d], k [batch..., Nk, H, d],
// v [batch..., Nk, H, dv] -> [batch..., Nq, H, dv]. When `weights` is given it receives the
// attention weights [batch..., H, Nq, Nk] after the softmax and before dropout (what
// Scenic tags as `attn_weights`).
torch::Tensor dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                    const torch::Tensor& value,
                                    const DotProductAttentionOptions& options = {},
                                    torch::Tensor* weights = nullptr);

// Head-axial attention: q, k, v [B, s_1, ..., s_n, H, d] (q and k of the same shape); the
// heads are split into n equal groups and group i attends along spatial axis s_i only.
// `bias` is not supported (throws); `bias_kv` [B, s_1, ..., s_n] masks keys. Dropout
// broadcasts along the batch and the heads. Returns [B, s_1, ..., s_n, H, dv].
torch::Tensor axial_dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                          const torch::Tensor& value,
                                          const DotProductAttentionOptions& options = {});

enum class AttentionFn { kDotProduct, kAxial };

using KernelInit = void (*)(torch::Tensor&);

struct MultiHeadAttentionOptions {
  int64_t num_heads = 1;
  int64_t qkv_features = 0;  // 0: the input width
  int64_t out_features = 0;  // 0: the input width
  double dropout_rate = 0.0;  // on the attention weights
  bool broadcast_dropout = false;  // Scenic's MultiHeadAttention default
  bool use_bias = true;            // q/k/v projections; `out` always has a bias
  // Scenic's default is lecun_normal; we keep xavier_uniform, which ViT (the main user)
  // passes. `out_kernel_init` null: use `kernel_init`.
  KernelInit kernel_init = nullptr;  // null: init::xavier_uniform_
  KernelInit out_kernel_init = nullptr;
  AttentionFn attention_fn = AttentionFn::kDotProduct;
  // false: head_dim = qkv_features / num_heads rounded down, projections of width
  // num_heads * head_dim.
  bool enforce_hidden_size_divisible_by_heads = true;
};

// MultiHeadAttention's keyword arguments at call time.
struct AttentionArgs {
  // Added to the *inputs* before the q/k/v projections, as Scenic does
  // (add_positional_emb(inputs_q, pos_emb_q), ...); broadcastable to inputs_q / inputs_kv.
  torch::Tensor pos_emb_q, pos_emb_k, pos_emb_v;
  torch::Tensor attention_bias;     // broadcastable to [batch..., H, Nq, Nk]
  torch::Tensor attention_bias_kv;  // [batch..., Nk]
};

class MultiHeadAttentionImpl : public torch::nn::Module {
 public:
  MultiHeadAttentionImpl(int64_t in_features, MultiHeadAttentionOptions options);
  // Self-attention when `inputs_kv` is undefined. inputs_q [batch..., Nq, D],
  // inputs_kv [batch..., Nk, D] -> [batch..., Nq, out_features]. Dropout acts in training.
  torch::Tensor forward(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv = {},
                        const AttentionArgs& args = {});
  // The slow path: also returns the attention weights [batch..., H, Nq, Nk] (after
  // softmax, before dropout), for analysis. Plain dot-product attention only.
  std::pair<torch::Tensor, torch::Tensor> forward_with_weights(const torch::Tensor& inputs_q,
                                                               const torch::Tensor& inputs_kv = {},
                                                               const AttentionArgs& args = {});

  // residual + forward(inputs_q, inputs_kv, args), with the add folded into the output
  // projection's GEMM (dense_add); residual has the output's shape.
  torch::Tensor forward_add(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv,
                            const AttentionArgs& args, const torch::Tensor& residual);

  int64_t head_dim() const { return head_dim_; }

  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};

 private:
  torch::Tensor run(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv,
                    const AttentionArgs& args, torch::Tensor* weights, const torch::Tensor& residual = {});
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
  // residual + forward(x); where the output dropout is off (rate 0 or evaluation) the add
  // is folded into Dense_1's GEMM (dense_add).
  torch::Tensor forward_add(const torch::Tensor& x, const torch::Tensor& residual);

  torch::nn::Linear Dense_0{nullptr}, Dense_1{nullptr};

 private:
  double dropout_rate_;
};
TORCH_MODULE(MlpBlock);

}  // namespace scenic::model
