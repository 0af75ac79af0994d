#include "scenic/model_lib/layers/attention_layers.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/flop_counter.h"
#include "scenic/model_lib/layers/bias_gelu.h"
#include "scenic/model_lib/layers/dense.h"
#include "scenic/model_lib/layers/fused_attention.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::model {

namespace {

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Scenic's _attention_dropout: inverted dropout on the attention weights; with
// `broadcast_dims` the mask has size 1 along those dims and is shared across them.
torch::Tensor attention_dropout(const torch::Tensor& w, double rate,
                                const std::vector<int64_t>& broadcast_dims) {
  if (rate >= 1.0) return torch::zeros_like(w);  // keep_prob 0: Flax would divide 0 by 0
  auto shape = w.sizes().vec();
  for (int64_t d : broadcast_dims) shape[d < 0 ? d + w.dim() : d] = 1;
  auto keep = bernoulli_mask(shape, 1.0 - rate, w.options());
  return w * keep / (1.0 - rate);
}

// bias + bias_kv as one float logits bias, broadcastable to [batch..., H, Nq, Nk];
// undefined when neither is given. bias_kv [batch..., Nk] -> [batch..., 1, 1, Nk].
torch::Tensor combined_bias(const torch::Tensor& bias, const torch::Tensor& bias_kv,
                            torch::ScalarType dtype) {
  torch::Tensor m;
  if (bias.defined()) m = bias.to(dtype);
  if (bias_kv.defined()) {
    auto kv = bias_kv.to(dtype).unsqueeze(-2).unsqueeze(-2);
    m = m.defined() ? m + kv : kv;
  }
  return m;
}

// Attention in the head-major layout: q [batch..., H, Nq, d], k [batch..., H, Nk, d],
// v [batch..., H, Nk, dv] -> [batch..., H, Nq, dv]. `mask` is an additive bias (or
// undefined). Uses the fused kernel unless the weights are wanted or the dropout is
// broadcast (the fused kernels only drop elementwise) or this thread draws its masks from
// a generator of its own (random_masks.h; the fused kernel draws from the default one).
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& mask, double rate, bool broadcast_dropout,
                     const std::vector<int64_t>& broadcast_dims, bool deterministic,
                     torch::Tensor* weights) {
  const bool dropout = !deterministic && rate > 0.0;
  if (weights == nullptr &&
      !(dropout && (broadcast_dropout || rate >= 1.0 || mask_generator(q.device()).has_value()))) {
    // Short sequences on an AVX-512 CPU: one fused kernel per head (fused_attention.h);
    // ATen's op while FLOPs are counted (the counter reads it by name).
    if (!mask.defined() && !dropout && !common::FlopCounter::active() && fused_attention_applies(q, k, v))
      return fused_attention(q, k, v);
    // An undefined tensor is not "no mask" for SDPA: it must be nullopt.
    const auto attn_mask = mask.defined() ? std::optional<torch::Tensor>(mask) : std::nullopt;
    return at::scaled_dot_product_attention(q, k, v, attn_mask, dropout ? rate : 0.0);
  }
  // Scenic scales the query before the product: q / sqrt(d).
  auto logits = torch::matmul(q / std::sqrt(static_cast<double>(q.size(-1))),
                              k.transpose(-2, -1));  // [batch..., H, Nq, Nk]
  if (mask.defined()) logits = logits + mask;
  auto w = torch::softmax(logits, -1);
  if (weights != nullptr) *weights = w;
  if (dropout) w = attention_dropout(w, rate, broadcast_dropout ? broadcast_dims : std::vector<int64_t>{});
  return torch::matmul(w, v);
}

}  // namespace

