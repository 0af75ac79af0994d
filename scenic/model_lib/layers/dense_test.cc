// dense / onednn_dense against x W^T + b evaluated in float64 by ATen (an independent
// GEMM), values and all three gradients; the backend switch, its fallbacks and errors;
// and the Transformer layers giving the same results on both backends.
#include "scenic/model_lib/layers/dense.h"

#include <gtest/gtest.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>

#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/layers/attention_layers.h"

namespace scenic::model {
namespace {

using testing::error_of;

// The oneDNN tests ASSERT onednn_linear_available(): scripts/setup.sh installs the torch
// wheel, which ships oneDNN on every CPU it supports, so its absence is a failure.

// Restores the process-wide backend when a test ends.
class BackendScope {
 public:
  explicit BackendScope(GemmBackend b) : saved_(gemm_backend()) { set_gemm_backend(b); }
  ~BackendScope() { set_gemm_backend(saved_); }

 private:
  GemmBackend saved_;
};

// max |a - b| / (max |b| + tiny): float32 GEMMs of these sizes agree with float64 to ~1e-6.
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const auto b64 = b.to(torch::kFloat64);
  return ((a.to(torch::kFloat64) - b64).abs().max() / (b64.abs().max() + 1e-30)).item<double>();
}

struct Grads {
  torch::Tensor y, gx, gw, gb;
};

// y = f(x, w, b) and the gradients of <y, g>.
template <typename F>
Grads run(F f, const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, const torch::Tensor& g) {
  auto xv = x.detach().clone().requires_grad_(true);
  auto wv = w.detach().clone().requires_grad_(true);
  auto bv = b.defined() ? b.detach().clone().requires_grad_(true) : torch::Tensor();
  auto y = f(xv, wv, bv);
  (y * g.to(y.dtype())).sum().backward();
  return {y.detach(), xv.grad(), wv.grad(), bv.defined() ? bv.grad() : torch::Tensor()};
}

TEST(Dense, OneDnnMatchesFloat64ValuesAndGradients) {
  ASSERT_TRUE(onednn_linear_available()) << "this LibTorch has no oneDNN operator";
  torch::manual_seed(0);
  // A 3-D input (the [B, N, D] of the Transformer layers), sizes off the vector widths,
  // with and without bias.
  for (bool bias : {true, false}) {
    auto x = torch::randn({3, 37, 45});
    auto w = torch::randn({29, 45}) * 0.2;
    auto b = bias ? torch::randn({29}) : torch::Tensor();
    auto g = torch::randn({3, 37, 29});
    auto got = run(onednn_dense, x, w, b, g);
    auto ref = run([](auto a, auto c, auto d) { return torch::linear(a, c, d); }, x.to(torch::kFloat64),
                   w.to(torch::kFloat64), bias ? b.to(torch::kFloat64) : torch::Tensor(), g.to(torch::kFloat64));
    ASSERT_EQ(got.y.sizes(), (std::vector<int64_t>{3, 37, 29}));
    EXPECT_EQ(got.y.scalar_type(), torch::kFloat32);
    EXPECT_LT(rel_err(got.y, ref.y), 2e-6) << "bias " << bias;
    EXPECT_LT(rel_err(got.gx, ref.gx), 2e-6) << "bias " << bias;
    EXPECT_LT(rel_err(got.gw, ref.gw), 2e-6) << "bias " << bias;
    if (bias) EXPECT_LT(rel_err(got.gb, ref.gb), 2e-6);
  }
}

// dense_add folds the residual into the GEMM (aten backend, float32 CPU): values and all
// four gradients against float64 dense + residual, the residual left unwritten; with and
// without bias, 2-D and 3-D, on both backends (oneDNN takes the unfolded path).
TEST(Dense, DenseAddEqualsDensePlusResidual) {
  torch::manual_seed(4);
  for (GemmBackend backend : {GemmBackend::kAten, GemmBackend::kOneDnn}) {
    if (backend == GemmBackend::kOneDnn && !onednn_linear_available()) continue;
    BackendScope scope(backend);
    for (bool bias : {true, false}) {
      for (std::vector<int64_t> lead : {std::vector<int64_t>{37}, std::vector<int64_t>{3, 11}}) {
        auto xs = lead, rs = lead;
        xs.push_back(45);
        rs.push_back(29);
        const auto x = torch::randn(xs), w = torch::randn({29, 45}) * 0.2, r = torch::randn(rs) * 3;
        const auto b = bias ? torch::randn({29}) : torch::Tensor();
        const auto g = torch::randn(rs);
        const auto r_before = r.clone();
        auto go = [&](const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
                      const torch::Tensor& r0, bool folded) {
          auto xv = x0.clone().requires_grad_(true), wv = w0.clone().requires_grad_(true);
          auto bv = b0.defined() ? b0.clone().requires_grad_(true) : torch::Tensor();
          auto rv = r0.clone().requires_grad_(true);
          auto y = folded ? dense_add(xv, wv, bv, rv) : torch::linear(xv, wv, bv) + rv;
          (y * g.to(y.dtype())).sum().backward();
          return std::vector<torch::Tensor>{y.detach(), xv.grad(), wv.grad(), bv.defined() ? bv.grad() : torch::zeros({1}),
                                            rv.grad()};
        };
        const auto got = go(x, w, b, r, true);
        const auto ref = go(x.to(torch::kFloat64), w.to(torch::kFloat64), bias ? b.to(torch::kFloat64) : b,
                            r.to(torch::kFloat64), false);
        EXPECT_EQ(got[0].sizes(), r.sizes());
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_LT(rel_err(got[i], ref[i]), 2e-6) << gemm_backend_name(backend) << " bias " << bias << " output " << i;
        EXPECT_TRUE(torch::equal(r, r_before));
      }
    }
  }
  // A residual of the wrong shape is named; no residual: dense.
  EXPECT_CONTAINS(error_of([] { dense_add(torch::ones({2, 3}), torch::ones({4, 3}), {}, torch::ones({2, 5})); }),
                  "residual [2, 5] does not match the product's shape [2, 4]");
  const auto x = torch::randn({2, 3}), w = torch::randn({4, 3});
  EXPECT_TRUE(torch::equal(dense_add(x, w, {}, {}), dense(x, w, {})));
}

TEST(Dense, NonContiguousInputAndNoGradMode) {
  ASSERT_TRUE(onednn_linear_available()) << "this LibTorch has no oneDNN operator";
  torch::manual_seed(1);
  auto x = torch::randn({16, 9, 4}).transpose(0, 2);  // [4, 9, 16], strided
  auto w = torch::randn({5, 16});
  auto b = torch::randn({5});
  torch::NoGradGuard no_grad;
  auto y = onednn_dense(x, w, b);
  EXPECT_LT(rel_err(y, torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64), b.to(torch::kFloat64))), 2e-6);
  EXPECT_FALSE(y.requires_grad());
  // An empty batch gives an empty result, not a oneDNN error.
  EXPECT_EQ(onednn_dense(torch::randn({0, 16}), w, b).sizes(), (std::vector<int64_t>{0, 5}));
}

