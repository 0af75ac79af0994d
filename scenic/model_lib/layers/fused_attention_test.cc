// fused_attention: values and gradients against softmax(q k^T / sqrt(d)) v written out in
// float64 with autograd, on odd and ViT sizes, strided views, one and two threads; where
// it applies; NaN propagation; refusals.
#include "scenic/model_lib/layers/fused_attention.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

// The kernel runs exactly where the CPU has AVX-512F (every machine this project runs
// on). Elsewhere attention keeps ATen's kernels: there the tests below check that
// fused_attention refuses, naming the requirement, instead of checking its values.
bool have_kernel() {
  const auto t = torch::zeros({1, 1, 2, 4});
  const bool applies = fused_attention_applies(t, t, t);
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  EXPECT_EQ(applies, __builtin_cpu_supports("avx512f") != 0);
#else
  EXPECT_FALSE(applies);
#endif
  if (!applies) EXPECT_CONTAINS(testing::error_of([&] { fused_attention(t, t, t); }), "an AVX-512 CPU");
  return applies;
}

torch::Tensor reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto logits = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  return torch::matmul(torch::softmax(logits, -1), v);
}

struct Result {
  torch::Tensor o, dq, dk, dv;
};

// Output and input gradients for the upstream gradient g, fused (float32, inputs as
// given) or reference (float64 copies).
Result run(const torch::Tensor& q0, const torch::Tensor& k0, const torch::Tensor& v0, const torch::Tensor& g,
           bool fused) {
  auto leaf = [&](const torch::Tensor& t) {
    return (fused ? t.detach() : t.detach().to(torch::kDouble)).requires_grad_(true);
  };
  auto q = leaf(q0), k = leaf(k0), v = leaf(v0);
  auto o = fused ? fused_attention(q, k, v) : reference(q, k, v);
  o.backward(fused ? g : g.to(torch::kDouble));
  return {o.detach(), q.grad(), k.grad(), v.grad()};
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const char* what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double err = (got.to(torch::kDouble) - want).abs().max().item<double>();
  const double scale = want.abs().max().item<double>();
  EXPECT_LT(err, 2e-6 * scale + 1e-7) << what << ": max error " << err << " of " << scale;
}

void check(int64_t b, int64_t h, int64_t n, int64_t m, int64_t d, int64_t dv) {
  SCOPED_TRACE(::testing::Message() << "B " << b << " H " << h << " N " << n << " M " << m << " d " << d << " dv "
                                    << dv);
  torch::manual_seed(n * 131 + m);
  const auto q = torch::randn({b, h, n, d}) * 1.5, k = torch::randn({b, h, m, d}), v = torch::randn({b, h, m, dv});
  const auto g = torch::randn({b, h, n, dv});
  const auto got = run(q, k, v, g, true), want = run(q, k, v, g, false);
  expect_close(got.o, want.o, "output");
  expect_close(got.dq, want.dq, "dq");
  expect_close(got.dk, want.dk, "dk");
  expect_close(got.dv, want.dv, "dv");
}

TEST(FusedAttention, MatchesFloat64ReferenceValuesAndGradients) {
  if (!have_kernel()) return;  // checked the refusal instead
  check(2, 3, 17, 17, 32, 32);    // the Fashion-MNIST ViT's heads
  check(1, 2, 37, 21, 16, 40);    // N != M, dv != d, every tail partial
  check(2, 6, 197, 197, 64, 64);  // ViT-S/16
  check(1, 1, 1, 5, 8, 3);        // one query
  check(1, 2, 13, 1, 5, 7);       // one key: P = 1, no gradient reaches q or k
  check(1, 1, 40, 70, 256, 17);   // the largest depth
}

TEST(FusedAttention, ReadsStridedViewsOfAFusedProjectionAndReturnsTokensMajorMemory) {
  if (!have_kernel()) return;  // checked the refusal instead
  torch::manual_seed(5);
  const int64_t b = 2, n = 19, h = 3, d = 16;
  const auto qkv = torch::randn({b, n, 3, h, d});  // a qkv projection's output, split per head
  const auto parts = qkv.unbind(2);
  const auto q = parts[0].transpose(1, 2), k = parts[1].transpose(1, 2), v = parts[2].transpose(1, 2);
  ASSERT_FALSE(q.is_contiguous());
  ASSERT_TRUE(fused_attention_applies(q, k, v));
  const auto g = torch::randn({b, h, n, d});
  const auto strided = run(q, k, v, g, true);
  const auto packed = run(q.contiguous(), k.contiguous(), v.contiguous(), g, true);
  EXPECT_TRUE(torch::equal(strided.o, packed.o));
  EXPECT_TRUE(torch::equal(strided.dq, packed.dq));
  EXPECT_TRUE(torch::equal(strided.dk, packed.dk));
  EXPECT_TRUE(torch::equal(strided.dv, packed.dv));
  EXPECT_TRUE(strided.o.transpose(1, 2).is_contiguous());  // [B, N, H, dv] in memory
  // Gradients in their inputs' layouts where dense: q's is the tokens-major view's.
  const auto q_tokens = q.transpose(1, 2).contiguous().transpose(1, 2);
  const auto laid_out = run(q_tokens, k, v, g, true);
  EXPECT_EQ(laid_out.dq.strides(), q_tokens.strides());
  EXPECT_TRUE(torch::equal(laid_out.dq, strided.dq));
  EXPECT_TRUE(packed.dq.is_contiguous());
  // A non-contiguous upstream gradient gives the same.
  const auto g_t = g.transpose(2, 3).contiguous().transpose(2, 3);
  EXPECT_TRUE(torch::equal(run(q, k, v, g_t, true).dq, strided.dq));
}

