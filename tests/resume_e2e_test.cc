// Crash safety end to end: a `scenic train` process killed with SIGKILL at random
// moments (possibly mid-checkpoint) and restarted, or stopped with SIGTERM, ends with
// exactly the parameters of an uninterrupted run (bit-exact on CPU, one thread). The
// model has dropout and stochastic depth, so this also checks that torch's RNG state
// and the data order are restored, not only the weights and the optimizer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

namespace fs = std::filesystem;
using scenic::dataset::testing::TempDir;
using namespace scenic::e2e;

constexpr int kSteps = 40;

int64_t latest_step(const std::string& workdir) {
  int64_t best = -1;
  static const std::regex re(R"(checkpoint_([0-9]+))");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(workdir + "/checkpoints", ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, re)) best = std::max<int64_t>(best, std::stoll(m[1].str()));
  }
  return best;
}

std::map<std::string, torch::Tensor> read_section(const std::string& path, const std::string& section) {
  torch::serialize::InputArchive archive, sub;
  archive.load_from(path);
  std::map<std::string, torch::Tensor> out;
  if (!archive.try_read(section, sub)) return out;
  for (const auto& key : sub.keys()) {
    torch::Tensor t;
    sub.read(key, t);
    out[key] = t;
  }
  return out;
}

void expect_same_final_state(const std::string& a, const std::string& b) {
  const auto pa = a + "/checkpoints/checkpoint_" + std::to_string(kSteps);
  const auto pb = b + "/checkpoints/checkpoint_" + std::to_string(kSteps);
  ASSERT_TRUE(fs::exists(pa) && fs::exists(pb));
  for (const char* section : {"params", "buffers"}) {
    auto ta = read_section(pa, section), tb = read_section(pb, section);
    ASSERT_EQ(ta.size(), tb.size()) << section;
    for (const auto& [k, v] : ta) {
      ASSERT_TRUE(tb.count(k)) << k;
      EXPECT_TRUE(torch::equal(v, tb.at(k))) << section << " '" << k << "' differs: max |diff| "
                                             << (v - tb.at(k)).abs().max().item<double>();
    }
  }
  ASSERT_FALSE(read_section(pa, "params").empty());
}

class ResumeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = tmp_.file("data");
    fs::create_directories(data);
    scenic::dataset::testing::write_fake_mnist(data, 64, 20, /*gz=*/false);
    config_ = tmp_.file("config.yaml");
    std::ofstream(config_) << R"(model_name: vit_classification
trainer_name: classification_trainer
dataset_name: mnist
dataset_configs: {data_dir: )" << data << R"(, prefetch: 2}
rng_seed: 5
num_threads: 1
batch_size: 8
num_training_steps: )" << kSteps << R"(
log_summary_steps: 10
log_eval_steps: 20
checkpoint_steps: 1
max_checkpoint_keep: 2
model:
  patches: {size: [7, 7]}
  hidden_size: 16
  mlp_dim: 32
  num_heads: 2
  num_layers: 2
  classifier: token
  dropout_rate: 0.1
  attention_dropout_rate: 0.1
  stochastic_depth: 0.2
optimizer_configs: {optimizer: adamw, weight_decay: 0.01}
max_grad_norm: 1.0
lr_configs:
  learning_rate_schedule: compound
  factors: constant * linear_warmup * cosine_decay
  base_learning_rate: 0.003
  warmup_steps: 5
  steps_per_cycle: 40
)";
  }
  std::vector<std::string> train_args(const std::string& wd) const {
    return {"train", "--config", config_, "--workdir", wd};
  }
  RunResult train_to_end(const std::string& wd) {
    return run_scenic("train --config " + config_ + " --workdir " + wd);
  }

  TempDir tmp_;
  std::string config_;
};

TEST_F(ResumeE2E, SigkillAtRandomMomentsThenResumeGivesTheUninterruptedParameters) {
  const auto full = tmp_.file("full"), killed = tmp_.file("killed");
  auto r = train_to_end(full);
  ASSERT_EQ(r.status, 0) << r.output;

  std::mt19937 rng(20261123);
  int kills = 0;
  for (int attempt = 0; attempt < 4 && latest_step(killed) < kSteps - 6; ++attempt) {
    const int64_t target = std::max<int64_t>(latest_step(killed), 0) + std::uniform_int_distribution<>(2, 8)(rng);
    const pid_t pid = spawn_scenic(train_args(killed), tmp_.file("killed.log"));
    ASSERT_GT(pid, 0);
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 6000 && !exited; ++i) {  // at most ~60 s
      if (::waitpid(pid, &status, WNOHANG) == pid) exited = true;
      else if (latest_step(killed) >= target) break;
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_FALSE(exited) << "the run ended before it could be killed";
    // A random instant within the next few steps: often in the middle of a checkpoint write.
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<>(0, 30000)(rng)));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    ++kills;
  }
  EXPECT_GE(kills, 2);
  r = train_to_end(killed);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "resumed from");
  expect_same_final_state(full, killed);
}

