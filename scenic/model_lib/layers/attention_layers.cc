#include "scenic/model_lib/layers/attention_layers.h"

#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"

namespace scenic::model {

MultiHeadAttentionImpl::MultiHeadAttentionImpl(int64_t in_features, MultiHeadAttentionOptions options)
    : options_(options) {
  const int64_t qkv = options.qkv_features > 0 ? options.qkv_features : in_features;
  const int64_t out_dim = options.out_features > 0 ? options.out_features : in_features;
  if (options.num_heads <= 0 || qkv % options.num_heads != 0)
    throw Error("attention: qkv_features (" + std::to_string(qkv) +
                ") must be divisible by num_heads (" + std::to_string(options.num_heads) + ")");
  head_dim_ = qkv / options.num_heads;
  auto linear = [&](const char* name, int64_t in, int64_t o, bool bias) {
    auto l = register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, o).bias(bias)));
    init::xavier_uniform_(l->weight);
    if (bias) torch::nn::init::zeros_(l->bias);
    return l;
  };
  query = linear("query", in_features, qkv, options.use_bias);
  key = linear("key", in_features, qkv, options.use_bias);
  value = linear("value", in_features, qkv, options.use_bias);
  out = linear("out", qkv, out_dim, true);  // Flax's output projection always has a bias
}

torch::Tensor MultiHeadAttentionImpl::split_heads(const torch::Tensor& x) const {
  return x.view({x.size(0), x.size(1), options_.num_heads, head_dim_}).transpose(1, 2);
}

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv) {
  const auto& kv = inputs_kv.defined() ? inputs_kv : inputs_q;
  auto q = split_heads(query(inputs_q));  // [B, H, Nq, d]
  auto k = split_heads(key(kv));          // [B, H, Nk, d]
  auto v = split_heads(value(kv));        // [B, H, Nk, d]
  const double p = is_training() ? options_.dropout_rate : 0.0;
  auto y = at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, p);  // [B, H, Nq, d]
  y = y.transpose(1, 2).reshape({inputs_q.size(0), inputs_q.size(1), -1});
  return out(y);
}

std::pair<torch::Tensor, torch::Tensor> MultiHeadAttentionImpl::forward_with_weights(
    const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv) {
  const auto& kv = inputs_kv.defined() ? inputs_kv : inputs_q;
  auto q = split_heads(query(inputs_q)) / std::sqrt(static_cast<double>(head_dim_));
  auto k = split_heads(key(kv));
  auto v = split_heads(value(kv));
  auto weights = torch::softmax(torch::matmul(q, k.transpose(-2, -1)), -1);  // [B, H, Nq, Nk]
  auto dropped = torch::dropout(weights, options_.dropout_rate, is_training());
  auto y = torch::matmul(dropped, v).transpose(1, 2).reshape({inputs_q.size(0), inputs_q.size(1), -1});
  return {out(y), weights};
}

MlpBlockImpl::MlpBlockImpl(int64_t in_features, MlpBlockOptions options)
    : dropout_rate_(options.dropout_rate) {
  const int64_t out_dim = options.out_dim > 0 ? options.out_dim : in_features;
  Dense_0 = register_module("Dense_0", torch::nn::Linear(in_features, options.mlp_dim));
  Dense_1 = register_module("Dense_1", torch::nn::Linear(options.mlp_dim, out_dim));
  for (auto* l : {&Dense_0, &Dense_1}) {
    init::xavier_uniform_((*l)->weight);
    torch::NoGradGuard no_grad;
    (*l)->bias.normal_(0.0, 1e-6);
  }
}

torch::Tensor MlpBlockImpl::forward(const torch::Tensor& x) {
  auto h = torch::gelu(Dense_0(x), "tanh");
  h = torch::dropout(h, dropout_rate_, is_training());
  h = Dense_1(h);
  return torch::dropout(h, dropout_rate_, is_training());
}

}  // namespace scenic::model
