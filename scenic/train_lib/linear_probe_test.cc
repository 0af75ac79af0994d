// Linear probe (linear_probe.h): learns a linearly separable problem from features,
// reproducibly, and leaves the global random generator alone.
#include "scenic/train_lib/linear_probe.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

namespace scenic::train {
namespace {

// Three well-separated 2-D blobs (centres (6, 0), (-6, 0), (0, 6), unit noise): class c
// is example i with i % 3 == c.
std::pair<torch::Tensor, torch::Tensor> blobs(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto labels = torch::arange(n, torch::kLong).remainder(3);
  auto centres = torch::tensor({6.0, 0.0, -6.0, 0.0, 0.0, 6.0}).view({3, 2});
  auto x = centres.index_select(0, labels) + torch::randn({n, 2}, gen);
  return {x, labels};
}

common::ConfigDict probe_config() {
  return common::ConfigDict::from_yaml_string(
      "num_training_steps: 200\nbatch_size: 16\noptimizer_configs: {optimizer: sgd, momentum: 0.9}\n"
      "lr_configs: {base_learning_rate: 0.05}\n");
}

TEST(LinearProbe, LearnsASeparableProblem) {
  auto [x, y] = blobs(60, 1);
  auto [x_test, y_test] = blobs(30, 2);
  auto config = probe_config();
  torch::nn::Linear untrained(2, 3);
  const double chance_loss = evaluate_linear_probe(untrained, x_test, y_test).at("loss");
  auto head = train_linear_probe(x, y, 3, config, 0);
  auto m = evaluate_linear_probe(head, x_test, y_test);
  // Blobs 6 units apart with unit noise: a linear head separates them all.
  EXPECT_EQ(m.at("accuracy"), 1.0);
  EXPECT_LT(m.at("loss"), 0.1);
  EXPECT_LT(m.at("loss"), chance_loss);
  // Every training key was read (nothing left for check_all_used to reject).
  EXPECT_TRUE(config.unused_keys().empty());
}

TEST(LinearProbe, SameSeedSameHeadAndGlobalGeneratorUntouched) {
  auto [x, y] = blobs(30, 3);
  torch::manual_seed(123);
  auto before = torch::rand({4});
  torch::manual_seed(123);
  auto a = train_linear_probe(x, y, 3, probe_config(), 5);
  auto after = torch::rand({4});
  EXPECT_TRUE(torch::equal(before, after));  // the probe drew from its own generator
  auto b = train_linear_probe(x, y, 3, probe_config(), 5);
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  auto c = train_linear_probe(x, y, 3, probe_config(), 6);
  EXPECT_FALSE(torch::equal(a->weight, c->weight));
}

TEST(LinearProbe, EvaluationCountsCorrectArgmax) {
  // Identity head on 2 classes: logits = features. Rows 0, 1 correct, row 2 wrong.
  torch::nn::Linear head(2, 2);
  {
    torch::NoGradGuard g;
    head->weight.copy_(torch::eye(2));
    head->bias.zero_();
  }
  auto f = torch::tensor({2.0, 0.0, 0.0, 2.0, 2.0, 0.0}).view({3, 2});
  auto m = evaluate_linear_probe(head, f, torch::tensor({0, 1, 1}));
  EXPECT_NEAR(m.at("accuracy"), 2.0 / 3.0, 1e-12);
  // CE: two rows log(1 + e^-2) = 0.126928, one row log(1 + e^2) = 2.126928; mean 0.793595.
  EXPECT_NEAR(m.at("loss"), (2 * std::log1p(std::exp(-2.0)) + std::log1p(std::exp(2.0))) / 3, 1e-9);
}

}  // namespace
}  // namespace scenic::train