TEST(Dense, BackendSwitchAndFallbacks) {
  torch::manual_seed(2);
  auto x = torch::randn({6, 8});
  auto w = torch::randn({3, 8});
  auto b = torch::randn({3});
  {
    BackendScope scope(GemmBackend::kAten);
    EXPECT_TRUE(torch::equal(dense(x, w, b), torch::linear(x, w, b)));  // the very same op
  }
  ASSERT_TRUE(onednn_linear_available()) << "this LibTorch has no oneDNN operator";
  BackendScope scope(GemmBackend::kOneDnn);
  EXPECT_TRUE(torch::equal(dense(x, w, b), onednn_dense(x, w, b)));
  // Other dtypes keep torch::linear.
  auto xd = x.to(torch::kFloat64), wd = w.to(torch::kFloat64), bd = b.to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(dense(xd, wd, bd), torch::linear(xd, wd, bd)));
  {  // Under CPU autocast, torch::linear's bf16 cast applies.
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    const auto y = dense(x, w, b);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  }
  EXPECT_CONTAINS(error_of([&] { dense(torch::randn({6, 7}), w, b); }), "[3, 8]");
  EXPECT_CONTAINS(error_of([&] { onednn_dense(xd, wd, bd); }), "float32");
}

TEST(Dense, ParseNamesTheKeyAndTheChoices) {
  EXPECT_EQ(parse_gemm_backend("aten"), GemmBackend::kAten);
  if (onednn_linear_available()) EXPECT_EQ(parse_gemm_backend("onednn"), GemmBackend::kOneDnn);
  const auto msg = error_of([] { parse_gemm_backend("mkl"); });
  EXPECT_CONTAINS(msg, "'gemm_backend'");
  EXPECT_CONTAINS(msg, "'auto', 'aten' or 'onednn'");
  EXPECT_CONTAINS(msg, "'mkl'");
}

