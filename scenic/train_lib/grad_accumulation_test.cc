#include "scenic/train_lib/grad_accumulation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::train {
namespace {

using scenic::testing::error_of;

struct Mlp : torch::nn::Module {
  Mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(4, 5));
    fc2 = register_module("fc2", torch::nn::Linear(5, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::tanh(fc1(x))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};

// Scenic's classification loss: batch_mask-weighted mean cross-entropy, plus an L2
// penalty that does not depend on the batch.
std::pair<torch::Tensor, torch::Tensor> loss_fn(Mlp& net, const dataset::Batch& b) {
  auto logits = net.forward(b.at("inputs"));
  auto it = b.find("batch_mask");
  auto loss = model::weighted_softmax_cross_entropy(
      logits, model::onehot(b.at("label"), 3), it == b.end() ? torch::Tensor() : it->second);
  torch::Tensor l2 = torch::zeros({}, torch::kDouble);
  for (const auto& p : net.parameters()) l2 = l2 + p.pow(2).sum();
  return {loss + 0.5 * 1e-2 * l2, logits};
}

std::vector<torch::Tensor> grads(Mlp& net) {
  std::vector<torch::Tensor> g;
  for (const auto& p : net.parameters()) g.push_back(p.grad().clone());
  return g;
}

void expect_equal_to_big_batch(const dataset::Batch& batch, int64_t n) {
  torch::manual_seed(3);
  Mlp net;
  net.to(torch::kDouble);
  auto [big_loss, big_out] = loss_fn(net, batch);
  big_loss.backward();
  const auto big = grads(net);

  net.zero_grad();
  AccumulatedStep acc =
      accumulate_gradients(batch, n, [&](const dataset::Batch& mb) { return loss_fn(net, mb); });
  const auto small = grads(net);
  ASSERT_EQ(big.size(), small.size());
  for (size_t i = 0; i < big.size(); ++i) {
    EXPECT_LT((big[i] - small[i]).abs().max().item<double>(), 1e-6) << "param " << i;
    EXPECT_GT(big[i].abs().max().item<double>(), 1e-3);  // the gradients are not trivial
  }
  EXPECT_NEAR(acc.loss.item<double>(), big_loss.item<double>(), 1e-6);
  EXPECT_TRUE(torch::allclose(acc.outputs, big_out.detach(), 0, 1e-12));
}

dataset::Batch make_batch() {
  torch::manual_seed(1);
  return {{"inputs", torch::randn({8, 4}, torch::kDouble)},
          {"label", torch::tensor({0, 2, 1, 1, 0, 2, 2, 1}, torch::kLong)}};
}

TEST(GradAccumulationTest, PaddedBatchEqualsOneBigBatch) {
  auto batch = make_batch();
  // Micro-batches of 2: masks [1,1], [1,0], [0,0], [1,1] -- uneven padding, one all
  // padding; an equal-weight average (Scenic's) would be off here.
  batch["batch_mask"] = torch::tensor({1., 1., 1., 0., 0., 0., 1., 1.}, torch::kDouble);
  expect_equal_to_big_batch(batch, 4);
  expect_equal_to_big_batch(batch, 2);
  expect_equal_to_big_batch(batch, 1);
}

TEST(GradAccumulationTest, UnpaddedBatchEqualsOneBigBatch) { expect_equal_to_big_batch(make_batch(), 4); }

TEST(GradAccumulationTest, EqualWeightsWouldDiffer) {
  // Guards the test above: with this padding, averaging micro-batch gradients with
  // equal weights does not give the big-batch gradient.
  auto batch = make_batch();
  batch["batch_mask"] = torch::tensor({1., 1., 1., 0., 0., 0., 1., 1.}, torch::kDouble);
  torch::manual_seed(3);
  Mlp net;
  net.to(torch::kDouble);
  loss_fn(net, batch).first.backward();
  const auto big = grads(net);
  net.zero_grad();
  for (const auto& mb : split_batch(batch, 4)) (loss_fn(net, mb).first / 4).backward();
  EXPECT_GT((big[0] - net.parameters()[0].grad()).abs().max().item<double>(), 1e-3);
}

TEST(GradAccumulationTest, SplitBatch) {
  auto parts = split_batch(make_batch(), 4);
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[2].at("inputs").sizes(), torch::IntArrayRef({2, 4}));
  EXPECT_EQ(parts[3].at("label")[1].item<int64_t>(), 1);
  EXPECT_CONTAINS(error_of([] { split_batch(make_batch(), 3); }), "not divisible");
  auto bad = make_batch();
  bad["label"] = torch::zeros({7}, torch::kLong);
  EXPECT_CONTAINS(error_of([&] { split_batch(bad, 2); }), "different batch sizes");
  EXPECT_CONTAINS(error_of([] { split_batch(make_batch(), 0); }), "num_microbatches");
}

}  // namespace
}  // namespace scenic::train
