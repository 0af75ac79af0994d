// Tests for dot_product_attention, axial_dot_product_attention, MultiHeadAttention,
// MlpBlock, stochastic_depth and the Flax initializers (Scenic's attention_layers.py /
// nn_layers.py, inventory §3). The attention is checked against an independent
// computation softmax(Q K^T / sqrt(d) + bias) V written here with the layer's own weights.
#include "scenic/model_lib/layers/attention_layers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <numbers>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/nn_layers.h"

namespace scenic::model {
namespace {

// Gives every bias random values (they start at zero) so that the bias paths are tested.
void randomize_biases(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters())
    if (p.key().ends_with("bias")) p.value().normal_(0.0, 0.5);
}

// softmax(Q K^T / sqrt(d)) V per head, then the output projection, computed with plain
// matmuls from the layer's weights. Returns (output [B, Nq, O], weights [B, H, Nq, Nk]).
std::pair<torch::Tensor, torch::Tensor> manual_attention(MultiHeadAttention& mha, int64_t heads,
                                                         const torch::Tensor& xq,
                                                         const torch::Tensor& xkv) {
  auto proj = [](const torch::nn::Linear& l, const torch::Tensor& x) {
    auto y = torch::matmul(x, l->weight.t());
    return l->bias.defined() ? y + l->bias : y;
  };
  auto q = proj(mha->query, xq), k = proj(mha->key, xkv), v = proj(mha->value, xkv);  // [B, N, H*d]
  const int64_t b = xq.size(0), nq = xq.size(1), nk = xkv.size(1), d = q.size(2) / heads;
  auto split = [&](const torch::Tensor& t, int64_t n) { return t.reshape({b, n, heads, d}).permute({0, 2, 1, 3}); };
  auto qh = split(q, nq), kh = split(k, nk), vh = split(v, nk);  // [B, H, N, d]
  auto logits = torch::matmul(qh, kh.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  auto w = torch::exp(logits - std::get<0>(logits.max(-1, true)));
  w = w / w.sum(-1, true);                                        // [B, H, Nq, Nk]
  auto y = torch::matmul(w, vh).permute({0, 2, 1, 3}).reshape({b, nq, heads * d});
  return {proj(mha->out, y), w};
}

TEST(MultiHeadAttention, ParameterNamesAndShapes) {
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  MultiHeadAttention mha(8, o);
  auto params = mha->named_parameters();
  for (const char* name : {"query", "key", "value", "out"}) {
    ASSERT_TRUE(params.contains(std::string(name) + ".weight")) << name;
    ASSERT_TRUE(params.contains(std::string(name) + ".bias")) << name;
    EXPECT_EQ(params[std::string(name) + ".weight"].sizes(), (std::vector<int64_t>{8, 8}));
    // Biases start at zero (Flax's bias_init).
    EXPECT_EQ(params[std::string(name) + ".bias"].abs().sum().item<double>(), 0.0);
  }
  EXPECT_EQ(params.size(), 8u);
  // use_bias = false drops the q/k/v biases; the output projection keeps its bias.
  o.use_bias = false;
  MultiHeadAttention nobias(8, o);
  auto p2 = nobias->named_parameters();
  EXPECT_EQ(p2.size(), 5u);
  EXPECT_TRUE(p2.contains("out.bias"));
  EXPECT_FALSE(p2.contains("query.bias"));
}

TEST(MultiHeadAttention, FastPathEqualsWeightsPathEqualsManual) {
  torch::manual_seed(0);
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  MultiHeadAttention mha(8, o);
  randomize_biases(*mha);
  mha->eval();
  auto x = torch::randn({2, 5, 8});
  torch::NoGradGuard no_grad;
  auto fast = mha->forward(x);
  auto [slow, weights] = mha->forward_with_weights(x);
  auto [manual, manual_w] = manual_attention(mha, 2, x, x);
  EXPECT_EQ(fast.sizes(), (std::vector<int64_t>{2, 5, 8}));
  EXPECT_EQ(weights.sizes(), (std::vector<int64_t>{2, 2, 5, 5}));
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-5)) << (fast - slow).abs().max();
  EXPECT_TRUE(torch::allclose(fast, manual, 1e-5, 1e-5)) << (fast - manual).abs().max();
  EXPECT_TRUE(torch::allclose(weights, manual_w, 1e-5, 1e-5));
  // Rows of the attention weights are distributions.
  EXPECT_TRUE(torch::allclose(weights.sum(-1), torch::ones({2, 2, 5}), 1e-6, 1e-6));
  EXPECT_GE(weights.min().item<double>(), 0.0);
  // Passing the same tensor as inputs_kv is self-attention.
  EXPECT_TRUE(torch::allclose(mha->forward(x, x), fast, 1e-6, 1e-6));
}