// `auto` takes oneDNN only where MKL runs its generic kernels (AMD) and oneDNN is there.
TEST(Dense, AutoPicksOneDnnOnAmdOnly) {
  EXPECT_EQ(auto_gemm_backend("AuthenticAMD", true), GemmBackend::kOneDnn);
  EXPECT_EQ(auto_gemm_backend("AuthenticAMD", false), GemmBackend::kAten);
  EXPECT_EQ(auto_gemm_backend("GenuineIntel", true), GemmBackend::kAten);
  EXPECT_EQ(auto_gemm_backend("", true), GemmBackend::kAten);
  // This machine: on x86 CPUID's vendor string has 12 characters.
  const std::string v = cpu_vendor();
#if defined(__x86_64__)
  EXPECT_EQ(v.size(), 12u) << v;
#endif
  EXPECT_EQ(parse_gemm_backend("auto"), auto_gemm_backend(v, onednn_linear_available()));
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kOneDnn), "onednn");
  EXPECT_STREQ(gemm_backend_name(GemmBackend::kAten), "aten");
}

// The Transformer layers route their Dense products through dense(): with oneDNN an
// MLP block and a multi-head attention give what they give on ATen, values and
// parameter gradients, to float rounding.
TEST(Dense, TransformerLayersAgreeAcrossBackends) {
  ASSERT_TRUE(onednn_linear_available()) << "this LibTorch has no oneDNN operator";
  torch::manual_seed(3);
  MlpBlockOptions mo;
  mo.mlp_dim = 24;
  mo.dropout_rate = 0.0;
  MlpBlock mlp(12, mo);
  MultiHeadAttentionOptions ao;
  ao.num_heads = 3;
  MultiHeadAttention mha(12, ao);
  auto x = torch::randn({2, 7, 12});
  auto outputs = [&](GemmBackend backend) {
    BackendScope scope(backend);
    mlp->zero_grad();
    mha->zero_grad();
    auto y = mha->forward(mlp->forward(x));
    y.square().sum().backward();
    std::vector<torch::Tensor> all;
    all.push_back(y.detach());
    for (auto& p : mlp->parameters()) all.push_back(p.grad().clone());
    for (auto& p : mha->parameters()) all.push_back(p.grad().clone());
    return all;
  };
  const auto aten = outputs(GemmBackend::kAten);
  const auto onednn = outputs(GemmBackend::kOneDnn);
  ASSERT_EQ(aten.size(), onednn.size());
  ASSERT_GT(aten.size(), 8u);
  // The key bias's gradient is zero in exact arithmetic (a shift of every logit of a
  // query), so it is rounding noise on both backends: compare it, as every tensor, at
  // 1e-5 of its own scale plus 1e-6 of the largest gradient's.
  double scale = 0;
  for (const auto& t : aten) scale = std::max(scale, t.abs().max().item<double>());
  for (size_t i = 0; i < aten.size(); ++i) {
    const double err = (onednn[i] - aten[i]).abs().max().item<double>();
    EXPECT_LE(err, 1e-5 * aten[i].abs().max().item<double>() + 1e-6 * scale) << "tensor " << i;
  }
}

}  // namespace
}  // namespace scenic::model
