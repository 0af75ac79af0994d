// batch_norm_act: relu?(BN(x) + residual?) against the same function written out in
// float64 (batch mean, biased variance, autograd through the composition), on both the
// fused channels-last path and ATen's fallback.
#include "scenic/model_lib/layers/batch_norm_act.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

constexpr double kEps = 1e-5;

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); }

// The reference in float64: (x - mean) / sqrt(var + eps) * scale + bias (+ residual), relu.
torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                        const torch::Tensor& residual, bool relu, torch::Tensor* mean_out = nullptr,
                        torch::Tensor* var_out = nullptr) {
  const std::vector<int64_t> dims{0, 2, 3};
  auto mean = x.mean(dims, /*keepdim=*/true);
  auto var = (x - mean).square().mean(dims, true);
  if (mean_out) *mean_out = mean.flatten();
  if (var_out) *var_out = var.flatten();
  auto y = (x - mean) / torch::sqrt(var + kEps) * scale.view({1, -1, 1, 1}) + bias.view({1, -1, 1, 1});
  if (residual.defined()) y = y + residual;
  return relu ? torch::relu(y) : y;
}

struct Case {
  torch::Tensor x, scale, bias, residual;
};

Case make_case(bool with_residual, double offset = 0.0) {
  torch::manual_seed(3);
  // 3 x 4 x 6 = 72 rows: two 64-row blocks, the second partial.
  Case c;
  c.x = channels_last(torch::randn({3, 5, 4, 6}) * 2.0 + offset);
  c.scale = torch::randn({5});
  c.bias = torch::randn({5});
  if (with_residual) c.residual = channels_last(torch::randn({3, 5, 4, 6}));
  return c;
}

std::vector<torch::Tensor> leaves(const Case& c, bool dbl) {
  std::vector<torch::Tensor> out;
  for (const auto& t : {c.x, c.scale, c.bias, c.residual})
    if (t.defined()) out.push_back((dbl ? t.to(torch::kDouble) : t.clone()).requires_grad_(true));
  return out;
}