TEST(MultiHeadAttention, CrossAttentionShapesAndValues) {
  torch::manual_seed(1);
  MultiHeadAttentionOptions o;
  o.num_heads = 3;
  o.qkv_features = 12;  // head dim 4
  o.out_features = 5;
  MultiHeadAttention mha(8, o);
  randomize_biases(*mha);
  mha->eval();
  EXPECT_EQ(mha->query->weight.sizes(), (std::vector<int64_t>{12, 8}));
  EXPECT_EQ(mha->out->weight.sizes(), (std::vector<int64_t>{5, 12}));
  auto xq = torch::randn({2, 3, 8});
  auto xkv = torch::randn({2, 7, 8});
  torch::NoGradGuard no_grad;
  auto fast = mha->forward(xq, xkv);
  auto [slow, weights] = mha->forward_with_weights(xq, xkv);
  auto [manual, manual_w] = manual_attention(mha, 3, xq, xkv);
  EXPECT_EQ(fast.sizes(), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_EQ(weights.sizes(), (std::vector<int64_t>{2, 3, 3, 7}));
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(fast, manual, 1e-5, 1e-5)) << (fast - manual).abs().max();
  EXPECT_TRUE(torch::allclose(weights.sum(-1), torch::ones({2, 3, 3}), 1e-6, 1e-6));
}

TEST(MultiHeadAttention, UniformWhenKeysAreEqual) {
  // Identical keys give identical logits, so every weight is 1 / Nk and the output is
  // out(mean of the values) = out(value(x_kv[0])) for identical kv rows.
  torch::manual_seed(2);
  MultiHeadAttentionOptions o;
  o.num_heads = 4;
  MultiHeadAttention mha(8, o);
  randomize_biases(*mha);
  auto xq = torch::randn({1, 3, 8});
  auto xkv = torch::randn({1, 1, 8}).expand({1, 6, 8}).contiguous();
  torch::NoGradGuard no_grad;
  auto [y, w] = mha->forward_with_weights(xq, xkv);
  EXPECT_TRUE(torch::allclose(w, torch::full_like(w, 1.0 / 6), 1e-6, 1e-6));
  auto expected = mha->out(mha->value(xkv.slice(1, 0, 1))).expand({1, 3, 8});
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(mha->forward(xq, xkv), expected, 1e-5, 1e-5));
}

TEST(MultiHeadAttention, AttentionDropoutOnlyInTraining) {
  torch::manual_seed(3);
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  o.dropout_rate = 0.5;
  MultiHeadAttention mha(8, o);
  auto x = torch::randn({2, 6, 8});
  torch::NoGradGuard no_grad;
  mha->eval();
  auto e1 = mha->forward(x), e2 = mha->forward(x);
  EXPECT_TRUE(torch::equal(e1, e2));
  EXPECT_TRUE(torch::allclose(e1, mha->forward_with_weights(x).first, 1e-5, 1e-5));
  mha->train();
  EXPECT_FALSE(torch::allclose(mha->forward(x), e1, 1e-4, 1e-4));
  auto [t, w] = mha->forward_with_weights(x);
  EXPECT_FALSE(torch::allclose(t, e1, 1e-4, 1e-4));
  // The returned weights are taken before dropout: still distributions.
  EXPECT_TRUE(torch::allclose(w.sum(-1), torch::ones({2, 2, 6}), 1e-6, 1e-6));
}

TEST(MultiHeadAttention, HeadsMustDivideTheWidth) {
  MultiHeadAttentionOptions o;
  o.num_heads = 3;
  EXPECT_THROW(MultiHeadAttention(10, o), scenic::Error);
  try {
    MultiHeadAttention(10, o);
  } catch (const scenic::Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_heads"), std::string::npos) << e.what();
  }
  o.qkv_features = 12;  // 12 % 3 == 0: fine even though the input width is 10
  EXPECT_NO_THROW(MultiHeadAttention(10, o));
  o.num_heads = 0;
  EXPECT_THROW(MultiHeadAttention(10, o), scenic::Error);
}

