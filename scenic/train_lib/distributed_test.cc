// Multi-process tests start real processes: `launch()` runs tests/distributed_worker.cc
// (build/scenic_distributed_worker) as torchrun would, over Gloo on 127.0.0.1.
// Two in-process tests run 2 ranks as threads with their own TCPStore + Gloo group.
#include "scenic/train_lib/distributed.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "scenic/common_lib/testing.h"
#include "scenic/train_lib/gradient_all_reducer.h"
#include "scenic/train_lib/launcher.h"

namespace scenic::train {
namespace {

// A port nobody listens on now (the kernel's choice for an ephemeral bind).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<float> v;
  float x;
  while (f.read(reinterpret_cast<char*>(&x), sizeof(x))) v.push_back(x);
  return v;
}

std::vector<double> read_numbers(const std::string& path) {
  std::ifstream f(path);
  std::vector<double> v;
  double x;
  while (f >> x) v.push_back(x);
  return v;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs the worker in `nproc` processes; returns the launcher's status.
int run_worker(int nproc, const std::string& mode, const std::string& dir, std::vector<std::string> args = {}) {
  LaunchOptions o;
  o.nproc_per_node = nproc;
  o.master_port = free_port();
  o.grace_s = 2;
  std::vector<std::string> argv = {std::string(SCENIC_BINARY_DIR) + "/scenic_distributed_worker", mode, dir};
  argv.insert(argv.end(), args.begin(), args.end());
  return launch(o, argv);
}

// K = 5 steps with 2 processes x 8 examples vs 1 process x 16 examples: the same
// parameters (to 1e-6), and the all-reduced eval sums equal the 1-process sums.
void expect_two_processes_match_one(const std::vector<std::string>& args, size_t expected_buckets) {
  testing::TempDir one, two;
  ASSERT_EQ(run_worker(1, "train", one.path(), args), 0) << read_text(one.file("error.0.txt"));
  ASSERT_EQ(run_worker(2, "train", two.path(), args), 0)
      << read_text(two.file("error.0.txt")) << read_text(two.file("error.1.txt"));

  const auto ref = read_floats(one.file("params.0.bin"));
  const auto r0 = read_floats(two.file("params.0.bin"));
  const auto r1 = read_floats(two.file("params.1.bin"));
  // fc1 8x32+32, fc2 32x16+16, fc3 16x4+4 = 288 + 528 + 68 = 884 parameters.
  ASSERT_EQ(ref.size(), 884u);
  ASSERT_EQ(r0.size(), ref.size());
  ASSERT_EQ(r1.size(), ref.size());
  // Rank 1 started from other weights: equal here means the broadcast and the
  // all-reduce both worked (Gloo gives every rank the same reduced bits).
  EXPECT_EQ(r0, r1);
  double max_diff = 0;
  for (size_t i = 0; i < ref.size(); ++i) max_diff = std::max(max_diff, std::abs(double(r0[i]) - double(ref[i])));
  EXPECT_LE(max_diff, 1e-6);

  // metrics: correct, loss_sum, count, buckets, buckets started during backward.
  const auto m1 = read_numbers(one.file("metrics.0.txt"));
  const auto m2 = read_numbers(two.file("metrics.0.txt"));
  ASSERT_EQ(m1.size(), 5u);
  ASSERT_EQ(m2.size(), 5u);
  EXPECT_EQ(m2[0], m1[0]);  // correct predictions out of 20
  EXPECT_NEAR(m2[1], m1[1], 1e-5 * std::abs(m1[1]));
  EXPECT_EQ(m1[2], 20);  // every eval example counted once
  EXPECT_EQ(m2[2], 20);
  EXPECT_EQ(m1[3], 0);  // one process: no buckets
  EXPECT_EQ(m2[3], expected_buckets);
  // Every bucket was started by the hooks during backward, none left to finish().
  EXPECT_EQ(m2[4], expected_buckets);
  EXPECT_EQ(read_numbers(two.file("metrics.1.txt")), m2);
}

TEST(DistributedTrainTest, TwoProcessesEqualOneProcessSgdSmallBuckets) {
  // 512-byte buckets: [fc3.bias 16 B, fc3.weight 256 B, fc2.bias 64 B], [fc2.weight],
  // [fc1.bias], [fc1.weight] (reverse registration order, a new bucket past 512 B).
  expect_two_processes_match_one({"--optimizer", "sgd", "--steps", "5", "--bucket_bytes", "512"}, 4);
}

TEST(DistributedTrainTest, TwoProcessesEqualOneProcessAdamW) {
  // The default 25 MB bucket holds all 884 x 4 bytes.
  expect_two_processes_match_one({"--optimizer", "adamw", "--steps", "5"}, 1);
}

// torchrun (the launcher users already have) starts the same binary: its agent serves
// the TCPStore (TORCHELASTIC_USE_AGENT_STORE=True), every rank joins as a client.
TEST(DistributedTrainTest, TorchrunRunsTheSameBinary) {
  testing::TempDir one, two;
  const std::vector<std::string> args = {"--steps", "3", "--bucket_bytes", "512"};
  ASSERT_EQ(run_worker(1, "train", one.path(), args), 0) << read_text(one.file("error.0.txt"));
  const std::string cmd = std::string(SCENIC_SOURCE_DIR) + "/.venv/bin/torchrun --nproc_per_node 2 --master_port " +
                          std::to_string(free_port()) + " --no-python " + SCENIC_BINARY_DIR +
                          "/scenic_distributed_worker train " + two.path() + " --steps 3 --bucket_bytes 512 > " +
                          two.file("torchrun.log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(two.file("torchrun.log"));
  EXPECT_CONTAINS(read_text(two.file("torchrun.log")), "rank 1 of 2 (gloo), local rank 1, device cpu, master 127.0.0.1");
  const auto ref = read_floats(one.file("params.0.bin"));
  const auto r0 = read_floats(two.file("params.0.bin"));
  ASSERT_EQ(ref.size(), 884u);
  ASSERT_EQ(r0.size(), ref.size());
  EXPECT_EQ(read_floats(two.file("params.1.bin")), r0);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(r0[i], ref[i], 1e-6) << "parameter value " << i;
}

TEST(DistributedTest, AverageBuffersAveragesBatchNormStatistics) {
  testing::TempDir dir;
  ASSERT_EQ(run_worker(2, "buffers", dir.path()), 0) << read_text(dir.file("error.0.txt"));
  // rank 0: mean [0, 0, 0], var 1; rank 1: mean [1, 2, 3], var 2
  // -> mean [0.5, 1, 1.5], var 1.5; num_batches_tracked (integer) stays 5.
  const std::vector<double> expected = {0.5, 1, 1.5, 1.5, 1.5, 1.5, 5};
  EXPECT_EQ(read_numbers(dir.file("buffers.0.txt")), expected);
  EXPECT_EQ(read_numbers(dir.file("buffers.1.txt")), expected);
}

// Rank 1 exits without joining rank 0's all-reduce: rank 0 exits 1 with a clear error
// instead of hanging. The bound on the elapsed time only checks "no hang": Gloo sees
// the closed connection at once, and the timeout (5 s) caps it otherwise.
TEST(DistributedFailureTest, DeadPeerMakesTheOtherFail) {
  testing::TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run_worker(2, "die", dir.path(), {"--timeout_s", "5"}), 1);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(elapsed, 5 + 20);
  const auto error = read_text(dir.file("error.0.txt"));
  EXPECT_CONTAINS(error, "distributed all_reduce_sum failed on rank 0 of 2 (gloo)");
  EXPECT_CONTAINS(error, "another process died");
}

// Rank 1 is alive but never joins: rank 0 gives up after distributed.timeout_s (2 s),
// and the launcher then stops rank 1 (which would otherwise sleep 60 s).
TEST(DistributedFailureTest, HungPeerTimesOut) {
  testing::TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(run_worker(2, "hang", dir.path(), {"--timeout_s", "2"}), 1);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(elapsed, 30);  // far below rank 1's 60 s sleep: nobody waited for it
  const auto error = read_text(dir.file("error.0.txt"));
  EXPECT_CONTAINS(error, "distributed all_reduce_sum failed on rank 0 of 2 (gloo)");
  EXPECT_CONTAINS(error, "within distributed.timeout_s=2 s");
}

// ---- In-process ----

TEST(DistributedTest, OneProcessIsANoOp) {
  auto ctx = DistributedContext::single();
  EXPECT_FALSE(ctx->is_distributed());
  EXPECT_TRUE(ctx->is_lead());
  EXPECT_CONTAINS(testing::error_of([&] { ctx->process_group(); }), "single process has no process group");
  auto lin = torch::nn::Linear(2, 1);
  std::vector<torch::Tensor> t = {torch::tensor({1.5, 2.5})};
  all_reduce_sum(t, *ctx);
  EXPECT_TRUE(torch::equal(t[0], torch::tensor({1.5, 2.5})));
  EXPECT_TRUE(any_process(true, *ctx));
  EXPECT_FALSE(any_process(false, *ctx));
  barrier(*ctx);
  GradientAllReducer reducer(lin->parameters(), ctx);
  lin->forward(torch::ones({1, 2})).sum().backward();
  reducer.finish();
  // d(w.x + b)/dw = x = [1, 1], d/db = 1: untouched by finish().
  EXPECT_TRUE(torch::equal(lin->weight.grad(), torch::ones({1, 2})));
  EXPECT_TRUE(torch::equal(lin->bias.grad(), torch::ones({1})));
  EXPECT_EQ(reducer.num_buckets(), 0u);
  // No launcher variables: init_distributed gives one process.
  auto one = init_distributed({}, DistributedEnv{}, torch::kCPU);
  EXPECT_EQ(one->world_size, 1);
}

TEST(DistributedTest, PerProcessBatchSize) {
  auto ctx = DistributedContext::single();
  ctx->world_size = 4;  // only the arithmetic is used
  EXPECT_EQ(per_process_batch_size(256, *ctx), 64);
  EXPECT_CONTAINS(testing::error_of([&] { per_process_batch_size(250, *ctx); }),
                  "config key 'batch_size' (250) is the global batch and must be divisible by the number of "
                  "processes (4)");
  EXPECT_CONTAINS(testing::error_of([&] { per_process_batch_size(6, *ctx, "eval_batch_size"); }),
                  "config key 'eval_batch_size' (6)");
}

TEST(DistributedTest, OptionsFromConfig) {
  auto config = common::ConfigDict::from_yaml_string("distributed: {backend: gloo, timeout_s: 5, bucket_mb: 1, port: 1234}");
  const auto o = distributed_options_from_config(config);
  EXPECT_EQ(o.backend, "gloo");
  EXPECT_EQ(o.timeout_s, 5);
  EXPECT_EQ(o.bucket_mb, 1);
  EXPECT_EQ(o.rendezvous.port, 1234);
  EXPECT_FALSE(o.rendezvous.master_addr.has_value());
  config.check_all_used();
  const auto d = distributed_options_from_config(common::ConfigDict::from_yaml_string("{}"));
  EXPECT_EQ(d.backend, "auto");
  EXPECT_EQ(d.timeout_s, 300);
  EXPECT_EQ(d.bucket_mb, 25);
  EXPECT_CONTAINS(testing::error_of([] {
                    distributed_options_from_config(common::ConfigDict::from_yaml_string("distributed: {backend: mpi}"));
                  }),
                  "'distributed.backend' must be auto, gloo or nccl, not 'mpi'");
  EXPECT_CONTAINS(testing::error_of([] {
                    distributed_options_from_config(common::ConfigDict::from_yaml_string("distributed: {timeout_s: 0}"));
                  }),
                  "'distributed.timeout_s' must be > 0");
  DistributedEnv env;
  env.world_size = 2;
  EXPECT_CONTAINS(testing::error_of([&] {
                    DistributedOptions nccl;
                    nccl.backend = "nccl";
                    init_distributed(nccl, env, torch::kCPU);
                  }),
                  "NCCL needs CUDA");
}

// Runs `body(ctx)` on 2 ranks, as threads with their own Gloo groups.
template <typename Body>
void two_ranks(Body body) {
  const int port = free_port();
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        DistributedEnv env;
        env.launcher = "test";
        env.rank = r;
        env.world_size = 2;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        DistributedOptions options;
        options.timeout_s = 20;
        body(init_distributed(options, env, torch::kCPU));
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

// Gradient accumulation under NoSync, and a parameter only rank 0 uses.
TEST(GradientAllReducerTest, NoSyncAccumulationAndUnusedParameters) {
  // Rank r's loss for micro-batch k: sum(w * x_rk) + (r == 0 ? 3 * u : 0), with
  // x_rk = [r + k, 1], w and u leaves. Accumulated local grad of w: x_r0 + x_r1 =
  // [2r + 1, 2]; the mean over ranks: ([1, 2] + [3, 2]) / 2 = [2, 2].
  // u: rank 0 has 3 + 3 = 6 (two micro-batches), rank 1 none (contributes 0): mean 3.
  std::vector<torch::Tensor> w_grads(2), u_grads(2);
  std::vector<std::string> late(2);
  two_ranks([&](std::shared_ptr<DistributedContext> ctx) {
    auto w = torch::zeros({2}, torch::requires_grad());
    auto u = torch::zeros({}, torch::requires_grad());
    GradientAllReducer reducer({w, u}, ctx);
    const double r = ctx->rank;
    auto loss = [&](int k) {
      auto l = (w * torch::tensor({r + k, 1.0}, torch::kFloat32)).sum();
      return ctx->rank == 0 ? l + 3 * u : l;
    };
    {
      GradientAllReducer::NoSync no_sync(reducer);
      loss(0).backward();
    }
    loss(1).backward();
    reducer.finish();
    w_grads[ctx->rank] = w.grad().clone();
    u_grads[ctx->rank] = u.grad().clone();
    // Two backward passes without NoSync, every parameter used on both ranks: the
    // second pass comes after the first one's bucket was sent.
    w.mutable_grad().zero_();
    u.mutable_grad().zero_();
    for (int k = 0; k < 2; ++k) ((w * torch::tensor({r + k, 1.0}, torch::kFloat32)).sum() + u).backward();
    try {
      reducer.finish();
    } catch (const Error& e) {
      late[ctx->rank] = e.what();
    }
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_TRUE(w_grads[r].defined());
    EXPECT_TRUE(torch::equal(w_grads[r], torch::tensor({2.0f, 2.0f}))) << w_grads[r];
    EXPECT_TRUE(torch::equal(u_grads[r], torch::tensor(3.0f))) << u_grads[r];
    EXPECT_CONTAINS(late[r], "a backward pass ran after its gradients were already sent");
  }
}

TEST(DistributedTest, CollectivesOnTwoRanks) {
  // all_reduce_sum over mixed dtypes (one coalesced buffer per dtype), any_process, barrier.
  std::vector<std::vector<torch::Tensor>> out(2);
  std::vector<int> any(2), none(2);
  two_ranks([&](std::shared_ptr<DistributedContext> ctx) {
    const double r = ctx->rank;
    std::vector<torch::Tensor> t = {torch::tensor({1.0 + r, 10.0 * r}, torch::kFloat64),
                                    torch::tensor({int64_t(2 + r)}), torch::tensor({{0.5f * float(r + 1)}})};
    all_reduce_sum(t, *ctx);
    out[ctx->rank] = t;
    any[ctx->rank] = any_process(ctx->rank == 1, *ctx);
    none[ctx->rank] = any_process(false, *ctx);
    barrier(*ctx);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(out[r].size(), 3u);
    // [1, 0] + [2, 10] = [3, 10]; 2 + 3 = 5; 0.5 + 1 = 1.5 (shapes and dtypes kept)
    EXPECT_TRUE(torch::equal(out[r][0], torch::tensor({3.0, 10.0}, torch::kFloat64)));
    EXPECT_TRUE(torch::equal(out[r][1], torch::tensor({int64_t(5)})));
    EXPECT_TRUE(torch::equal(out[r][2], torch::tensor({{1.5f}})));
    EXPECT_EQ(any[r], 1);
    EXPECT_EQ(none[r], 0);
  }
}

}  // namespace
}  // namespace scenic::train
