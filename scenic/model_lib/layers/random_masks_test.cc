// Tests for random_masks.h: the masks of dropout, stochastic depth and attention dropout,
// drawn from the default generator or from one a thread installs.
#include "scenic/model_lib/layers/random_masks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "scenic/model_lib/layers/attention_layers.h"
#include "scenic/model_lib/layers/nn_layers.h"

namespace scenic::model {
namespace {

TEST(RandomMasks, WithoutAGeneratorDropoutIsTorchDropout) {
  const auto x = torch::randn({64, 33});
  torch::manual_seed(3);
  const auto ours = model::dropout(x, 0.3, true);
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(ours, torch::dropout(x, 0.3, true)));
  EXPECT_TRUE(torch::equal(model::dropout(x, 0.3, false), x));
  EXPECT_TRUE(torch::equal(model::dropout(x, 0.0, true), x));
  EXPECT_EQ(model::dropout(x, 1.0, true).abs().sum().item<double>(), 0.0);
}

TEST(RandomMasks, AnInstalledGeneratorGivesTheMasksOfThisThread) {
  const auto x = torch::ones({200, 50});
  auto gen = at::detail::createCPUGenerator(42);
  torch::Tensor y;
  {
    ScopedMaskGenerator scope(gen);
    ASSERT_TRUE(mask_generator(torch::kCPU).has_value());
    EXPECT_FALSE(mask_generator(torch::Device(torch::kCUDA, 0)).has_value()) << "CPU generator only";
    // Another thread has none.
    bool other_has = true;
    std::thread([&] { other_has = mask_generator(torch::kCPU).has_value(); }).join();
    EXPECT_FALSE(other_has);
    y = model::dropout(x, 0.25, true);
  }
  EXPECT_FALSE(mask_generator(torch::kCPU).has_value()) << "the scope restores the previous state";
  // Same draws as bernoulli(0.75) from a generator with the same seed, scaled by 1 / 0.75.
  auto same = at::detail::createCPUGenerator(42);
  const auto mask = torch::empty({200, 50}).bernoulli_(0.75, same);
  EXPECT_TRUE(torch::allclose(y, mask / 0.75, 0, 1e-6));
  const double kept = (y > 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 0.02);  // 10,000 draws: sd 0.0043

  // Stochastic depth draws one value per example from the same generator.
  auto g2 = at::detail::createCPUGenerator(9);
  torch::Tensor sd;
  {
    ScopedMaskGenerator scope(g2);
    sd = stochastic_depth(torch::ones({100, 3, 4}), 0.5, true);
  }
  auto same2 = at::detail::createCPUGenerator(9);
  const auto keep = torch::empty({100, 1, 1}).bernoulli_(0.5, same2);
  EXPECT_TRUE(torch::equal(sd, (keep * 2.0).expand({100, 3, 4})));
}

TEST(RandomMasks, ForksFollowTheDefaultSeed) {
  torch::manual_seed(11);
  auto a = fork_default_cpu_generator();
  auto b = fork_default_cpu_generator();
  torch::manual_seed(11);
  auto a2 = fork_default_cpu_generator();
  EXPECT_EQ(a.current_seed(), a2.current_seed());
  EXPECT_NE(a.current_seed(), b.current_seed());
}

// With a generator installed, attention-weight dropout leaves the fused kernel (which
// draws from the default generator) for the explicit path, drawing from ours.
TEST(RandomMasks, AttentionDropoutDrawsFromTheInstalledGenerator) {
  torch::manual_seed(0);
  MultiHeadAttentionOptions o;
  o.num_heads = 2;
  o.dropout_rate = 0.5;
  MultiHeadAttention attn(8, o);
  attn->train();
  const auto x = torch::randn({2, 5, 8});
  auto run = [&](uint64_t default_seed) {
    torch::manual_seed(default_seed);
    ScopedMaskGenerator scope(at::detail::createCPUGenerator(77));
    return attn(x, x);
  };
  // The default generator's state does not matter, only the installed one.
  EXPECT_TRUE(torch::equal(run(1), run(2)));
  torch::manual_seed(1);
  const auto from_default = attn(x, x);
  torch::manual_seed(2);
  EXPECT_FALSE(torch::equal(from_default, attn(x, x))) << "without one, the default generator decides";
}

}  // namespace
}  // namespace scenic::model