// Explicit attention for one sequence and head: softmax(q k^T / sqrt(d) + bias) v with
// q [Nq, d], k [Nk, d], v [Nk, dv], bias broadcastable to [Nq, Nk]. Returns (out, weights).
std::pair<torch::Tensor, torch::Tensor> explicit_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                           const torch::Tensor& v, const torch::Tensor& bias) {
  auto logits = torch::matmul(q, k.t()) / std::sqrt(static_cast<double>(q.size(-1)));
  if (bias.defined()) logits = logits + bias;
  auto w = torch::exp(logits - std::get<0>(logits.max(-1, true)));
  w = w / w.sum(-1, true);
  return {torch::matmul(w, v), w};
}

TEST(DotProductAttention, MatchesExplicitSoftmaxWithBiasAndKeyBias) {
  torch::manual_seed(10);
  const int64_t b = 2, nq = 3, nk = 5, h = 2, d = 4, dv = 3;
  // Scenic's layout: [B, N, H, d].
  auto q = torch::randn({b, nq, h, d}), k = torch::randn({b, nk, h, d}), v = torch::randn({b, nk, h, dv});
  auto bias = torch::randn({b, h, nq, nk});
  auto bias_kv = torch::randn({b, nk});
  torch::NoGradGuard no_grad;
  torch::Tensor weights;
  auto slow = dot_product_attention(q, k, v, {.bias = bias, .bias_kv = bias_kv}, &weights);
  auto fast = dot_product_attention(q, k, v, {.bias = bias, .bias_kv = bias_kv});
  ASSERT_EQ(slow.sizes(), (std::vector<int64_t>{b, nq, h, dv}));
  ASSERT_EQ(weights.sizes(), (std::vector<int64_t>{b, h, nq, nk}));
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < h; ++j) {
      auto [o, w] = explicit_attention(q[i].select(1, j), k[i].select(1, j), v[i].select(1, j),
                                       bias[i][j] + bias_kv[i].unsqueeze(0));
      EXPECT_TRUE(torch::allclose(slow[i].select(1, j), o, 1e-5, 1e-5)) << i << "," << j;
      EXPECT_TRUE(torch::allclose(weights[i][j], w, 1e-5, 1e-5)) << i << "," << j;
    }
  }
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-5)) << (fast - slow).abs().max();
  // A bias that broadcasts ([Nq, Nk], shared by batch and heads) and no key bias.
  auto bias2 = torch::randn({nq, nk});
  auto y2 = dot_product_attention(q, k, v, {.bias = bias2});
  auto [o2, w2] = explicit_attention(q[1].select(1, 0), k[1].select(1, 0), v[1].select(1, 0), bias2);
  EXPECT_TRUE(torch::allclose(y2[1].select(1, 0), o2, 1e-5, 1e-5));
  torch::Tensor w2s;
  EXPECT_TRUE(torch::allclose(dot_product_attention(q, k, v, {.bias = bias2}, &w2s), y2, 1e-5, 1e-5));
  // No batch dims beyond one, extra batch dims also work: [2, B, N, H, d].
  auto q5 = torch::stack({q, q.flip(0)}), k5 = torch::stack({k, k.flip(0)}), v5 = torch::stack({v, v.flip(0)});
  auto y5 = dot_product_attention(q5, k5, v5, {.bias_kv = torch::stack({bias_kv, bias_kv.flip(0)})});
  EXPECT_TRUE(torch::allclose(y5[0], dot_product_attention(q, k, v, {.bias_kv = bias_kv}), 1e-5, 1e-5));
}