TEST(FusedAttention, SameBitsOnOneThreadAndTwo) {
  if (!have_kernel()) return;  // checked the refusal instead
  torch::manual_seed(9);
  const auto q = torch::randn({3, 4, 23, 16}), k = torch::randn({3, 4, 23, 16}), v = torch::randn({3, 4, 23, 16});
  const auto g = torch::randn({3, 4, 23, 16});
  Result one, two;
  {
    testing::IntraOpThreads t(1);
    one = run(q, k, v, g, true);
  }
  {
    testing::IntraOpThreads t(2);
    two = run(q, k, v, g, true);
  }
  EXPECT_TRUE(torch::equal(one.o, two.o));
  EXPECT_TRUE(torch::equal(one.dk, two.dk));
}

TEST(FusedAttention, WithoutGradientTheSameValuesAndNoGraph) {
  if (!have_kernel()) return;  // checked the refusal instead
  torch::manual_seed(4);
  const auto q = torch::randn({2, 3, 29, 16}, torch::requires_grad()), k = torch::randn({2, 3, 31, 16}),
             v = torch::randn({2, 3, 31, 24});
  const auto with_graph = fused_attention(q, k, v);
  ASSERT_TRUE(with_graph.requires_grad());
  torch::NoGradGuard no_grad;
  const auto without = fused_attention(q, k, v);  // P in a per-thread buffer, not kept
  EXPECT_FALSE(without.requires_grad());
  EXPECT_TRUE(torch::equal(without, with_graph.detach()));
  EXPECT_TRUE(without.transpose(1, 2).is_contiguous());
}

TEST(FusedAttention, NanInALogitGivesANanRow) {
  if (!have_kernel()) return;  // checked the refusal instead
  auto q = torch::randn({1, 1, 3, 8});
  q[0][0][1][2] = NAN;
  const auto o = fused_attention(q, torch::randn({1, 1, 4, 8}), torch::randn({1, 1, 4, 8}));
  EXPECT_TRUE(torch::isnan(o[0][0][1]).all().item<bool>());
  EXPECT_FALSE(torch::isnan(o[0][0][0]).any().item<bool>());
  EXPECT_FALSE(torch::isnan(o[0][0][2]).any().item<bool>());
}

TEST(FusedAttention, WhereItAppliesAndRefusals) {
  const auto t = [](std::vector<int64_t> s) { return torch::zeros(s); };
  if (have_kernel()) {
    EXPECT_TRUE(fused_attention_applies(t({2, 6, 197, 64}), t({2, 6, 197, 64}), t({2, 6, 197, 64})));
    EXPECT_TRUE(fused_attention_applies(t({1, 1, 256, 256}), t({1, 1, 256, 256}), t({1, 1, 256, 256})));
    EXPECT_TRUE(fused_attention_applies(t({1, 1, 8192, 8}), t({1, 1, 8, 8}), t({1, 1, 8, 8})));  // 65536 scores
  }
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 257, 8}), t({1, 1, 256, 8}), t({1, 1, 256, 8})));  // long
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 577, 64}), t({1, 1, 577, 64}), t({1, 1, 577, 64})));  // ViT at 384
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 8, 257}), t({1, 1, 8, 257}), t({1, 1, 8, 8})));  // deep
  EXPECT_FALSE(fused_attention_applies(t({1, 8, 8}), t({1, 8, 8}), t({1, 8, 8})));                // 3-D
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 8, 8}), t({1, 1, 9, 8}), t({1, 1, 8, 8})));       // k, v lengths
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 8, 8}).to(torch::kDouble), t({1, 1, 8, 8}), t({1, 1, 8, 8})));
  EXPECT_FALSE(fused_attention_applies(t({1, 1, 8, 8}).transpose(2, 3), t({1, 1, 8, 8}), t({1, 1, 8, 8})));
  {
    at::autocast::set_autocast_enabled(at::kCPU, true);
    const bool under_autocast = fused_attention_applies(t({1, 1, 8, 8}), t({1, 1, 8, 8}), t({1, 1, 8, 8}));
    at::autocast::set_autocast_enabled(at::kCPU, false);
    EXPECT_FALSE(under_autocast);
  }
  EXPECT_CONTAINS(testing::error_of([&] { fused_attention(t({1, 2, 8}), t({1, 2, 8}), t({1, 2, 8})); }),
                  "got q [1, 2, 8]");
}

TEST(FusedAttention, DoubleBackwardIsRefused) {
  if (!have_kernel()) return;  // checked the refusal instead
  auto q = torch::randn({1, 1, 4, 8}, torch::requires_grad()), k = torch::randn({1, 1, 4, 8}),
       v = torch::randn({1, 1, 4, 8});
  auto o = fused_attention(q, k, v).sum();
  EXPECT_CONTAINS(testing::error_of([&] { torch::autograd::grad({o}, {q}, {}, true, true); }),
                  "double backward is not supported");
}

}  // namespace
}  // namespace scenic::model