// Values, statistics and all gradients against the float64 reference.
void check_train(const Case& c, bool relu, bool expect_fused) {
  ASSERT_EQ(batch_norm_act_is_fused(c.x, c.residual), expect_fused);
  auto f = leaves(c, false), d = leaves(c, true);
  if (expect_fused) {  // the clones keep the layout
    f[0] = channels_last(f[0].detach()).requires_grad_(true);
    if (c.residual.defined()) f[3] = channels_last(f[3].detach()).requires_grad_(true);
  }
  const torch::Tensor fres = c.residual.defined() ? f[3] : torch::Tensor();
  const torch::Tensor dres = c.residual.defined() ? d[3] : torch::Tensor();
  auto out = batch_norm_act_train(f[0], f[1], f[2], kEps, fres, relu);
  torch::Tensor mean, var;
  auto want = reference(d[0], d[1], d[2], dres, relu, &mean, &var);
  EXPECT_TRUE(torch::allclose(out.y.to(torch::kDouble), want, 1e-5, 1e-5)) << (out.y - want).abs().max();
  EXPECT_TRUE(torch::allclose(out.mean.to(torch::kDouble), mean, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(out.invstd.to(torch::kDouble), (var + kEps).rsqrt(), 1e-5, 1e-6));
  if (expect_fused) EXPECT_TRUE(out.y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  const auto g = torch::randn(c.x.sizes());
  const auto got = torch::autograd::grad({out.y}, f, {g});
  const auto exp = torch::autograd::grad({want}, d, {g.to(torch::kDouble)});
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_TRUE(torch::allclose(got[i].to(torch::kDouble), exp[i], 1e-4, 1e-5))
        << "gradient " << i << ": " << (got[i].to(torch::kDouble) - exp[i]).abs().max();
}

TEST(BatchNormAct, TrainMatchesFloat64ReferenceOnBothPaths) {
  for (const bool with_residual : {false, true}) {
    for (const bool relu : {false, true}) {
      SCOPED_TRACE(std::string(with_residual ? "residual" : "no residual") + (relu ? ", relu" : ""));
      auto c = make_case(with_residual);
      check_train(c, relu, /*expect_fused=*/true);
      // NCHW: ATen's batch norm, the add and relu.
      c.x = c.x.contiguous();
      if (with_residual) c.residual = c.residual.contiguous();
      check_train(c, relu, /*expect_fused=*/false);
    }
  }
}

// The statistics come from sums of x - x[0]: a mean 1000 times the spread keeps them.
TEST(BatchNormAct, StatisticsStableUnderALargeMean) {
  auto c = make_case(false, /*offset=*/2000.0);
  auto out = batch_norm_act_train(c.x, c.scale, c.bias, kEps, {}, false);
  torch::Tensor mean, var;
  reference(c.x.to(torch::kDouble), c.scale.to(torch::kDouble), c.bias.to(torch::kDouble), {}, false, &mean, &var);
  EXPECT_TRUE(torch::allclose(out.mean.to(torch::kDouble), mean, 1e-6, 0.0));
  // float32 inputs near 2000 carry ~1e-4 of absolute rounding; the variance (~4) within 1e-4.
  EXPECT_TRUE(torch::allclose(out.invstd.to(torch::kDouble), (var + kEps).rsqrt(), 1e-4, 0.0))
      << (out.invstd.to(torch::kDouble) - (var + kEps).rsqrt()).abs().max();
}

// Sums are float per 64-row block, double across blocks: one thread or two, same bits.
// (Two threads do split the rows where the build found LibTorch's OpenMP runtime.)
TEST(BatchNormAct, SameBitsForAnyThreadCount) {
#ifdef SCENIC_TORCH_OPENMP
  EXPECT_TRUE(batch_norm_act_splits_rows());
#endif
  torch::manual_seed(4);
  auto x = channels_last(torch::randn({4, 16, 20, 20}));  // 1600 rows
  auto res = channels_last(torch::randn({4, 16, 20, 20}));
  auto scale = torch::randn({16}), bias = torch::randn({16});
  const auto g = channels_last(torch::randn({4, 16, 20, 20}));
  auto run = [&](int threads) {
    testing::IntraOpThreads t(threads);
    auto xs = x.clone().requires_grad_(true), rs = res.clone().requires_grad_(true);
    auto ss = scale.clone().requires_grad_(true), bs = bias.clone().requires_grad_(true);
    auto out = batch_norm_act_train(xs, ss, bs, kEps, rs, true);
    auto grads = torch::autograd::grad({out.y}, {xs, ss, bs, rs}, {g});
    grads.push_back(out.y);
    return grads;
  };
  const auto one = run(1), two = run(2);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(torch::equal(one[i], two[i])) << "tensor " << i;
}

TEST(BatchNormAct, EvalUsesTheGivenStatistics) {
  for (const bool with_residual : {false, true}) {
    SCOPED_TRACE(with_residual ? "residual" : "no residual");
    auto c = make_case(with_residual);
    auto mean = torch::randn({5}), var = torch::rand({5}) + 0.5;
    auto want = (c.x - mean.view({1, -1, 1, 1})) / torch::sqrt(var.view({1, -1, 1, 1}) + kEps) *
                    c.scale.view({1, -1, 1, 1}) + c.bias.view({1, -1, 1, 1});
    if (with_residual) want = want + c.residual;
    want = torch::relu(want);
    {
      torch::NoGradGuard no_grad;  // fused
      auto y = batch_norm_act_eval(c.x, c.scale, c.bias, mean, var, kEps, c.residual, true);
      EXPECT_TRUE(torch::allclose(y, want, 1e-5, 1e-5)) << (y - want).abs().max();
    }
    // With a gradient to compute: ATen's batch norm, same values, and the gradient flows.
    auto x = c.x.clone().requires_grad_(true);
    auto y = batch_norm_act_eval(x, c.scale, c.bias, mean, var, kEps, c.residual, true);
    EXPECT_TRUE(torch::allclose(y, want, 1e-5, 1e-5));
    y.sum().backward();
    // d relu(x a + ...)/dx = a where the output is positive.
    const auto a = (c.scale / torch::sqrt(var + kEps)).view({1, -1, 1, 1}).expand_as(x);
    EXPECT_TRUE(torch::allclose(x.grad(), torch::where(want > 0, a, torch::zeros_like(a)), 1e-5, 1e-6));
  }
}

TEST(BatchNormAct, ReluKeepsNaN) {
  auto c = make_case(false);
  torch::NoGradGuard no_grad;
  auto x = c.x.clone();
  x[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  auto y = batch_norm_act_eval(x, c.scale, c.bias, torch::zeros({5}), torch::ones({5}), kEps, {}, true);
  EXPECT_TRUE(std::isnan(y[0][0][0][0].item<float>()));
  EXPECT_FALSE(std::isnan(y[0][1][0][0].item<float>()));
}

TEST(BatchNormAct, DoubleBackwardRefusedOnTheFusedPath) {
  auto c = make_case(false);
  auto x = c.x.clone().requires_grad_(true);
  auto out = batch_norm_act_train(x, c.scale, c.bias, kEps, {}, true);
  EXPECT_CONTAINS(testing::error_of([&] {
                    torch::autograd::grad({out.y.square().sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
                  }),
                  "double backward");
}

TEST(BatchNormAct, ShapeErrorsNameTheShapes) {
  auto c = make_case(false);
  EXPECT_CONTAINS(testing::error_of([&] { batch_norm_act_train(c.x, torch::ones({4}), c.bias, kEps, {}, true); }),
                  "scale [4]");
  EXPECT_CONTAINS(
      testing::error_of([&] { batch_norm_act_train(c.x, c.scale, c.bias, kEps, torch::zeros({3, 5, 4, 5}), true); }),
      "residual [3, 5, 4, 5] does not match x [3, 5, 4, 6]");
}

}  // namespace
}  // namespace scenic::model