TEST(DotProductAttention, KeyBiasMasksKeys) {
  torch::manual_seed(11);
  const int64_t nk = 6;
  auto q = torch::randn({2, 4, 2, 8}), k = torch::randn({2, nk, 2, 8}), v = torch::randn({2, nk, 2, 8});
  // Example 0: the last two keys are padding; example 1 keeps all.
  auto bias_kv = torch::zeros({2, nk});
  bias_kv[0].slice(0, 4).fill_(-1e9);
  torch::NoGradGuard no_grad;
  torch::Tensor w;
  auto slow = dot_product_attention(q, k, v, {.bias_kv = bias_kv}, &w);
  auto fast = dot_product_attention(q, k, v, {.bias_kv = bias_kv});
  // Masked keys get zero weight...
  EXPECT_EQ(w[0].slice(-1, 4).abs().max().item<double>(), 0.0);
  EXPECT_GT(w[1].slice(-1, 4).min().item<double>(), 0.0);
  // ... so example 0 equals attention over its first four keys only.
  auto trimmed = dot_product_attention(q.slice(0, 0, 1), k.slice(0, 0, 1).slice(1, 0, 4),
                                       v.slice(0, 0, 1).slice(1, 0, 4));
  EXPECT_TRUE(torch::allclose(slow.slice(0, 0, 1), trimmed, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(fast.slice(0, 0, 1), trimmed, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(slow[1], dot_product_attention(q, k, v)[1], 1e-5, 1e-5));
}

TEST(DotProductAttention, DropoutBroadcastsAlongBatchAndQueries) {
  // q = 0 gives uniform weights 1 / Nk; v = identity over keys turns the output into the
  // dropped weights themselves: out[b, q, h, k] = keep[b, h, q, k] * (1 / Nk) / (1 - rate).
  torch::manual_seed(12);
  const int64_t b = 3, nq = 4, h = 4, nk = 8;
  auto q = torch::zeros({b, nq, h, 2}), k = torch::randn({b, nk, h, 2});
  auto v = torch::eye(nk).view({1, nk, 1, nk}).expand({b, nk, h, nk});
  const double kept = 1.0 / nk / 0.5;  // 0.25
  torch::NoGradGuard no_grad;
  auto y = dot_product_attention(q, k, v, {.dropout_rate = 0.5, .broadcast_dropout = true, .deterministic = false});
  EXPECT_TRUE(((y == 0) | ((y - kept).abs() < 1e-6)).all().item<bool>());
  // Scenic's mask has size 1 on dims 0 and -2 of [B, H, Nq, Nk]: the same over batch and
  // queries, different over heads and keys.
  EXPECT_TRUE(torch::equal(y, y.slice(0, 0, 1).slice(1, 0, 1).expand_as(y)));
  EXPECT_FALSE(torch::equal(y.select(2, 0), y.select(2, 1)) && torch::equal(y.select(2, 1), y.select(2, 2)));
  // Elementwise dropout (fused path) varies over the batch too.
  auto z = dot_product_attention(q, k, v, {.dropout_rate = 0.5, .broadcast_dropout = false, .deterministic = false});
  EXPECT_TRUE(((z == 0) | ((z - kept).abs() < 1e-6)).all().item<bool>());
  EXPECT_FALSE(torch::equal(z[0], z[1]));
  // Deterministic: no dropout at all.
  auto e = dot_product_attention(q, k, v, {.dropout_rate = 0.5});
  EXPECT_TRUE(torch::allclose(e, torch::full_like(e, 1.0 / nk), 1e-6, 1e-6));
}

TEST(DotProductAttention, RejectsMismatchedShapes) {
  auto q = torch::zeros({2, 3, 2, 4});
  EXPECT_CONTAINS(testing::error_of([&] { dot_product_attention(q, torch::zeros({2, 5, 3, 4}), torch::zeros({2, 5, 3, 4})); }),
                  "num_heads");
  EXPECT_CONTAINS(testing::error_of([&] { dot_product_attention(q, torch::zeros({2, 5, 2, 3}), torch::zeros({2, 5, 2, 4})); }),
                  "depths");
  EXPECT_CONTAINS(testing::error_of([&] { dot_product_attention(q, torch::zeros({2, 5, 2, 4}), torch::zeros({2, 4, 2, 4})); }),
                  "lengths");
}

TEST(AxialDotProductAttention, EqualsExplicitPerAxisAttention) {
  torch::manual_seed(13);
  const int64_t b = 2, sh = 3, sw = 4, heads = 4, d = 3;
  auto q = torch::randn({b, sh, sw, heads, d}), k = torch::randn({b, sh, sw, heads, d});
  auto v = torch::randn({b, sh, sw, heads, d});
  auto bias_kv = torch::randn({b, sh, sw});
  torch::NoGradGuard no_grad;
  auto y = axial_dot_product_attention(q, k, v, {.bias_kv = bias_kv});
  ASSERT_EQ(y.sizes(), q.sizes());
  // Heads 0, 1 attend along the rows (axis 1), heads 2, 3 along the columns (axis 2).
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t hd = 0; hd < heads; ++hd) {
      if (hd < 2) {
        for (int64_t c = 0; c < sw; ++c) {  // column c: a sequence over the rows
          auto sel = [&](const torch::Tensor& t) { return t[i].select(1, c).select(1, hd); };  // [sh, d]
          auto [o, w] = explicit_attention(sel(q), sel(k), sel(v), bias_kv[i].select(1, c).unsqueeze(0));
          EXPECT_TRUE(torch::allclose(y[i].select(1, c).select(1, hd), o, 1e-5, 1e-5)) << i << hd << c;
        }
      } else {
        for (int64_t r = 0; r < sh; ++r) {  // row r: a sequence over the columns
          auto sel = [&](const torch::Tensor& t) { return t[i][r].select(1, hd); };  // [sw, d]
          auto [o, w] = explicit_attention(sel(q), sel(k), sel(v), bias_kv[i][r].unsqueeze(0));
          EXPECT_TRUE(torch::allclose(y[i][r].select(1, hd), o, 1e-5, 1e-5)) << i << hd << r;
        }
      }
    }
  }
  // One spatial axis: axial attention is plain attention.
  auto q1 = torch::randn({2, 5, 2, 4}), k1 = torch::randn({2, 5, 2, 4}), v1 = torch::randn({2, 5, 2, 4});
  auto kv1 = torch::randn({2, 5});
  EXPECT_TRUE(torch::allclose(axial_dot_product_attention(q1, k1, v1, {.bias_kv = kv1}),
                              dot_product_attention(q1, k1, v1, {.bias_kv = kv1}), 1e-5, 1e-5));
}

