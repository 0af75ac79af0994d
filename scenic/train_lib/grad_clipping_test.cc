#include "scenic/train_lib/grad_clipping.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/testing.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::train {
namespace {

using common::ConfigDict;
using scenic::testing::error_of;

torch::Tensor with_grad(torch::Tensor p, torch::Tensor g) {
  p.requires_grad_(true);
  p.mutable_grad() = g;
  return p;
}

TEST(GradClippingTest, ReadConfig) {
  ConfigDict c = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  grad_clip:\n    clip_method: adaptive_grad_clip\n    clip_value: 0.5\n");
  auto clip = read_grad_clip(c, "optimizer_configs.grad_clip");
  ASSERT_TRUE(clip);
  EXPECT_EQ(clip->method, ClipMethod::kAdaptive);
  EXPECT_EQ(clip->value, 0.5);
  // As in Scenic: without a method or a value there is no clipping.
  ConfigDict no_value = ConfigDict::from_yaml_string("g:\n  clip_method: clip\n");
  EXPECT_FALSE(read_grad_clip(no_value, "g"));
  EXPECT_FALSE(read_grad_clip(no_value, "absent"));
  ConfigDict bad = ConfigDict::from_yaml_string("g:\n  clip_method: clip\n  clip_value: -1\n");
  EXPECT_CONTAINS(error_of([&] { read_grad_clip(bad, "g"); }), "g.clip_value");
}

TEST(GradClippingTest, ByValue) {
  auto p = with_grad(torch::zeros({4}), torch::tensor({-3.0f, -0.2f, 0.4f, 9.0f}));
  clip_grad_value({p}, 0.5);
  EXPECT_TRUE(torch::equal(p.grad(), torch::tensor({-0.5f, -0.2f, 0.4f, 0.5f})));
}

TEST(GradClippingTest, BlockRms) {
  // rms([3, 4, 0, 0]) = sqrt(25 / 4) = 2.5; threshold 1 -> divide by 2.5.
  auto p = with_grad(torch::zeros({4}), torch::tensor({3.0f, 4.0f, 0.0f, 0.0f}));
  // rms([0.3, 0.4]) = 0.3536 < 1: unchanged.
  auto q = with_grad(torch::zeros({2}), torch::tensor({0.3f, 0.4f}));
  clip_grad_block_rms({p, q}, 1.0);
  EXPECT_TRUE(torch::allclose(p.grad(), torch::tensor({1.2f, 1.6f, 0.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(q.grad(), torch::tensor({0.3f, 0.4f})));
}

// A parameter the loss did not reach has no gradient: every method leaves it so and
// clips the others.
TEST(GradClippingTest, ParametersWithoutAGradientAreSkipped) {
  for (const auto method : {ClipMethod::kGlobalNorm, ClipMethod::kValue, ClipMethod::kAdaptive, ClipMethod::kBlockRms}) {
    auto p = with_grad(torch::ones({2}), torch::tensor({30.0f, 40.0f}));
    auto unused = torch::ones({3}).requires_grad_(true);
    GradClip clip;
    clip.method = method;
    clip.value = 1.0;
    apply_grad_clip(clip, {unused, p});
    EXPECT_FALSE(unused.grad().defined()) << static_cast<int>(method);
    EXPECT_LT(p.grad().abs().max().item<float>(), 30.0f) << static_cast<int>(method);
  }
}

TEST(GradClippingTest, UnitwiseNormUsesOutputUnits) {
  // [out=2, in=2] kernel: one norm per row (output unit), like optax's per-column norm
  // of flax's [in, out] kernel.
  torch::Tensor w = torch::tensor({{3.0f, 4.0f}, {6.0f, 8.0f}});
  EXPECT_TRUE(torch::allclose(unitwise_norm(w), torch::tensor({{5.0f, 5.0f}, {10.0f, 10.0f}})));
  // OIHW conv: per output channel over (I, H, W).
  torch::Tensor conv = torch::ones({2, 3, 2, 2});
  conv[1] *= 2;  // sqrt(12 * 4) = 6.93
  torch::Tensor n = unitwise_norm(conv);
  EXPECT_NEAR(n[0][2][1][1].item<float>(), std::sqrt(12.0f), 1e-5);
  EXPECT_NEAR(n[1][0][0][0].item<float>(), std::sqrt(48.0f), 1e-5);
  // Vectors and [1, D] tensors: the whole tensor.
  EXPECT_TRUE(torch::allclose(unitwise_norm(torch::tensor({{3.0f, 4.0f}})), torch::full({1, 2}, 5.0f)));
  // 3-D: dim 0 reduced, as optax does.
  torch::Tensor e = torch::ones({4, 2, 3});
  EXPECT_TRUE(torch::allclose(unitwise_norm(e), torch::full({4, 2, 3}, 2.0f)));
  EXPECT_CONTAINS(error_of([] { unitwise_norm(torch::ones({1, 2, 1, 2, 2, 2})); }), "1 to 5 dims");
}

TEST(GradClippingTest, AdaptiveClipsOnlyUnitsAboveTheRatio) {
  // Row 0: ||w|| = 5, ||g|| = 1 <= 0.5 * 5: kept. Row 1: ||w|| = 1, ||g|| = 10 > 0.5:
  // scaled to norm 0.5. Row 2: w = 0 -> max norm 0.5 * 1e-3 (eps): g scaled to 5e-4.
  torch::Tensor w = torch::tensor({{3.0f, 4.0f}, {0.6f, 0.8f}, {0.0f, 0.0f}});
  torch::Tensor g = torch::tensor({{0.6f, 0.8f}, {6.0f, 8.0f}, {1.0f, 0.0f}});
  auto p = with_grad(w, g);
  adaptive_grad_clip({p}, 0.5);
  EXPECT_TRUE(torch::allclose(p.grad()[0], torch::tensor({0.6f, 0.8f})));
  EXPECT_TRUE(torch::allclose(p.grad()[1], torch::tensor({0.3f, 0.4f})));
  EXPECT_TRUE(torch::allclose(p.grad()[2], torch::tensor({5e-4f, 0.0f})));
}

TEST(GradClippingTest, OptimizerClipsInsideStep) {
  // sgd (no momentum), lr 1, clip_by_global_norm 1: grads [3, 4] (norm 5) -> [0.6, 0.8].
  torch::Tensor p = torch::zeros({2}).requires_grad_(true);
  ConfigDict c = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: sgd\n  grad_clip:\n    clip_method: clip_by_global_norm\n"
      "    clip_value: 1.0\n");
  auto opt = make_optimizer(c, NamedParams{{"p", p}});
  EXPECT_NE(dynamic_cast<WithGradClip<torch::optim::SGD>*>(opt.get()), nullptr);
  p.mutable_grad() = torch::tensor({3.0f, 4.0f});
  set_learning_rate(*opt, 1.0);
  opt->step();
  EXPECT_TRUE(torch::allclose(p.detach(), torch::tensor({-0.6f, -0.8f})));
  EXPECT_CONTAINS(error_of([&] { opt->step([] { return torch::zeros({}); }); }), "closure");
  // Without grad_clip: the plain torch optimizer.
  ConfigDict plain = ConfigDict::from_yaml_string("optimizer_configs:\n  optimizer: sgd\n");
  auto opt2 = make_optimizer(plain, NamedParams{{"p", p}});
  EXPECT_EQ(dynamic_cast<WithGradClip<torch::optim::SGD>*>(opt2.get()), nullptr);
}

}  // namespace
}  // namespace scenic::train