torch::Tensor dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                    const torch::Tensor& value, const DotProductAttentionOptions& o,
                                    torch::Tensor* weights) {
  const auto where = [&] {
    return " (query " + shape_str(query) + ", key " + shape_str(key) + ", value " +
           shape_str(value) + ")";
  };
  if (query.dim() < 3 || key.dim() != query.dim() || value.dim() != query.dim())
    throw Error("dot_product_attention: q, k, v must have the same rank >= 3" + where());
  const int64_t n = query.dim();
  if (query.sizes().slice(0, n - 3) != key.sizes().slice(0, n - 3) ||
      query.sizes().slice(0, n - 3) != value.sizes().slice(0, n - 3))
    throw Error("dot_product_attention: q, k, v batch dims must match" + where());
  if (query.size(-2) != key.size(-2) || query.size(-2) != value.size(-2))
    throw Error("dot_product_attention: q, k, v num_heads must match" + where());
  if (key.size(-3) != value.size(-3))
    throw Error("dot_product_attention: k, v lengths must match" + where());
  if (query.size(-1) != key.size(-1))
    throw Error("dot_product_attention: q, k depths must match" + where());
  auto mask = combined_bias(o.bias, o.bias_kv, query.scalar_type());
  // [batch..., N, H, d] -> [batch..., H, N, d] and back.
  auto y = attend(query.transpose(-3, -2), key.transpose(-3, -2), value.transpose(-3, -2), mask,
                  o.dropout_rate, o.broadcast_dropout, /*broadcast_dims=*/{0, -2}, o.deterministic,
                  weights);
  return y.transpose(-3, -2);
}

torch::Tensor axial_dot_product_attention(const torch::Tensor& query, const torch::Tensor& key,
                                          const torch::Tensor& value,
                                          const DotProductAttentionOptions& o) {
  if (query.sizes() != key.sizes())
    throw Error("axial_dot_product_attention: query and key must have the same shape (query " +
                shape_str(query) + ", key " + shape_str(key) + ")");
  if (o.bias.defined())
    throw Error("axial_dot_product_attention: `bias` is not supported (use bias_kv)");
  const int64_t num_axes = query.dim() - 3;  // all dims but batch, heads and channels
  if (num_axes < 1 || value.dim() != query.dim() ||
      value.sizes().slice(0, query.dim() - 1) != query.sizes().slice(0, query.dim() - 1))
    throw Error("axial_dot_product_attention: q, k, v must be [B, s_1, ..., s_n, H, d] with the "
                "same leading dims (query " + shape_str(query) + ", value " + shape_str(value) + ")");
  const int64_t heads = query.size(-2);
  if (heads % num_axes != 0)
    throw Error("axial_dot_product_attention: number of heads (" + std::to_string(heads) +
                ") must be divisible by the number of attention axes (" +
                std::to_string(num_axes) + ")");
  torch::Tensor bias_kv;  // [B, s_1, ..., s_n]
  if (o.bias_kv.defined())
    bias_kv = o.bias_kv.to(query.scalar_type()).expand(query.sizes().slice(0, num_axes + 1));
  auto qs = query.chunk(num_axes, -2), ks = key.chunk(num_axes, -2), vs = value.chunk(num_axes, -2);
  std::vector<torch::Tensor> outputs;
  for (int64_t i = 0; i < num_axes; ++i) {
    const int64_t axis = i + 1;  // + 1 for the batch
    // [B, s..., h, d] -> [B, other s..., h, s_axis, d]: head-major with the attended axis
    // as the sequence.
    auto q = qs[i].movedim(axis, -2), k = ks[i].movedim(axis, -2), v = vs[i].movedim(axis, -2);
    torch::Tensor mask;
    if (bias_kv.defined()) mask = bias_kv.movedim(axis, -1).unsqueeze(-2).unsqueeze(-2);
    // Scenic's weights are [B, ..., x, ..., h, y] and its broadcast dropout shares the mask
    // along batch and heads: dims 0 and -3 of ours [B, other s..., h, x, y].
    auto y = attend(q, k, v, mask, o.dropout_rate, o.broadcast_dropout, /*broadcast_dims=*/{0, -3},
                    o.deterministic, nullptr);
    outputs.push_back(y.movedim(-2, axis));  // [B, s..., h, dv]
  }
  return torch::cat(outputs, -2);
}

