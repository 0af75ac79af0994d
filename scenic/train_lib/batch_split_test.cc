#include "scenic/train_lib/batch_split.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/layers/dense.h"
#include "scenic/model_lib/layers/random_masks.h"
#include "scenic/model_lib/layers/transformer_layers.h"

namespace scenic::train {
namespace {

using scenic::testing::error_of;

// Patches of 4 values -> Dense -> one Transformer block (LayerNorm, attention on the
// fused kernel, bias+GELU MLP) -> mean over tokens -> Dense: the ops of a ViT's eval.
struct TinyVit : model::Network {
  explicit TinyVit(double dropout = 0.1, double stochastic_depth = 0.0) {
    embed = register_module("embed", torch::nn::Linear(4, 32));
    model::Encoder1DBlockOptions o;
    o.mlp_dim = 64;
    o.num_heads = 4;
    o.dropout_rate = o.attention_dropout_rate = dropout;
    o.stochastic_depth = stochastic_depth;
    block = register_module("block", model::Encoder1DBlock(32, o));
    head = register_module("head", torch::nn::Linear(32, 5));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto tokens = embed(x.reshape({x.size(0), -1, 4}));  // [B, 12, 32]
    return head(block(tokens).mean(1));
  }
  bool splits_batch_on_cpu() const override { return true; }
  torch::nn::Linear embed{nullptr}, head{nullptr};
  model::Encoder1DBlock block{nullptr};
};

// Records, per call: the slice size, the thread, grad mode, autocast and whether ATen
// sees a parallel region. Returns each example's row sum (per-example, like a network).
struct Recorder : model::Network {
  struct Call {
    int64_t size;
    std::thread::id thread;
    bool grad, autocast, in_parallel;
  };
  torch::Tensor forward(const torch::Tensor& x) override {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back({x.size(0), std::this_thread::get_id(), c10::GradMode::is_enabled(),
                     at::autocast::is_autocast_enabled(at::kCPU), at::in_parallel_region()});
    if (throw_on_size == x.size(0)) throw Error("slice of " + std::to_string(x.size(0)) + " failed");
    if (bad_output) return x.sum();
    return x.flatten(1).sum(1);
  }
  std::mutex mu;
  std::vector<Call> calls;
  int64_t throw_on_size = -1;
  bool bad_output = false;
};

TEST(BatchSplit, SameOutputsAsOneForwardOnBothGemmBackends) {
  ASSERT_TRUE(batch_split_available()) << "the build links LibTorch's libgomp (CMakeLists.txt)";
  scenic::testing::IntraOpThreads threads(2);
  torch::manual_seed(0);
  TinyVit net;
  net.eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({37, 48});
  const auto old_backend = model::gemm_backend();
  for (auto backend : {model::GemmBackend::kAten, model::GemmBackend::kOneDnn}) {
    model::set_gemm_backend(backend);
    const auto whole = net.forward(x);
    for (int threads : {2, 3, 5}) {
      const auto split = forward_split_batch(net, x, threads, /*min_per_thread=*/4);
      ASSERT_EQ(split.sizes(), whole.sizes());
      // Rows are computed by GEMMs blocked for fewer rows: equal to float rounding.
      EXPECT_TRUE(torch::allclose(split, whole, 1e-5, 1e-5))
          << model::gemm_backend_name(backend) << ", " << threads << " threads: max diff "
          << (split - whole).abs().max().item<double>();
    }
  }
  model::set_gemm_backend(old_backend);
}

TEST(BatchSplit, SlicesRunAtOnceOnSeveralThreadsWithTheCallersState) {
  ASSERT_TRUE(batch_split_available());
  scenic::testing::IntraOpThreads threads(2);
  Recorder net;
  torch::NoGradGuard no_grad;
  at::autocast::set_autocast_enabled(at::kCPU, true);
  const auto x = torch::arange(10 * 3, torch::kFloat).reshape({10, 3});
  const auto y = forward_split_batch(net, x, 3, /*min_per_thread=*/1);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  // tensor_split(3) of 10 rows: 4, 3, 3, concatenated back in order.
  EXPECT_TRUE(torch::equal(y, x.sum(1)));
  ASSERT_EQ(net.calls.size(), 3u);
  std::multiset<int64_t> sizes;
  std::set<std::thread::id> ids;
  for (const auto& c : net.calls) {
    sizes.insert(c.size);
    ids.insert(c.thread);
    EXPECT_FALSE(c.grad);
    EXPECT_TRUE(c.autocast) << "autocast is thread-local: the caller's must reach every thread";
    EXPECT_TRUE(c.in_parallel) << "ATen ops inside must see the region and not fork again";
  }
  EXPECT_EQ(sizes, (std::multiset<int64_t>{3, 3, 4}));
  EXPECT_GE(ids.size(), 2u) << "the slices ran on one thread";
}

TEST(BatchSplit, OnePlainForwardWhenSplittingDoesNotApply) {
  scenic::testing::IntraOpThreads threads(2);
  const auto x = torch::ones({16, 2});
  auto calls_for = [&](int threads, int64_t min_per_thread, bool grad) {
    Recorder net;
    torch::AutoGradMode mode(grad);
    auto y = forward_split_batch(net, x, threads, min_per_thread);
    EXPECT_TRUE(torch::equal(y, torch::full({16}, 2.0)));
    return net.calls.size();
  };
  EXPECT_EQ(calls_for(1, 1, false), 1u);   // one thread
  EXPECT_EQ(calls_for(4, 9, false), 1u);   // 16 examples < 2 slices of 9
  EXPECT_EQ(calls_for(4, 1, true), 1u);    // grad mode on: a training forward
  EXPECT_EQ(calls_for(4, 8, false), batch_split_available() ? 2u : 1u);  // 16 / 8 = 2 slices
}

TEST(BatchSplit, ErrorsReachTheCaller) {
  scenic::testing::IntraOpThreads threads(2);
  torch::NoGradGuard no_grad;
  const auto x = torch::ones({6, 2});
  Recorder throwing;
  throwing.throw_on_size = 2;  // slices of 2, 2, 2: every one throws
  EXPECT_CONTAINS(error_of([&] { forward_split_batch(throwing, x, 3, 1); }), "slice of 2 failed");
  Recorder scalar;
  scalar.bad_output = true;
  EXPECT_CONTAINS(error_of([&] { forward_split_batch(scalar, x, 3, 1); }),
                  "eval_split_batch: the network maps a batch of 2 to an output of shape []");
}

TEST(BatchSplit, SettingAndTheNetworksOptInGiveTheThreadCount) {
  scenic::testing::IntraOpThreads threads(2);
  const bool old = eval_split_batch();
  TinyVit vit;      // opts in
  Recorder other;   // does not (a convolution network, say)
  set_eval_split_batch(true);
  EXPECT_EQ(eval_split_threads(vit), 2);
  EXPECT_EQ(eval_split_threads(other), 1);
  set_eval_split_batch(false);
  EXPECT_EQ(eval_split_threads(vit), 1);
  set_eval_split_batch(old);
}

// ---- Training steps (accumulate_gradients_split) ----

// Scenic's weighted softmax cross-entropy: sum(mask * ce) / sum(mask).
torch::Tensor masked_ce(const torch::Tensor& logits, const dataset::Batch& b) {
  const auto ce = torch::nn::functional::cross_entropy(
      logits, b.at("label"), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return (ce * b.at("batch_mask")).sum() / b.at("batch_mask").sum();
}

dataset::Batch toy_batch(int64_t n) {
  torch::manual_seed(7);
  dataset::Batch b;
  b["inputs"] = torch::randn({n, 48});
  b["label"] = torch::randint(5, {n}, torch::kLong);
  // Padding only in the second half: the halves weigh 8/13 and 5/13, not 1/2 each.
  b["batch_mask"] = torch::ones({n});
  b["batch_mask"].narrow(0, n - 3, 3).zero_();
  return b;
}

std::vector<torch::Tensor> grads_of(TinyVit& net) {
  std::vector<torch::Tensor> g;
  for (const auto& p : net.parameters()) g.push_back(p.grad().clone());
  return g;
}

TEST(TrainSplit, GradientsLossAndOutputsAreThoseOfTheWholeBatch) {
  ASSERT_TRUE(batch_split_available());
  scenic::testing::IntraOpThreads threads(2);
  torch::manual_seed(0);
  TinyVit net(/*dropout=*/0.0);
  net.train();
  const auto b = toy_batch(16);
  // Reference: one forward and backward of the whole batch.
  net.zero_grad();
  const auto whole_out = net.forward(b.at("inputs"));
  const auto whole_loss = masked_ce(whole_out, b);
  whole_loss.backward();
  const auto ref = grads_of(net);

  std::mutex mu;
  std::set<std::thread::id> ids;
  for (int64_t slices : {2, 4}) {
    net.zero_grad();
    ids.clear();
    auto [loss, out] = accumulate_gradients_split(b, slices, [&](const dataset::Batch& s) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(std::this_thread::get_id());
      }
      auto y = net.forward(s.at("inputs"));
      return std::make_pair(masked_ce(y, s), y);
    });
    EXPECT_GE(ids.size(), 2u) << "the slices ran on one thread";
    EXPECT_NEAR(loss.item<double>(), whole_loss.item<double>(), 1e-6);
    EXPECT_FALSE(loss.requires_grad());
    EXPECT_TRUE(torch::allclose(out, whole_out, 1e-5, 1e-6));
    const auto g = grads_of(net);
    ASSERT_EQ(g.size(), ref.size());
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_TRUE(torch::allclose(g[i], ref[i], 1e-4, 1e-6))
          << slices << " slices, parameter " << i << ": max diff " << (g[i] - ref[i]).abs().max().item<double>();
  }
}

// Each slice draws from its own generator, forked from the default one in slice order:
// slice i's dropout mask is bernoulli(1 - rate) from the i-th fork, whichever thread
// ran it, and a run repeats exactly from the same seed.
TEST(TrainSplit, EachSliceDrawsFromItsOwnForkOfTheDefaultGenerator) {
  scenic::testing::IntraOpThreads threads(2);
  struct Dropper : model::Network {
    torch::Tensor forward(const torch::Tensor& x) override { return model::dropout(x, 0.5, true); }
  };
  Dropper net;
  dataset::Batch b;
  b["inputs"] = torch::ones({64, 8}, torch::requires_grad());
  auto run = [&] {
    b.at("inputs").mutable_grad() = torch::Tensor();
    torch::manual_seed(123);
    return accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) {
             auto y = net.forward(s.at("inputs"));
             return std::make_pair(y.sum(), y);
           })
        .outputs;
  };
  const auto first = run();
  // Expected: the forks, drawn in slice order after the same seed.
  torch::manual_seed(123);
  std::vector<torch::Tensor> expected;
  std::vector<at::Generator> gens{model::fork_default_cpu_generator(), model::fork_default_cpu_generator()};
  for (auto& g : gens) expected.push_back(torch::empty({32, 8}).bernoulli_(0.5, g) * 2.0);
  EXPECT_TRUE(torch::equal(first, torch::cat(expected, 0)));
  EXPECT_FALSE(torch::equal(expected[0], expected[1])) << "both slices drew the same mask";
  EXPECT_TRUE(torch::equal(run(), first));
  // Gradient of sum(x * mask / (1 - p)) is the scaled mask, accumulated with weight 1/2.
  EXPECT_TRUE(torch::equal(b.at("inputs").grad().slice(0, 0, 32), expected[0] * 0.5));
}

