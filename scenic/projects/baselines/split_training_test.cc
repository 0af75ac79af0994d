// The networks that opt in to split training steps (model::Network::splits_batch_on_cpu,
// train_lib/batch_split.h), ViT and Mixer, get the whole batch's loss and gradients from
// slices run at once on two threads, and their runs repeat exactly with dropout and
// stochastic depth on.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>

#include "scenic/common_lib/testing.h"
#include "scenic/projects/baselines/mixer.h"
#include "scenic/projects/baselines/vit.h"
#include "scenic/train_lib/batch_split.h"

namespace scenic::baselines {
namespace {

dataset::Batch fmnist_batch(int64_t n) {
  dataset::Batch b;
  b["inputs"] = torch::randn({n, 1, 28, 28});
  b["label"] = torch::randint(10, {n}, torch::kLong);
  b["batch_mask"] = torch::ones({n});
  b["batch_mask"].narrow(0, n - 5, 5).zero_();  // padding in the last slice only
  return b;
}

torch::Tensor loss_of(const torch::Tensor& logits, const dataset::Batch& b) {
  const auto ce = torch::nn::functional::cross_entropy(
      logits, b.at("label"), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return (ce * b.at("batch_mask")).sum() / b.at("batch_mask").sum();
}

// Whole batch vs 2 slices; the head is made non-zero so that every gradient is.
void expect_split_equals_whole(model::Network& net) {
  scenic::testing::IntraOpThreads threads(2);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net.named_parameters())
      if (p.key().rfind("output_projection", 0) == 0) p.value().normal_(0.0, 0.1);
  }
  net.train();
  const auto b = fmnist_batch(24);
  ASSERT_EQ(train::train_split_slices(net, b, 2), 2);
  net.zero_grad();
  const auto whole = loss_of(net.forward(b.at("inputs")), b);
  whole.backward();
  std::vector<torch::Tensor> ref;
  for (const auto& p : net.parameters()) ref.push_back(p.grad().clone());
  for (int round = 0; round < 3; ++round) {  // also the first calls of every kernel
    net.zero_grad();
    const auto r = train::accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) {
      auto y = net.forward(s.at("inputs"));
      return std::make_pair(loss_of(y, s), y);
    });
    EXPECT_NEAR(r.loss.item<double>(), whole.item<double>(), 1e-5);
    const auto named = net.named_parameters();
    for (size_t i = 0; i < ref.size(); ++i) {
      const auto& g = named[i].value().grad();
      const double tol = 1e-5 + 1e-3 * ref[i].abs().max().item<double>();
      EXPECT_LE((g - ref[i]).abs().max().item<double>(), tol) << named[i].key() << ", round " << round;
    }
  }
}

ViTOptions small_vit() {
  ViTOptions o;
  o.patch_size = {7, 7};
  o.input_shape = {-1, 1, 28, 28};
  o.num_classes = 10;
  o.hidden_size = 32;
  o.mlp_dim = 64;
  o.num_heads = 4;
  o.num_layers = 2;
  o.dropout_rate = o.attention_dropout_rate = 0.0;
  return o;
}

MixerOptions small_mixer() {
  MixerOptions o;
  o.patch_size = {7, 7};
  o.input_shape = {-1, 1, 28, 28};
  o.num_classes = 10;
  o.hidden_size = 32;
  o.num_layers = 2;
  o.sequence_mlp_dim = 16;
  o.channels_mlp_dim = 64;
  o.dropout_rate = 0.0;
  return o;
}

TEST(SplitTraining, VitGradientsAreTheWholeBatchs) {
  torch::manual_seed(0);
  ViT vit(small_vit());
  expect_split_equals_whole(vit);
}

TEST(SplitTraining, MixerGradientsAreTheWholeBatchs) {
  torch::manual_seed(0);
  Mixer mixer(small_mixer());
  expect_split_equals_whole(mixer);
}

TEST(SplitTraining, VitWithDropoutAndStochasticDepthRepeatsFromItsSeed) {
  scenic::testing::IntraOpThreads threads(2);
  auto o = small_vit();
  o.dropout_rate = o.attention_dropout_rate = 0.1;
  o.stochastic_depth = 0.3;
  torch::manual_seed(0);
  ViT vit(o);
  {
    torch::NoGradGuard no_grad;
    vit.output_projection->weight.normal_(0.0, 0.1);
  }
  vit.train();
  const auto b = fmnist_batch(16);
  auto step = [&](uint64_t seed) {
    torch::manual_seed(seed);
    vit.zero_grad();
    const auto r = train::accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) {
      auto y = vit.forward(s.at("inputs"));
      return std::make_pair(loss_of(y, s), y);
    });
    std::vector<torch::Tensor> g;
    for (const auto& p : vit.parameters()) g.push_back(p.grad().clone());
    return std::make_pair(r.loss.item<double>(), g);
  };
  const auto a = step(4), again = step(4), other = step(5);
  EXPECT_EQ(a.first, again.first);
  for (size_t i = 0; i < a.second.size(); ++i) EXPECT_TRUE(torch::equal(a.second[i], again.second[i])) << i;
  EXPECT_NE(a.first, other.first);
}

}  // namespace
}  // namespace scenic::baselines
