// bias_gelu against torch::gelu(y + b, "tanh") computed in float64 (an independent
// evaluation of the same formula through ATen's tanh), forward and backward, including
// the vector tails, extreme and non-finite inputs, and the fallback cases; every value
// test runs once per vector kernel this CPU has (AVX-512, AVX2).
#include "scenic/model_lib/layers/bias_gelu.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

torch::Tensor reference(const torch::Tensor& y, const torch::Tensor& b) {
  auto x = y.to(torch::kFloat64) + (b.defined() ? b.to(torch::kFloat64) : torch::zeros({}, torch::kFloat64));
  return torch::gelu(x, "tanh");
}

// The kernels to test on this CPU: each vector instruction set bias_gelu_use_isa accepts
// here, then "none" (no kernels: bias_gelu is torch::gelu and the raw kernels refuse), so
// every test checks something on any CPU. The guard restores the default kernels.
struct IsaGuard {
  ~IsaGuard() { bias_gelu_use_isa("best"); }
};
std::vector<std::string> isas() {
  std::vector<std::string> out;
  IsaGuard restore;
  for (const char* isa : {"avx512", "avx2", "none"})
    if (bias_gelu_use_isa(isa)) out.push_back(isa);
  return out;
}

// Widely spread values: most in the curved region |x| < 4, some far out on both sides.
torch::Tensor spread(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn(shape) * 2.5;
  return torch::where(torch::rand(shape) < 0.05, x * 20, x);
}

TEST(BiasGelu, ForwardMatchesTorchTanhGelu) {
  IsaGuard restore;
  for (const auto& isa : isas()) {
    ASSERT_TRUE(bias_gelu_use_isa(isa));
    // Below, at and past one 8- and one 16-lane vector.
    for (int64_t cols : {1, 7, 8, 15, 16, 17, 37, 256}) {
      auto y = spread({3, 5, cols}, cols);
      auto b = spread({cols}, cols + 100);
      EXPECT_EQ(bias_gelu_is_fused(y, b), isa != "none");
      const auto ref = reference(y, b);
      const auto out = bias_gelu(y, b);
      EXPECT_EQ(out.sizes(), y.sizes());
      EXPECT_EQ(out.scalar_type(), torch::kFloat32);
      // float rounding of gelu's value: |out - ref| <= 1e-6 |ref| + 1e-6 (the input y + b
      // is itself rounded to float before gelu in ours and in float torch alike).
      const auto err = (out.to(torch::kFloat64) - ref).abs() - (1e-6 * ref.abs() + 1e-6);
      EXPECT_LE(err.max().item<double>(), 0.0) << isa << " cols " << cols;
      // Without a bias.
      const auto out_nb = bias_gelu(y, torch::Tensor());
      EXPECT_TRUE(torch::allclose(out_nb.to(torch::kFloat64), reference(y, torch::Tensor()), 1e-6, 1e-6)) << isa;
    }
  }
}

TEST(BiasGelu, BackwardMatchesAutogradOfTorchGelu) {
  IsaGuard restore;
  for (const auto& isa : isas()) {
    ASSERT_TRUE(bias_gelu_use_isa(isa));
    // 24 rows (one block) and 150 rows (three blocks of the bias-gradient sum, the last
    // partial).
    for (int64_t rows : {24, 150}) {
      for (int64_t cols : {5, 16, 43}) {
        auto y = spread({rows / 6, 6, cols}, cols + 7).requires_grad_(true);
        auto b = spread({cols}, cols + 8).requires_grad_(true);
        const auto w = spread({rows / 6, 6, cols}, cols + 9);  // loss = sum(w * gelu(y + b))
        (bias_gelu(y, b) * w).sum().backward();
        if (isa == "none") {  // torch::gelu's own float32 backward, the very same ops
          auto y32 = y.detach().clone().requires_grad_(true), b32 = b.detach().clone().requires_grad_(true);
          (torch::gelu(y32 + b32, "tanh") * w).sum().backward();
          EXPECT_TRUE(torch::equal(y.grad(), y32.grad()));
          EXPECT_TRUE(torch::equal(b.grad(), b32.grad()));
          continue;
        }

        auto y64 = y.detach().to(torch::kFloat64).requires_grad_(true);
        auto b64 = b.detach().to(torch::kFloat64).requires_grad_(true);
        (torch::gelu(y64 + b64, "tanh") * w.to(torch::kFloat64)).sum().backward();
        EXPECT_TRUE(torch::allclose(y.grad().to(torch::kFloat64), y64.grad(), 1e-5, 1e-6))
            << isa << " " << (y.grad().to(torch::kFloat64) - y64.grad()).abs().max();
        // db sums `rows` rows: absolute tolerance scaled accordingly.
        EXPECT_TRUE(torch::allclose(b.grad().to(torch::kFloat64), b64.grad(), 1e-5, 1e-6 * rows))
            << isa << " " << (b.grad().to(torch::kFloat64) - b64.grad()).abs().max();
      }
    }
  }
}

