// Data-parallel training end to end (issue 7): `scenic train` as 2 Gloo processes,
// started by `scenic launch` and by torchrun, against the same config on 1 process.
//
// With `batch_size` global, process p of 2 trains on slots [p*B/2, (p+1)*B/2) of every
// batch of the one-process run (dataset_lib's global-batch slicing), its loss is the
// mean over its half, and the all-reduce averages the two gradients: the update is the
// one-process update up to float summation order. The model has no dropout, BatchNorm
// or mixup, whose random draws / batch statistics are per process.
#include <gtest/gtest.h>

#include <cstdlib>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

namespace fs = std::filesystem;
using scenic::dataset::testing::TempDir;
using namespace scenic::e2e;

constexpr int kSteps = 12;

// A port per test and process, so ctest -j and parallel CI jobs do not collide.
int test_port(int offset) { return 20000 + static_cast<int>(::getpid() % 2000) * 8 + offset; }

std::map<std::string, torch::Tensor> read_params(const std::string& workdir, int step) {
  const auto path = workdir + "/checkpoints/checkpoint_" + std::to_string(step);
  torch::serialize::InputArchive archive, params;
  archive.load_from(path);
  EXPECT_TRUE(archive.try_read("params", params)) << path;
  std::map<std::string, torch::Tensor> out;
  for (const auto& key : params.keys()) {
    torch::Tensor t;
    params.read(key, t);
    out[key] = t;
  }
  return out;
}

// max |a - b| over every parameter (the names must agree).
double max_param_diff(const std::string& a, const std::string& b, int step = kSteps) {
  auto pa = read_params(a, step), pb = read_params(b, step);
  EXPECT_EQ(pa.size(), pb.size());
  EXPECT_FALSE(pa.empty());
  double worst = 0;
  for (const auto& [k, v] : pa) {
    if (!pb.count(k)) {
      ADD_FAILURE() << "missing parameter " << k;
      continue;
    }
    worst = std::max(worst, (v - pb.at(k)).abs().max().item<double>());
  }
  return worst;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class DistributedE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = tmp_.file("data");
    fs::create_directories(data);
    scenic::dataset::testing::write_fake_mnist(data, 64, 22, /*gz=*/false);
    config_ = tmp_.file("config.yaml");
    std::ofstream(config_) << R"(model_name: vit_classification
trainer_name: classification_trainer
dataset_name: mnist
dataset_configs: {data_dir: )" << data << R"(, prefetch: 2}
rng_seed: 3
num_threads: 1
batch_size: 8
eval_batch_size: 6
num_training_steps: )" << kSteps << R"(
log_summary_steps: 4
log_eval_steps: 6
checkpoint_steps: 6
distributed: {timeout_s: 20}
model:
  patches: {size: [7, 7]}
  hidden_size: 16
  mlp_dim: 32
  num_heads: 2
  num_layers: 2
  classifier: token
  dropout_rate: 0.0
  attention_dropout_rate: 0.0
  stochastic_depth: 0.0
optimizer_configs: {optimizer: sgd, momentum: 0.9}
max_grad_norm: 1.0
lr_configs:
  learning_rate_schedule: compound
  factors: constant * linear_warmup * cosine_decay
  base_learning_rate: 0.003
  warmup_steps: 3
  steps_per_cycle: 12
)";
  }
  std::string train_args(const std::string& wd) const { return "train --config " + config_ + " --workdir " + wd; }

  // Train and test metrics of a run must agree with the one-process run's.
  static void expect_same_metrics(const std::string& a, const std::string& b) {
    const auto ma = read_metrics(a), mb = read_metrics(b);
    for (const std::string split : {"train", "valid", "test"}) {
      const auto la = lines_of(ma, split), lb = lines_of(mb, split);
      ASSERT_EQ(la.size(), lb.size()) << split;
      ASSERT_FALSE(la.empty()) << split;
      for (size_t i = 0; i < la.size(); ++i) {
        for (const char* key : {"loss", "accuracy"}) {
          if (!la[i].contains(key)) continue;
          EXPECT_NEAR(la[i][key].get<double>(), lb[i][key].get<double>(), 1e-5)
              << split << " line " << i << " " << key;
        }
      }
    }
  }

  TempDir tmp_;
  std::string config_;
};

