// bias_gelu against torch::gelu(y + b, "tanh") computed in float64 (an independent
// evaluation of the same formula through ATen's tanh), forward and backward, including
// the vector tails, extreme and non-finite inputs, and the fallback cases.
#include "scenic/model_lib/layers/bias_gelu.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

torch::Tensor reference(const torch::Tensor& y, const torch::Tensor& b) {
  auto x = y.to(torch::kFloat64) + (b.defined() ? b.to(torch::kFloat64) : torch::zeros({}, torch::kFloat64));
  return torch::gelu(x, "tanh");
}

// Widely spread values: most in the curved region |x| < 4, some far out on both sides.
torch::Tensor spread(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn(shape) * 2.5;
  return torch::where(torch::rand(shape) < 0.05, x * 20, x);
}

TEST(BiasGelu, ForwardMatchesTorchTanhGelu) {
  for (int64_t cols : {1, 7, 8, 37, 256}) {  // below, at and past one 8-lane vector
    auto y = spread({3, 5, cols}, cols);
    auto b = spread({cols}, cols + 100);
    if (!bias_gelu_is_fused(y, b)) GTEST_SKIP() << "no AVX2+FMA on this CPU: the fallback is torch::gelu";
    const auto ref = reference(y, b);
    const auto out = bias_gelu(y, b);
    EXPECT_EQ(out.sizes(), y.sizes());
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    // float rounding of gelu's value: |out - ref| <= 1e-6 |ref| + 1e-7 (the input y + b is
    // itself rounded to float before gelu in ours and in float torch alike).
    const auto err = (out.to(torch::kFloat64) - ref).abs() - (1e-6 * ref.abs() + 1e-6);
    EXPECT_LE(err.max().item<double>(), 0.0) << "cols " << cols;
    // Without a bias.
    const auto out_nb = bias_gelu(y, torch::Tensor());
    EXPECT_TRUE(torch::allclose(out_nb.to(torch::kFloat64), reference(y, torch::Tensor()), 1e-6, 1e-6));
  }
}

TEST(BiasGelu, BackwardMatchesAutogradOfTorchGelu) {
  for (int64_t cols : {5, 16, 43}) {
    auto y = spread({4, 6, cols}, cols + 7).requires_grad_(true);
    auto b = spread({cols}, cols + 8).requires_grad_(true);
    if (!bias_gelu_is_fused(y, b)) GTEST_SKIP() << "no AVX2+FMA on this CPU";
    const auto w = spread({4, 6, cols}, cols + 9);  // loss = sum(w * gelu(y + b))
    (bias_gelu(y, b) * w).sum().backward();

    auto y64 = y.detach().to(torch::kFloat64).requires_grad_(true);
    auto b64 = b.detach().to(torch::kFloat64).requires_grad_(true);
    (torch::gelu(y64 + b64, "tanh") * w.to(torch::kFloat64)).sum().backward();
    EXPECT_TRUE(torch::allclose(y.grad().to(torch::kFloat64), y64.grad(), 1e-5, 1e-6))
        << (y.grad().to(torch::kFloat64) - y64.grad()).abs().max();
    // db sums 24 rows: absolute tolerance scaled accordingly.
    EXPECT_TRUE(torch::allclose(b.grad().to(torch::kFloat64), b64.grad(), 1e-5, 2e-5))
        << (b.grad().to(torch::kFloat64) - b64.grad()).abs().max();
  }
}

TEST(BiasGelu, KernelValuesByHand) {
  auto probe = torch::zeros({1, 8});
  if (!bias_gelu_is_fused(probe, torch::Tensor())) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  // gelu(0) = 0; gelu(1) = 0.5 (1 + tanh(0.79788456 * 1.044715)) = 0.84119199;
  // gelu(-1) = 1 - gelu(1) - 1 = -0.15880801 (gelu(x) - gelu(-x) = x);
  // gelu(3) = 0.5 * 3 * (1 + tanh(0.79788456 * 4.207305)) = 2.99636261; gelu(-30) ~ 0;
  // gelu(30) = 30. d/dx at 0: s + 0 = 0.5.
  const float y[9] = {0.f, 1.f, -1.f, 3.f, -30.f, 30.f, 0.f, 0.f, 1.f};  // 8 vector lanes + 1 tail
  const float expect[9] = {0.f, 0.84119199f, -0.15880801f, 2.99636261f, 0.f, 30.f, 0.f, 0.f, 0.84119199f};
  float out[9];
  bias_gelu_forward_kernel(y, nullptr, out, 1, 9);
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(out[i], expect[i], 5e-7f) << i;  // ~2 float ulps at 3
  const float g[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  float gy[9];
  bias_gelu_backward_kernel(g, y, nullptr, gy, 1, 9);
  EXPECT_NEAR(gy[0], 0.5f, 1e-7f);
  EXPECT_NEAR(gy[4], 0.f, 1e-7f);  // flat far left
  EXPECT_NEAR(gy[5], 1.f, 1e-7f);  // slope 1 far right
}

TEST(BiasGelu, NonFiniteInputsStayNonFinite) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto y = torch::tensor({nan, inf, -inf, 1.f, nan, 2.f, 3.f, 4.f, nan}).reshape({1, 9});
  if (!bias_gelu_is_fused(y, torch::Tensor())) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  const auto out = bias_gelu(y, torch::Tensor());
  EXPECT_TRUE(std::isnan(out[0][0].item<float>()));
  EXPECT_EQ(out[0][1].item<float>(), inf);
  EXPECT_FALSE(std::isfinite(out[0][2].item<float>()));  // torch gives NaN, we -inf: both caught as non-finite
  EXPECT_TRUE(std::isnan(out[0][4].item<float>()));
  EXPECT_TRUE(std::isnan(out[0][8].item<float>()));  // the scalar tail too
  EXPECT_NEAR(out[0][3].item<float>(), 0.84119199f, 2e-7f);  // neighbours unaffected
}

TEST(BiasGelu, FallsBackOutsideTheFusedCase) {
  auto y = spread({4, 6}, 1);
  auto b = spread({6}, 2);
  // float64, a transposed (non-contiguous) input: torch's own gelu, bit for bit.
  auto y64 = y.to(torch::kFloat64);
  EXPECT_FALSE(bias_gelu_is_fused(y64, b.to(torch::kFloat64)));
  EXPECT_TRUE(torch::equal(bias_gelu(y64, b.to(torch::kFloat64)), torch::gelu(y64 + b.to(torch::kFloat64), "tanh")));
  auto yt = spread({6, 4}, 3).t();
  EXPECT_FALSE(bias_gelu_is_fused(yt, b));
  EXPECT_TRUE(torch::equal(bias_gelu(yt, b), torch::gelu(yt + b, "tanh")));
  EXPECT_CONTAINS(testing::error_of([&] { bias_gelu(y, torch::zeros({5})); }), "bias must be [N]");
}

}  // namespace
}  // namespace scenic::model
