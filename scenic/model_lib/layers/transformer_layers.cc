#include "scenic/model_lib/layers/transformer_layers.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/nn_layers.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::model {

torch::nn::LayerNorm flax_layer_norm(int64_t features) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({features}).eps(1e-6));
}

Encoder1DBlockImpl::Encoder1DBlockImpl(int64_t hidden_size, Encoder1DBlockOptions options)
    : options_(options) {
  if (hidden_size <= 0 || options.mlp_dim <= 0)
    throw Error("Encoder1DBlock: hidden_size (" + std::to_string(hidden_size) + ") and mlp_dim (" +
                std::to_string(options.mlp_dim) + ") must be positive");
  LayerNorm_0 = register_module("LayerNorm_0", flax_layer_norm(hidden_size));
  MultiHeadAttentionOptions attn;
  attn.num_heads = options.num_heads;
  attn.dropout_rate = options.attention_dropout_rate;
  attn.broadcast_dropout = false;  // what ViT passes to Flax's attention
  MultiHeadDotProductAttention_1 =
      register_module("MultiHeadDotProductAttention_1", MultiHeadAttention(hidden_size, attn));
  LayerNorm_2 = register_module("LayerNorm_2", flax_layer_norm(hidden_size));
  MlpBlockOptions mlp;
  mlp.mlp_dim = options.mlp_dim;
  mlp.dropout_rate = options.dropout_rate;
  MlpBlock_3 = register_module("MlpBlock_3", MlpBlock(hidden_size, mlp));
}

torch::Tensor Encoder1DBlockImpl::forward(const torch::Tensor& inputs, const AttentionArgs& args) {
  return run(inputs, -1, args);
}

torch::Tensor Encoder1DBlockImpl::forward_prefix(const torch::Tensor& inputs, int64_t n) {
  if (inputs.dim() < 2 || n < 1 || n > inputs.size(-2))
    throw Error("Encoder1DBlock::forward_prefix: cannot keep " + std::to_string(n) + " tokens of inputs " +
                c10::str(inputs.sizes()) + " ([B, N, D], 1 <= n <= N)");
  return run(inputs, n, {});
}

torch::Tensor Encoder1DBlockImpl::run(const torch::Tensor& inputs, int64_t rows, const AttentionArgs& args) {
  const bool train = is_training();
  auto normed = LayerNorm_0(inputs);
  // The queries and the residual stream: every token, or the first `rows`.
  const auto q = rows < 0 ? normed : normed.narrow(-2, 0, rows);
  const auto res = rows < 0 ? inputs : inputs.narrow(-2, 0, rows);
  if (!train || (options_.dropout_rate == 0.0 && options_.stochastic_depth == 0.0)) {
    // Nothing between each branch's last Dense and its residual add: the adds go into the
    // GEMMs (dense_add). The attention's dropout is inside the attention.
    auto x = MultiHeadDotProductAttention_1->forward_add(q, normed, args, res);
    return MlpBlock_3->forward_add(LayerNorm_2(x), x);
  }
  auto x = MultiHeadDotProductAttention_1(q, normed, args);  // [B, rows or N, D]
  x = model::dropout(x, options_.dropout_rate, train);
  x = stochastic_depth_add(x, options_.stochastic_depth, train, res);
  auto y = MlpBlock_3(LayerNorm_2(x));
  return stochastic_depth_add(y, options_.stochastic_depth, train, x);
}

}  // namespace scenic::model