TEST_F(DistributedE2E, TwoProcessesByScenicLaunchEqualOneProcess) {
  const auto one = tmp_.file("one"), two = tmp_.file("two");
  auto r1 = run_scenic(train_args(one));
  ASSERT_EQ(r1.status, 0) << r1.output;
  auto r2 = run_scenic("launch --nproc_per_node 2 --master_port " + std::to_string(test_port(0)) + " -- " +
                       SCENIC_BINARY + " " + train_args(two));
  ASSERT_EQ(r2.status, 0) << r2.output;
  EXPECT_CONTAINS(r2.output, "over 2 processes (gloo)");
  // One "final test" line: only rank 0 reports.
  EXPECT_EQ(r2.output.find("final test"), r2.output.rfind("final test")) << r2.output;
  // Parameters after 12 Adam steps: equal up to float summation order.
  EXPECT_LE(max_param_diff(one, two), 1e-6);
  expect_same_metrics(one, two);
  // Only rank 0 wrote: one metrics file, one log, no second set of checkpoints to race.
  EXPECT_TRUE(fs::exists(two + "/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(two + "/config.yaml"));
}

TEST_F(DistributedE2E, TorchrunLaunchesTheSameBinary) {
  const std::string torchrun = std::string(SCENIC_SOURCE_DIR) + "/.venv/bin/torchrun";
  ASSERT_TRUE(fs::exists(torchrun)) << "scripts/setup.sh installs torch (and torchrun) into .venv";
  const auto one = tmp_.file("one"), two = tmp_.file("torchrun");
  auto r1 = run_scenic(train_args(one));
  ASSERT_EQ(r1.status, 0) << r1.output;
  const std::string cmd = "OMP_NUM_THREADS=1 " + torchrun + " --nproc_per_node 2 --master_port " +
                          std::to_string(test_port(1)) + " --no-python " + SCENIC_BINARY + " " +
                          train_args(two) + " 2>&1";
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  const int rc = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << out;
  EXPECT_LE(max_param_diff(one, two), 1e-6);
  expect_same_metrics(one, two);
}

TEST_F(DistributedE2E, GlobalBatchMustDivideByTheProcesses) {
  auto r = run_scenic("launch --nproc_per_node 2 --master_port " + std::to_string(test_port(2)) + " -- " +
                      SCENIC_BINARY + " " + train_args(tmp_.file("odd")) + " --config.batch_size=7");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "config key 'batch_size' (7) is the global batch and must be divisible by the "
                            "number of processes (2)");
}

// SIGTERM to `scenic launch` reaches both ranks; they agree on a step, rank 0 saves a
// checkpoint, both exit 128 + 15; the same command then resumes and ends with the
// parameters of an uninterrupted one-process run.
TEST_F(DistributedE2E, SigtermStopsEveryRankAtOneStepAndTheJobResumes) {
  // 240 steps instead of the config's 12, so that the signal lands mid-training: 12 steps
  // of this model take ~40 ms on a fast core, less than the 50 ms between two looks.
  constexpr int kLongSteps = 240;
  const std::string longer = " --config.checkpoint_steps=1 --config.num_training_steps=240"
                             " --config.lr_configs.steps_per_cycle=240";
  const auto one = tmp_.file("one"), two = tmp_.file("preempted");
  auto r1 = run_scenic(train_args(one) + longer);
  ASSERT_EQ(r1.status, 0) << r1.output;
  const std::vector<std::string> args{"launch", "--nproc_per_node", "2", "--master_port",
                                      std::to_string(test_port(4)), "--", SCENIC_BINARY, "train",
                                      "--config", config_, "--workdir", two, "--config.checkpoint_steps=1",
                                      "--config.num_training_steps=240", "--config.lr_configs.steps_per_cycle=240"};
  const pid_t pid = spawn_scenic(args, tmp_.file("launch.log"));
  ASSERT_GT(pid, 0);
  // Stop it once a few steps are done (rank 0 checkpoints every step and keeps the last
  // few, so checkpoint_3 itself may be gone by the time we look: any step >= 3 will do).
  auto past_step_3 = [&] {
    std::error_code ec;
    for (fs::directory_iterator it(two + "/checkpoints", ec), end; !ec && it != end; it.increment(ec)) {
      const auto name = it->path().filename().string();
      if (name.rfind("checkpoint_", 0) == 0 && std::atoi(name.c_str() + 11) >= 3) return true;
    }
    return false;
  };
  int st = 0;
  bool exited = false;
  for (int i = 0; i < 600 && !past_step_3(); ++i) {
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(exited || past_step_3()) << slurp(tmp_.file("launch.log"));
  if (!exited) {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, &st, 0);
  }
  const std::string log = slurp(tmp_.file("launch.log"));
  // On a very fast or idle machine the job can still finish all its steps before the
  // signal is handled (then "final test" is in the log and there is nothing to resume);
  // otherwise it must stop at one step, save, exit 128 + 15 and resume.
  if (log.find("final test:") == std::string::npos) {
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM) << log;
    EXPECT_CONTAINS(log, "stopped by signal 15");
    auto r2 = run_scenic("launch --nproc_per_node 2 --master_port " + std::to_string(test_port(5)) + " -- " +
                         SCENIC_BINARY + " " + train_args(two) + longer);
    ASSERT_EQ(r2.status, 0) << r2.output;
    EXPECT_CONTAINS(r2.output, "resumed from");
  }
  EXPECT_LE(max_param_diff(one, two, kLongSteps), 1e-6);
}