MultiHeadAttentionImpl::MultiHeadAttentionImpl(int64_t in_features, MultiHeadAttentionOptions options)
    : options_(options) {
  const int64_t qkv = options.qkv_features > 0 ? options.qkv_features : in_features;
  const int64_t out_dim = options.out_features > 0 ? options.out_features : in_features;
  if (options.num_heads <= 0 ||
      (options.enforce_hidden_size_divisible_by_heads && qkv % options.num_heads != 0) ||
      qkv < options.num_heads)
    throw Error("attention: qkv_features (" + std::to_string(qkv) +
                ") must be divisible by num_heads (" + std::to_string(options.num_heads) + ")");
  head_dim_ = qkv / options.num_heads;
  const int64_t width = head_dim_ * options.num_heads;  // = qkv when divisible
  const KernelInit kernel_init = options.kernel_init ? options.kernel_init : &init::xavier_uniform_;
  const KernelInit out_init = options.out_kernel_init ? options.out_kernel_init : kernel_init;
  auto linear = [&](const char* name, int64_t in, int64_t o, bool bias, KernelInit init_fn) {
    auto l = register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, o).bias(bias)));
    torch::NoGradGuard no_grad;
    init_fn(l->weight);
    if (bias) torch::nn::init::zeros_(l->bias);
    return l;
  };
  query = linear("query", in_features, width, options.use_bias, kernel_init);
  key = linear("key", in_features, width, options.use_bias, kernel_init);
  value = linear("value", in_features, width, options.use_bias, kernel_init);
  out = linear("out", width, out_dim, true, out_init);  // Flax's output projection always has a bias
}

torch::Tensor MultiHeadAttentionImpl::run(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv,
                                          const AttentionArgs& args, torch::Tensor* weights,
                                          const torch::Tensor& residual) {
  const auto& kv = inputs_kv.defined() ? inputs_kv : inputs_q;
  auto add = [](const torch::Tensor& x, const torch::Tensor& pos) { return pos.defined() ? x + pos : x; };
  const int64_t h = options_.num_heads, d = head_dim_;
  // [..., N, D] -> [..., N, H, d]
  auto q = dense(add(inputs_q, args.pos_emb_q), query->weight, query->bias).unflatten(-1, {h, d});
  auto k = dense(add(kv, args.pos_emb_k), key->weight, key->bias).unflatten(-1, {h, d});
  auto v = dense(add(kv, args.pos_emb_v), value->weight, value->bias).unflatten(-1, {h, d});
  DotProductAttentionOptions o;
  o.bias = args.attention_bias;
  o.bias_kv = args.attention_bias_kv;
  o.dropout_rate = options_.dropout_rate;
  o.broadcast_dropout = options_.broadcast_dropout;
  o.deterministic = !is_training();
  torch::Tensor y;
  if (options_.attention_fn == AttentionFn::kAxial) {
    if (weights != nullptr)
      throw Error("attention: forward_with_weights supports dot-product attention only, not axial");
    y = axial_dot_product_attention(q, k, v, o);  // [B, s..., H, d]
  } else {
    y = dot_product_attention(q, k, v, o, weights);  // [batch..., Nq, H, d]
  }
  return dense_add(y.flatten(-2), out->weight, out->bias, residual);  // dense() where residual is undefined
}

torch::Tensor MultiHeadAttentionImpl::forward(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv,
                                              const AttentionArgs& args) {
  return run(inputs_q, inputs_kv, args, nullptr);
}

torch::Tensor MultiHeadAttentionImpl::forward_add(const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv,
                                                  const AttentionArgs& args, const torch::Tensor& residual) {
  if (!residual.defined()) throw Error("attention: forward_add needs a residual");
  return run(inputs_q, inputs_kv, args, nullptr, residual);
}

std::pair<torch::Tensor, torch::Tensor> MultiHeadAttentionImpl::forward_with_weights(
    const torch::Tensor& inputs_q, const torch::Tensor& inputs_kv, const AttentionArgs& args) {
  torch::Tensor weights;
  auto y = run(inputs_q, inputs_kv, args, &weights);
  return {y, weights};
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
  // Dense_0 as a plain GEMM with its bias added inside the fused GELU pass (bias_gelu.h);
  // where the fused kernel does not apply, bias_gelu is gelu(y + b) and the same function.
  auto h = bias_gelu(dense(x, Dense_0->weight, torch::Tensor()), Dense_0->bias);
  h = model::dropout(h, dropout_rate_, is_training());
  h = dense(h, Dense_1->weight, Dense_1->bias);
  return model::dropout(h, dropout_rate_, is_training());
}

torch::Tensor MlpBlockImpl::forward_add(const torch::Tensor& x, const torch::Tensor& residual) {
  if (!residual.defined()) throw Error("MlpBlock: forward_add needs a residual");
  if (is_training() && dropout_rate_ > 0.0) return residual + forward(x);
  auto h = bias_gelu(dense(x, Dense_0->weight, torch::Tensor()), Dense_0->bias);
  return dense_add(h, Dense_1->weight, Dense_1->bias, residual);
}

}  // namespace scenic::model