TEST(AxialDotProductAttention, DropoutBroadcastsAlongBatchAndHeadsAndErrors) {
  torch::manual_seed(14);
  // Uniform weights (q = 0) and identity values along the attended axis (1-D case):
  // out = keep / (1 - rate) / N per (query, key).
  const int64_t b = 3, n = 8, heads = 4;
  auto q = torch::zeros({b, n, heads, 2}), k = torch::randn({b, n, heads, 2});
  auto v = torch::eye(n).view({1, n, 1, n}).expand({b, n, heads, n});
  torch::NoGradGuard no_grad;
  auto y = axial_dot_product_attention(q, k, v, {.dropout_rate = 0.5, .broadcast_dropout = true, .deterministic = false});
  EXPECT_TRUE(((y == 0) | ((y - 0.25).abs() < 1e-6)).all().item<bool>());
  // Mask shared over batch and heads (Scenic's dims 0 and -2 of [B, x, h, y]).
  EXPECT_TRUE(torch::equal(y, y.slice(0, 0, 1).slice(2, 0, 1).expand_as(y)));
  EXPECT_FALSE(torch::equal(y.select(1, 0), y.select(1, 1)) && torch::equal(y.select(1, 1), y.select(1, 2)));
  auto x = torch::zeros({1, 2, 3, 3, 4});  // 3 heads over 2 axes
  EXPECT_CONTAINS(testing::error_of([&] { axial_dot_product_attention(x, x, x); }), "divisible");
  auto x2 = torch::zeros({1, 2, 3, 2, 4});
  EXPECT_CONTAINS(testing::error_of([&] { axial_dot_product_attention(x2, x2, x2, {.bias = torch::zeros({1})}); }),
                  "not supported");
  EXPECT_CONTAINS(testing::error_of([&] { axial_dot_product_attention(x2, torch::zeros({1, 2, 4, 2, 4}), x2); }),
                  "same shape");
}

