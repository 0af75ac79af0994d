#include "scenic/train_lib/ema.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "scenic/common_lib/testing.h"

namespace scenic::train {
namespace {

using scenic::testing::error_of;

torch::Tensor dvec(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

TEST(EmaTest, PlainDecayHandComputed) {
  torch::Tensor w = dvec({1.0, 2.0});
  torch::Tensor count = torch::tensor({7}, torch::kLong);  // not floating: copied
  Ema ema({{"w", w}, {"count", count}}, {.decay = 0.5});
  w.copy_(dvec({3.0, 4.0}));
  count.fill_(8);
  EXPECT_EQ(ema.update(0), 0.5);
  // 0.5 * [1, 2] + 0.5 * [3, 4] = [2, 3]
  EXPECT_TRUE(torch::allclose(ema.averages()[0].second, dvec({2.0, 3.0}), 0, 1e-15));
  EXPECT_EQ(ema.averages()[1].second.item<int64_t>(), 8);
  w.copy_(dvec({5.0, 0.0}));
  ema.update(1);
  // 0.5 * [2, 3] + 0.5 * [5, 0] = [3.5, 1.5]
  EXPECT_TRUE(torch::allclose(ema.averages()[0].second, dvec({3.5, 1.5}), 0, 1e-15));
}

TEST(EmaTest, WarmupHandComputed) {
  torch::Tensor w = dvec({0.0});
  Ema ema({{"w", w}}, {.decay = 0.9, .warmup = true});
  EXPECT_DOUBLE_EQ(ema.decay_at(0), 0.1);           // (1 + 0) / (10 + 0)
  EXPECT_DOUBLE_EQ(ema.decay_at(1), 2.0 / 11.0);    // (1 + 1) / (10 + 1)
  EXPECT_DOUBLE_EQ(ema.decay_at(100), 0.9);         // 101 / 110 > 0.9
  w.fill_(10.0);
  ema.update(0);  // 0.1 * 0 + 0.9 * 10 = 9
  EXPECT_NEAR(ema.averages()[0].second.item<double>(), 9.0, 1e-14);
  w.fill_(20.0);
  ema.update(1);  // (2/11) * 9 + (9/11) * 20 = 198 / 11 = 18
  EXPECT_NEAR(ema.averages()[0].second.item<double>(), 18.0, 1e-13);
}

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::Tensor forward(const torch::Tensor& x) { return bn(fc(x)); }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

TEST(EmaTest, TracksModuleParamsAndBuffersAndSwaps) {
  torch::manual_seed(0);
  Net net;
  Ema ema(net, {.decay = 0.75});
  std::vector<std::string> names;
  for (const auto& [n, t] : ema.averages()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"fc.weight", "fc.bias", "bn.weight", "bn.bias",
                                             "bn.running_mean", "bn.running_var",
                                             "bn.num_batches_tracked"}));
  const torch::Tensor w0 = net.fc->weight.detach().clone();
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  net.train();
  auto x = torch::randn({8, 3});
  net.forward(x).pow(2).sum().backward();
  opt.step();  // also updates the BN running statistics
  ema.update(0);
  const torch::Tensor w1 = net.fc->weight.detach().clone();
  const torch::Tensor expected = 0.75 * w0 + 0.25 * w1;
  EXPECT_TRUE(torch::allclose(ema.averages()[0].second, expected, 0, 1e-6));
  EXPECT_EQ(ema.averages()[6].second.item<int64_t>(), 1);  // copied

  void* impl = net.fc->weight.unsafeGetTensorImpl();
  {
    ScopedEmaSwap swap(ema);
    EXPECT_TRUE(ema.swapped());
    EXPECT_TRUE(torch::allclose(net.fc->weight, expected, 0, 1e-6));  // the EMA is live
    EXPECT_TRUE(torch::equal(ema.averages()[0].second, w1));  // the trained weights, aside
    EXPECT_EQ(net.fc->weight.unsafeGetTensorImpl(), impl);    // same tensor for the optimizer
    EXPECT_CONTAINS(error_of([&] { ema.update(1); }), "swapped");
    net.eval();
    EXPECT_TRUE(torch::allclose(net.forward(x), torch::nn::functional::batch_norm(
                                                    torch::nn::functional::linear(x, expected, net.fc->bias),
                                                    net.bn->running_mean, net.bn->running_var,
                                                    torch::nn::functional::BatchNormFuncOptions()
                                                        .weight(net.bn->weight)
                                                        .bias(net.bn->bias)
                                                        .eps(1e-5)),
                                0, 1e-6));
  }
  EXPECT_FALSE(ema.swapped());
  EXPECT_TRUE(torch::equal(net.fc->weight, w1));  // bit-identical after swapping back
  // The optimizer still updates the live weights.
  net.train();
  opt.zero_grad();
  net.forward(x).pow(2).sum().backward();
  opt.step();
  EXPECT_FALSE(torch::equal(net.fc->weight, w1));
}

TEST(EmaTest, SaveLoadRoundTrip) {
  torch::Tensor w = dvec({1.0, 2.0});
  Ema ema({{"layer.w", w}}, {.decay = 0.5});
  w.copy_(dvec({3.0, 6.0}));
  ema.update(0);  // [2, 4]
  std::stringstream buf;
  {
    torch::serialize::OutputArchive archive;
    ema.save(archive);
    archive.save_to(buf);
  }
  torch::Tensor w2 = dvec({0.0, 0.0});
  Ema other({{"layer.w", w2}}, {.decay = 0.5});
  torch::serialize::InputArchive in;
  in.load_from(buf);
  other.load(in);
  EXPECT_TRUE(torch::equal(other.averages()[0].second, dvec({2.0, 4.0})));

  torch::Tensor w3 = dvec({0.0, 0.0, 0.0});
  Ema wrong({{"layer.w", w3}}, {.decay = 0.5});
  buf.seekg(0);
  torch::serialize::InputArchive in2;
  in2.load_from(buf);
  EXPECT_CONTAINS(error_of([&] { wrong.load(in2); }), "layer.w");
  EXPECT_CONTAINS(error_of([] { Ema({}, {.decay = 1.5}); }), "decay");
}

}  // namespace
}  // namespace scenic::train
