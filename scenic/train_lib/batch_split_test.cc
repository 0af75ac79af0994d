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
#include "scenic/model_lib/layers/transformer_layers.h"

namespace scenic::train {
namespace {

using scenic::testing::error_of;

// The test binaries run with OMP_NUM_THREADS=1; these tests need a team of several.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n) : old_(at::get_num_threads()) { at::set_num_threads(n); }
  ~ThreadsScope() { at::set_num_threads(old_); }

 private:
  int old_;
};

// Patches of 4 values -> Dense -> one Transformer block (LayerNorm, attention on the
// fused kernel, bias+GELU MLP) -> mean over tokens -> Dense: the ops of a ViT's eval.
struct TinyVit : model::Network {
  TinyVit() {
    embed = register_module("embed", torch::nn::Linear(4, 32));
    model::Encoder1DBlockOptions o;
    o.mlp_dim = 64;
    o.num_heads = 4;
    block = register_module("block", model::Encoder1DBlock(32, o));
    head = register_module("head", torch::nn::Linear(32, 5));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto tokens = embed(x.reshape({x.size(0), -1, 4}));  // [B, 12, 32]
    return head(block(tokens).mean(1));
  }
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
  ThreadsScope threads(2);
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
  ThreadsScope threads(2);
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
  ThreadsScope threads(2);
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
  ThreadsScope threads(2);
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

TEST(BatchSplit, SettingGivesTheThreadCount) {
  ThreadsScope threads(2);
  const bool old = eval_split_batch();
  set_eval_split_batch(true);
  EXPECT_EQ(eval_split_threads(), 2);
  set_eval_split_batch(false);
  EXPECT_EQ(eval_split_threads(), 1);
  set_eval_split_batch(old);
}

}  // namespace
}  // namespace scenic::train