TEST(MultiHeadAttention, PositionEmbeddingsAndBiasesMatchExplicit) {
  torch::manual_seed(15);
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  MultiHeadAttention mha(6, o);
  randomize_biases(*mha);
  mha->eval();
  const int64_t b = 2, nq = 3, nk = 4;
  auto xq = torch::randn({b, nq, 6}), xkv = torch::randn({b, nk, 6});
  AttentionArgs args;
  args.pos_emb_q = torch::randn({1, nq, 6});
  args.pos_emb_k = torch::randn({1, nk, 6});
  args.pos_emb_v = torch::randn({1, nk, 6});
  args.attention_bias = torch::randn({1, 2, nq, nk});
  args.attention_bias_kv = torch::randn({b, nk});
  torch::NoGradGuard no_grad;
  auto fast = mha->forward(xq, xkv, args);
  auto [slow, weights] = mha->forward_with_weights(xq, xkv, args);
  // Scenic adds the position embeddings to the inputs, before the projections.
  auto proj = [](const torch::nn::Linear& l, const torch::Tensor& x) { return torch::matmul(x, l->weight.t()) + l->bias; };
  auto q = proj(mha->query, xq + args.pos_emb_q), k = proj(mha->key, xkv + args.pos_emb_k);
  auto v = proj(mha->value, xkv + args.pos_emb_v);  // [B, N, 6]
  auto expected = torch::zeros({b, nq, 6});
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t hd = 0; hd < 2; ++hd) {
      auto cols = [&](const torch::Tensor& t) { return t[i].slice(1, 3 * hd, 3 * hd + 3); };
      auto [oh, w] = explicit_attention(cols(q), cols(k), cols(v),
                                        args.attention_bias[0][hd] + args.attention_bias_kv[i].unsqueeze(0));
      expected[i].slice(1, 3 * hd, 3 * hd + 3).copy_(oh);
      EXPECT_TRUE(torch::allclose(weights[i][hd], w, 1e-5, 1e-5));
    }
  }
  expected = proj(mha->out, expected);
  EXPECT_TRUE(torch::allclose(slow, expected, 1e-5, 1e-5)) << (slow - expected).abs().max();
  EXPECT_TRUE(torch::allclose(fast, slow, 1e-5, 1e-5)) << (fast - slow).abs().max();
  // Each argument matters: dropping one changes the result.
  for (int i = 0; i < 5; ++i) {
    AttentionArgs a = args;
    torch::Tensor* fields[] = {&a.pos_emb_q, &a.pos_emb_k, &a.pos_emb_v, &a.attention_bias, &a.attention_bias_kv};
    *fields[i] = torch::Tensor();
    EXPECT_FALSE(torch::allclose(mha->forward(xq, xkv, a), fast, 1e-4, 1e-4)) << "argument " << i;
  }
}

TEST(MultiHeadAttention, ExtraBatchDimsAndBroadcastDropout) {
  torch::manual_seed(16);
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  o.dropout_rate = 0.3;
  o.broadcast_dropout = true;
  MultiHeadAttention mha(4, o);
  randomize_biases(*mha);
  mha->eval();
  auto x = torch::randn({2, 3, 5, 4});  // [B, T, N, D]
  torch::NoGradGuard no_grad;
  auto y = mha->forward(x);
  ASSERT_EQ(y.sizes(), x.sizes());
  for (int64_t t = 0; t < 3; ++t)
    EXPECT_TRUE(torch::allclose(y.select(1, t), mha->forward(x.select(1, t)), 1e-5, 1e-5)) << t;
  // Training with broadcast dropout goes through the explicit path and still drops.
  mha->train();
  auto yt = mha->forward(x);
  EXPECT_TRUE(torch::isfinite(yt).all().item<bool>());
  EXPECT_FALSE(torch::allclose(yt, y, 1e-4, 1e-4));
}

TEST(MultiHeadAttention, AxialAttentionFnAndKernelInit) {
  torch::manual_seed(17);
  MultiHeadAttentionOptions o;
  o.num_heads = 4;
  o.attention_fn = AttentionFn::kAxial;
  o.out_kernel_init = [](torch::Tensor& w) { w.fill_(0.25); };
  MultiHeadAttention mha(8, o);
  EXPECT_TRUE(torch::equal(mha->out->weight, torch::full({8, 8}, 0.25)));
  EXPECT_FALSE(torch::equal(mha->query->weight, torch::full({8, 8}, 0.25)));  // xavier
  randomize_biases(*mha);
  auto x = torch::randn({2, 3, 4, 8});  // [B, h, w, D]
  auto kv_bias = torch::randn({2, 3, 4});
  torch::NoGradGuard no_grad;
  AttentionArgs args;
  args.attention_bias_kv = kv_bias;
  auto y = mha->forward(x, {}, args);
  auto split = [](const torch::Tensor& t) { return t.unflatten(-1, {4, 2}); };
  auto expected = mha->out(axial_dot_product_attention(split(mha->query(x)), split(mha->key(x)),
                                                       split(mha->value(x)), {.bias_kv = kv_bias})
                               .flatten(-2));
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5));
  EXPECT_CONTAINS(testing::error_of([&] { mha->forward_with_weights(x); }), "axial");
}