TEST(BiasGelu, SameValuesOnOneThreadAndTwo) {
  // 1000 rows x 96: 16 blocks, split over two threads; the values and the bias gradient's
  // summation order must not depend on the split. The split happens where the build
  // found LibTorch's OpenMP runtime (CMakeLists.txt); without -fopenmp the kernels'
  // at::parallel_for would quietly run on one thread.
#ifdef SCENIC_TORCH_OPENMP
  EXPECT_TRUE(bias_gelu_splits_rows());
#endif
  auto y = spread({1000, 96}, 5);
  auto b = spread({96}, 6);
  const auto g = spread({1000, 96}, 7);
  IsaGuard restore;
  for (const auto& isa : isas()) {
  SCOPED_TRACE(isa);
  ASSERT_TRUE(bias_gelu_use_isa(isa));
  if (isa == "none") {  // no kernels (they refuse: KernelValuesByHand): torch::gelu, element-wise
    auto fwd = [&](int threads) {
      testing::IntraOpThreads t(threads);
      return bias_gelu(y, b);
    };
    EXPECT_TRUE(torch::equal(fwd(1), fwd(2)));
    continue;
  }
  auto run = [&](int threads) {
    testing::IntraOpThreads t(threads);
    auto out = torch::empty_like(y), gy = torch::empty_like(y), gb = torch::empty({96});
    bias_gelu_forward_kernel(y.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(), 1000, 96);
    bias_gelu_backward_kernel(g.data_ptr<float>(), y.data_ptr<float>(), b.data_ptr<float>(), gy.data_ptr<float>(),
                              gb.data_ptr<float>(), 1000, 96);
    return std::vector<torch::Tensor>{out, gy, gb};
  };
  const auto one = run(1), two = run(2);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(one[i], two[i])) << i;
  // gb is the column sum of gy (float64 reference), to the error of float sums of 64
  // terms: |gb - sum| <= 64 * 2^-24 * sum |gy| (~3.8e-6 of the absolute sum).
  const auto gy64 = one[1].to(torch::kFloat64);
  const auto err = (one[2].to(torch::kFloat64) - gy64.sum(0)).abs() - 3.9e-6 * gy64.abs().sum(0);
  EXPECT_LE(err.max().item<double>(), 0.0);
  }
}

TEST(BiasGelu, KernelValuesByHand) {
  IsaGuard restore;
  for (const auto& isa : isas()) {
  SCOPED_TRACE(isa);
  ASSERT_TRUE(bias_gelu_use_isa(isa));
  if (isa == "none") {  // no vector kernels: the raw kernels refuse with a clear error
    float o[1], gy1[1];
    const float one[1] = {1.f};
    EXPECT_CONTAINS(testing::error_of([&] { bias_gelu_forward_kernel(one, nullptr, o, 1, 1); }), "AVX2");
    EXPECT_CONTAINS(testing::error_of([&] { bias_gelu_backward_kernel(one, one, nullptr, gy1, nullptr, 1, 1); }),
                    "AVX2");
    continue;
  }
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
  float gy[9], gb[9];
  bias_gelu_backward_kernel(g, y, nullptr, gy, nullptr, 1, 9);
  EXPECT_NEAR(gy[0], 0.5f, 1e-7f);
  EXPECT_NEAR(gy[4], 0.f, 1e-7f);  // flat far left
  EXPECT_NEAR(gy[5], 1.f, 1e-7f);  // slope 1 far right
  // Two rows [1, -1] and [3, 0], gradients 1 and 2: gb = [g'(1) + 2 g'(3), g'(-1) + 2 g'(0)]
  // with g'(0) = 0.5 and g'(x) + g'(-x) = 1 (gelu(x) - gelu(-x) = x).
  const float y2[4] = {1.f, -1.f, 3.f, 0.f}, g2[4] = {1.f, 1.f, 2.f, 2.f};
  bias_gelu_backward_kernel(g2, y2, nullptr, gy, gb, 2, 2);
  EXPECT_NEAR(gy[0] + gy[1], 1.f, 1e-6f);
  EXPECT_NEAR(gb[0], gy[0] + gy[2], 1e-6f);
  EXPECT_NEAR(gb[1], gy[1] + 1.f, 1e-6f);
  }
}

TEST(BiasGelu, NonFiniteInputsStayNonFinite) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto y = torch::tensor({nan, inf, -inf, 1.f, nan, 2.f, 3.f, 4.f, nan}).reshape({1, 9});
  IsaGuard restore;
  for (const auto& isa : isas()) {  // "none": torch::gelu, which gives non-finite values too
  SCOPED_TRACE(isa);
  ASSERT_TRUE(bias_gelu_use_isa(isa));
  const auto out = bias_gelu(y, torch::Tensor());
  EXPECT_TRUE(std::isnan(out[0][0].item<float>()));
  EXPECT_EQ(out[0][1].item<float>(), inf);
  EXPECT_FALSE(std::isfinite(out[0][2].item<float>()));  // torch gives NaN, we -inf: both caught as non-finite
  EXPECT_TRUE(std::isnan(out[0][4].item<float>()));
  EXPECT_TRUE(std::isnan(out[0][8].item<float>()));  // the tail too
  EXPECT_NEAR(out[0][3].item<float>(), 0.84119199f, 2e-7f);  // neighbours unaffected
  }
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
  // With the vector kernels switched off: torch's gelu, and the raw kernels refuse.
  IsaGuard restore;
  ASSERT_TRUE(bias_gelu_use_isa("none"));
  EXPECT_EQ(bias_gelu_isa(), "none");
  EXPECT_FALSE(bias_gelu_is_fused(y, b));
  EXPECT_TRUE(torch::equal(bias_gelu(y, b), torch::gelu(y + b, "tanh")));
  float out[1];
  const float in[1] = {1.f};
  EXPECT_CONTAINS(testing::error_of([&] { bias_gelu_forward_kernel(in, nullptr, out, 1, 1); }), "AVX2");
  EXPECT_CONTAINS(testing::error_of([&] { bias_gelu_use_isa("sse"); }), "unknown 'sse'");
}

}  // namespace
}  // namespace scenic::model