TEST(TrainSplit, ADropoutNetworkTrainsReproduciblyAndCloseToTheWholeBatch) {
  scenic::testing::IntraOpThreads threads(2);
  torch::manual_seed(0);
  TinyVit net(/*dropout=*/0.1, /*stochastic_depth=*/0.2);
  net.train();
  const auto b = toy_batch(16);
  auto step = [&](uint64_t seed) {
    torch::manual_seed(seed);
    net.zero_grad();
    auto r = accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) {
      auto y = net.forward(s.at("inputs"));
      return std::make_pair(masked_ce(y, s), y);
    });
    return std::make_pair(r.loss.item<double>(), grads_of(net));
  };
  const auto [loss_a, grads_a] = step(5);
  const auto [loss_b, grads_b] = step(5);
  const auto [loss_c, grads_c] = step(6);
  EXPECT_EQ(loss_a, loss_b);
  for (size_t i = 0; i < grads_a.size(); ++i) EXPECT_TRUE(torch::equal(grads_a[i], grads_b[i])) << i;
  EXPECT_NE(loss_a, loss_c) << "another seed, other masks";
}

TEST(TrainSplit, SliceCountFollowsSettingThreadsBatchAndBuffers) {
  scenic::testing::IntraOpThreads threads(2);
  TinyVit net;
  auto batch_of = [](int64_t n) {
    dataset::Batch b;
    b["inputs"] = torch::zeros({n, 48});
    b["label"] = torch::zeros({n}, torch::kLong);
    return b;
  };
  const int64_t two = batch_split_available() ? 2 : 1;
  EXPECT_EQ(train_split_slices(net, batch_of(16), 2), two);
  EXPECT_EQ(train_split_slices(net, batch_of(16), 1), 1);
  EXPECT_EQ(train_split_slices(net, batch_of(15), 2), 1);  // not divisible
  EXPECT_EQ(train_split_slices(net, batch_of(9), 4), batch_split_available() ? 3 : 1);  // 4 -> 3 divides 9
  EXPECT_EQ(train_split_slices(net, batch_of(1), 2), 1);
  auto ragged = batch_of(16);
  ragged["label"] = torch::zeros({8}, torch::kLong);
  EXPECT_EQ(train_split_slices(net, ragged, 2), 1);
  // A network with buffers (BatchNorm statistics) is never split.
  struct WithStats : model::Network {
    WithStats() { register_buffer("mean", torch::zeros({3})); }
    torch::Tensor forward(const torch::Tensor& x) override { return x; }
    bool splits_batch_on_cpu() const override { return true; }
  };
  WithStats stats;
  EXPECT_EQ(train_split_slices(stats, batch_of(16), 2), 1);
  // A network that does not opt in is never split.
  Recorder plain;
  EXPECT_EQ(train_split_slices(plain, batch_of(16), 2), 1);
  const bool old = train_split_batch();
  set_train_split_batch(false);
  EXPECT_EQ(train_split_slices(net, batch_of(16), 2), 1);
  set_train_split_batch(old);
}

TEST(TrainSplit, ErrorsReachTheCaller) {
  scenic::testing::IntraOpThreads threads(2);
  dataset::Batch b;
  b["inputs"] = torch::ones({4, 2});
  EXPECT_CONTAINS(error_of([&] {
                    accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) -> std::pair<torch::Tensor, torch::Tensor> {
                      throw Error("slice of " + std::to_string(s.at("inputs").size(0)) + " failed");
                    });
                  }),
                  "slice of 2 failed");
  EXPECT_CONTAINS(error_of([&] {
                    accumulate_gradients_split(b, 2, [&](const dataset::Batch& s) {
                      auto y = s.at("inputs") * 2;
                      return std::make_pair(y, y);  // not a 0-dim loss
                    });
                  }),
                  "0-dim");
}

}  // namespace
}  // namespace scenic::train