TEST(MlpBlock, EvalEqualsDenseGeluTanhDense) {
  torch::manual_seed(4);
  MlpBlockOptions o;
  o.mlp_dim = 16;
  o.dropout_rate = 0.5;
  MlpBlock mlp(6, o);
  mlp->eval();
  auto params = mlp->named_parameters();
  EXPECT_EQ(params["Dense_0.weight"].sizes(), (std::vector<int64_t>{16, 6}));
  EXPECT_EQ(params["Dense_1.weight"].sizes(), (std::vector<int64_t>{6, 16}));
  // Biases ~ N(0, 1e-6): tiny but set.
  EXPECT_LT(params["Dense_0.bias"].abs().max().item<double>(), 1e-5);
  randomize_biases(*mlp);
  auto x = torch::randn({3, 4, 6});
  torch::NoGradGuard no_grad;
  auto h = torch::matmul(x, mlp->Dense_0->weight.t()) + mlp->Dense_0->bias;
  // gelu, tanh approximation (jax.nn.gelu's default):
  // 0.5 h (1 + tanh(sqrt(2 / pi) (h + 0.044715 h^3))).
  h = 0.5 * h * (1 + torch::tanh(std::sqrt(2.0 / std::numbers::pi) * (h + 0.044715 * h.pow(3))));
  auto expected = torch::matmul(h, mlp->Dense_1->weight.t()) + mlp->Dense_1->bias;
  auto y = mlp->forward(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << (y - expected).abs().max();
  // Dropout acts in training only.
  mlp->train();
  EXPECT_FALSE(torch::allclose(mlp->forward(x), expected, 1e-4, 1e-4));
}

TEST(MlpBlock, OutDim) {
  MlpBlockOptions o;
  o.mlp_dim = 16;
  o.out_dim = 3;
  MlpBlock mlp(6, o);
  EXPECT_EQ(mlp->forward(torch::randn({2, 6})).sizes(), (std::vector<int64_t>{2, 3}));
}

TEST(StochasticDepth, IdentityInEvalOrAtRateZero) {
  auto x = torch::randn({8, 3});
  EXPECT_TRUE(torch::equal(stochastic_depth(x, 0.5, /*training=*/false), x));
  EXPECT_TRUE(torch::equal(stochastic_depth(x, 0.0, /*training=*/true), x));
}

TEST(StochasticDepth, RateOneDropsEverythingWithoutNaN) {
  // Flax's Dropout returns zeros for rate 1; 0 * 1 / (1 - 1) would be NaN.
  auto y = stochastic_depth(torch::ones({16, 3}), 1.0, /*training=*/true);
  EXPECT_TRUE(torch::equal(y, torch::zeros({16, 3})));
}

TEST(StochasticDepth, DropsWholeExamplesAndRescales) {
  torch::manual_seed(0);
  auto y = stochastic_depth(torch::ones({1000, 4}), 0.5, /*training=*/true);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1000, 4}));
  // Each row is all 0 (dropped) or all 1 / (1 - 0.5) = 2 (kept).
  auto row_min = std::get<0>(y.min(1)), row_max = std::get<0>(y.max(1));
  EXPECT_TRUE(torch::equal(row_min, row_max));
  EXPECT_TRUE(((row_min == 0) | (row_min == 2)).all().item<bool>());
  // Kept fraction ~ Binomial(1000, 0.5) / 1000: sd 0.016, so +-0.08 is a 5-sigma bound.
  const double kept = (row_min == 2).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.5, 0.08);
  // The expectation is preserved: mean over everything ~ 1.
  EXPECT_NEAR(y.mean().item<double>(), 1.0, 0.16);
  // Works per example for higher-rank inputs too ([B, N, D]).
  auto z = stochastic_depth(torch::ones({200, 3, 2}), 0.25, true);
  auto zmin = z.flatten(1).amin(1), zmax = z.flatten(1).amax(1);
  EXPECT_TRUE(torch::equal(zmin, zmax));
  EXPECT_TRUE(((zmin == 0) | ((zmin - 1.0 / 0.75).abs() < 1e-6)).all().item<bool>());
}