// Rank 1 is SIGKILLed mid-training; rank 0 must not hang: it exits non-zero with a
// distributed error well within distributed.timeout_s (20 s) plus start-up.
TEST_F(DistributedE2E, SurvivorExitsWithAnErrorWhenAPeerDies) {
  const auto wd = tmp_.file("killed");
  const std::string port = std::to_string(test_port(3));
  std::vector<std::string> args{"train", "--config", config_, "--workdir", wd, "--config.num_training_steps=100000",
                                "--config.checkpoint_steps=1000"};
  auto env = [&](int rank) {
    return std::vector<std::string>{"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "LOCAL_RANK=" + std::to_string(rank),
                                    "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port};
  };
  const pid_t r0 = spawn_scenic(args, tmp_.file("rank0.log"), env(0));
  const pid_t r1 = spawn_scenic(args, tmp_.file("rank1.log"), env(1));
  ASSERT_GT(r0, 0);
  ASSERT_GT(r1, 0);
  // Wait until training is under way (rank 0 logs train summaries every 4 steps).
  for (int i = 0; i < 600 && slurp(wd + "/metrics.jsonl").find("\"train\"") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_NE(slurp(wd + "/metrics.jsonl").find("\"train\""), std::string::npos) << slurp(tmp_.file("rank0.log"));
  ::kill(r1, SIGKILL);
  int st = 0;
  ::waitpid(r1, &st, 0);
  const auto t0 = std::chrono::steady_clock::now();
  bool exited = false;
  while (!exited && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
    if (::waitpid(r0, &st, WNOHANG) == r0) exited = true;
    else std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!exited) {
    ::kill(r0, SIGKILL);
    ::waitpid(r0, &st, 0);
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(exited) << "rank 0 still running 60 s after its peer died:\n" << slurp(tmp_.file("rank0.log"));
  EXPECT_LE(waited, 30.0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  EXPECT_CONTAINS(slurp(tmp_.file("rank0.log")), "distributed");
}

}  // namespace