TEST_F(ResumeE2E, SigtermSavesACheckpointAndExitsThenResumes) {
  const auto full = tmp_.file("full"), stopped = tmp_.file("stopped");
  ASSERT_EQ(train_to_end(full).status, 0);
  const auto log = tmp_.file("stopped.log");
  const pid_t pid = spawn_scenic(train_args(stopped), log);
  for (int i = 0; i < 6000 && latest_step(stopped) < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "not a clean exit";
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_CONTAINS(text, "stopped by signal 15 at step ");
  const int64_t at = latest_step(stopped);
  EXPECT_GE(at, 3);
  EXPECT_LT(at, kSteps);
  auto r = train_to_end(stopped);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "at step " + std::to_string(at));
  expect_same_final_state(full, stopped);
}

TEST_F(ResumeE2E, KeepsTheBestCheckpointByAValidationMetricAndTimingAcrossResumes) {
  const auto wd = tmp_.file("best");
  auto r = run_scenic("train --config " + config_ + " --workdir " + wd +
                      " --config.checkpoint_best_metric=loss --config.log_eval_steps=5 --config.num_training_steps=20");
  ASSERT_EQ(r.status, 0) << r.output;
  // The lowest valid loss (evaluated at 5, 10, 15; 20 is the last step, evaluated on test).
  double best = 1e30;
  int64_t best_step = -1;
  for (const auto& j : lines_of(read_metrics(wd), "valid"))
    if (j["loss"].get<double>() < best) best = j["loss"].get<double>(), best_step = j["step"].get<int64_t>();
  ASSERT_GT(best_step, 0);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(wd + "/checkpoints/best")) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"checkpoint_" + std::to_string(best_step)});
  // Resuming to 30 steps keeps counting examples from where the first run stopped.
  r = run_scenic("train --config " + config_ + " --workdir " + wd +
                 " --config.checkpoint_best_metric=loss --config.log_eval_steps=5 --config.num_training_steps=30");
  ASSERT_EQ(r.status, 0) << r.output;
  auto train = lines_of(read_metrics(wd), "train");
  ASSERT_FALSE(train.empty());
  EXPECT_EQ(train.back()["step"], 30);
  EXPECT_EQ(train.back()["examples_seen"].get<double>(), 30 * 8);
  EXPECT_GT(train.back()["core_hours"].get<double>(), 0.0);
  EXPECT_TRUE(train.back().contains("l2_updates"));
}

TEST_F(ResumeE2E, FullDiskWhileCheckpointingIsAClearErrorAndKeepsThePreviousCheckpoint) {
  const auto wd = tmp_.file("full_disk");
  auto r = run_scenic("train --config " + config_ + " --workdir " + wd + " --config.num_training_steps=4");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto previous = wd + "/checkpoints/checkpoint_4";
  const auto size = fs::file_size(previous);
  // A file-size limit below one checkpoint makes the next checkpoint write fail with
  // EFBIG, as a full disk does (and it applies to root, unlike permissions). SIGXFSZ is
  // ignored so that the write returns an error instead of killing the process.
  const std::string cmd = "bash -c \"ulimit -f " + std::to_string(size / 1024 / 2) + "; trap '' XFSZ; exec " +
                          SCENIC_BINARY + " train --config " + config_ + " --workdir " + wd +
                          " --config.num_training_steps=8\" 2>&1";
  RunResult full{-1, ""};
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) full.output += buf;
  const int rc = ::pclose(pipe);
  full.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  EXPECT_EQ(full.status, 1) << full.output;
  EXPECT_CONTAINS(full.output, "checkpoint_5.tmp");
  EXPECT_CONTAINS(full.output, "disk full");
  EXPECT_FALSE(fs::exists(wd + "/checkpoints/checkpoint_5.tmp"));
  EXPECT_EQ(latest_step(wd), 4);
  // The previous checkpoint is intact: the run resumes from it and finishes.
  r = run_scenic("train --config " + config_ + " --workdir " + wd + " --config.num_training_steps=8");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "at step 4");
}

}  // namespace