// stochastic_depth_add is residual + stochastic_depth in one pass: from the same seed the
// same examples are dropped, values and gradients agree to float rounding; eval, rate 0
// and rate 1 as stochastic_depth.
TEST(StochasticDepth, AddEqualsResidualPlusStochasticDepth) {
  const auto x0 = torch::randn({64, 5, 3}), r0 = torch::randn({64, 5, 3}), g = torch::randn({64, 5, 3});
  auto run = [&](bool fused, double rate, bool training) {
    auto x = x0.clone().requires_grad_(true), r = r0.clone().requires_grad_(true);
    torch::manual_seed(7);
    auto y = fused ? stochastic_depth_add(x, rate, training, r) : r + stochastic_depth(x, rate, training);
    (y * g).sum().backward();
    return std::vector<torch::Tensor>{y.detach(), x.grad().defined() ? x.grad() : torch::zeros_like(x0), r.grad()};
  };
  for (const auto& [rate, training] : std::vector<std::pair<double, bool>>{{0.3, true}, {0.3, false}, {0.0, true},
                                                                           {1.0, true}}) {
    const auto got = run(true, rate, training), want = run(false, rate, training);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-6, 1e-6)) << "rate " << rate << " training " << training
                                                                << " output " << i;
  }
  // Rate 0.3 in training drops some examples and keeps others: the residual alone, or
  // residual + x / 0.7.
  const auto y = run(true, 0.3, true)[0];
  const auto dropped = ((y - r0).abs().flatten(1).amax(1) == 0);
  const auto kept = ((y - r0 - x0 / 0.7).abs().flatten(1).amax(1) < 1e-5);
  EXPECT_TRUE((dropped | kept).all().item<bool>());
  EXPECT_GT(dropped.sum().item<int64_t>(), 5);
  EXPECT_GT(kept.sum().item<int64_t>(), 20);
}

TEST(Initializers, TruncatedNormalBoundsAndStd) {
  torch::manual_seed(0);
  auto t = torch::empty({200000});
  init::truncated_normal_(t, 0.02);
  // Samples lie within +-2 sigma of the *untruncated* normal; that normal's sigma is
  // 0.02 / 0.8796 so that the truncated result has std 0.02.
  EXPECT_LE(t.abs().max().item<double>(), 2 * 0.02 / 0.87962566 + 1e-7);
  EXPECT_NEAR(t.std().item<double>(), 0.02, 0.02 * 0.01);
  EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.02 * 0.015);
}

TEST(Initializers, LecunNormalAndXavierUniformFans) {
  torch::manual_seed(0);
  // Linear [out=256, in=400]: lecun std = 1/sqrt(400) = 0.05.
  auto w = torch::empty({256, 400});
  init::lecun_normal_(w);
  EXPECT_NEAR(w.std().item<double>(), 0.05, 0.05 * 0.02);
  // Conv [out=64, in=16, 5, 5]: fan_in = 16 * 25 = 400 -> also 0.05.
  auto c = torch::empty({64, 16, 5, 5});
  init::lecun_normal_(c);
  EXPECT_NEAR(c.std().item<double>(), 0.05, 0.05 * 0.02);
  // Xavier uniform [out=300, in=500]: limit sqrt(6 / 800); variance limit^2 / 3 = 2 / 800.
  auto x = torch::empty({300, 500});
  init::xavier_uniform_(x);
  const double limit = std::sqrt(6.0 / 800.0);
  EXPECT_LE(x.abs().max().item<double>(), limit);
  EXPECT_GT(x.abs().max().item<double>(), 0.99 * limit);
  EXPECT_NEAR(x.std().item<double>(), std::sqrt(2.0 / 800.0), std::sqrt(2.0 / 800.0) * 0.02);
}

}  // namespace
}  // namespace scenic::model
