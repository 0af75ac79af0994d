// End-to-end tests of the `scenic` command: train, resume, eval, and the errors a user
// meets (typos in config keys, wrong types, corrupt data, a diverging run).
#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

namespace fs = std::filesystem;
using scenic::dataset::testing::TempDir;
using scenic::dataset::testing::write_fake_mnist;
using scenic::e2e::lines_of;
using scenic::e2e::read_metrics;
using scenic::e2e::RunResult;
using scenic::e2e::run_scenic;

// A small fully-connected classifier on a fake 64/20-example MNIST directory.
class TrainE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = tmp_.file("data");
    fs::create_directories(data_dir_);
    write_fake_mnist(data_dir_, 64, 20, /*gz=*/true);
    config_ = tmp_.file("config.yaml");
    std::ofstream(config_) << R"(model_name: fully_connected_classification
trainer_name: classification_trainer
dataset_name: mnist
dataset_configs: {data_dir: )" << data_dir_ << R"(}
rng_seed: 3
batch_size: 8
eval_batch_size: 6
num_training_steps: 12
log_summary_steps: 4
log_eval_steps: 6
checkpoint_steps: 4
max_checkpoint_keep: 2
model: {hid_sizes: [16]}
optimizer_configs: {optimizer: sgd, momentum: 0.9}
lr_configs:
  learning_rate_schedule: compound
  factors: constant * linear_warmup
  base_learning_rate: 0.01
  warmup_steps: 3
)";
  }
  std::string workdir(const std::string& name) const { return tmp_.file(name); }
  RunResult train(const std::string& wd, const std::string& extra = "") {
    return run_scenic("train --config " + config_ + " --workdir " + wd + " " + extra);
  }

  TempDir tmp_;
  std::string data_dir_, config_;
};

TEST_F(TrainE2E, WritesMetricsConfigLogAndCheckpoints) {
  const auto wd = workdir("run");
  auto r = train(wd);
  ASSERT_EQ(r.status, 0) << r.output;
  auto metrics = read_metrics(wd);
  auto train_lines = lines_of(metrics, "train");
  // Step 0 carries the parameter count; then summaries at 4, 8, 12.
  ASSERT_EQ(train_lines.size(), 4u) << r.output;
  EXPECT_EQ(train_lines[0]["num_trainable_params"], 28 * 28 * 16 + 16 + 16 * 10 + 10);
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(train_lines[i]["step"], 4 * i);
    for (const char* k : {"loss", "accuracy", "learning_rate", "l2_grads", "l2_params"})
      EXPECT_TRUE(train_lines[i].contains(k)) << k;
  }
  // Warmup over 3 steps then constant: the lr of the update at step 4 is 0.01.
  EXPECT_DOUBLE_EQ(train_lines[1]["learning_rate"].get<double>(), 0.01);
  auto valid = lines_of(metrics, "valid");
  ASSERT_EQ(valid.size(), 1u);  // at step 6; step 12 is the last, evaluated on test
  EXPECT_EQ(valid[0]["step"], 6);
  auto test = lines_of(metrics, "test");
  ASSERT_EQ(test.size(), 1u);
  EXPECT_EQ(test[0]["step"], 12);
  // 20 test examples: accuracy is a multiple of 1/20 (padding in the last batch of 6 ignored).
  const double acc = test[0]["accuracy"];
  EXPECT_NEAR(acc * 20, std::round(acc * 20), 1e-6);

  EXPECT_TRUE(fs::exists(wd + "/log.txt"));
  std::ifstream cfg(wd + "/config.yaml");
  std::stringstream ss;
  ss << cfg.rdbuf();
  // Defaults the run used are recorded in the resolved config.
  EXPECT_CONTAINS(ss.str(), "label_smoothing: 0");
  // checkpoint_steps 4 with keep 2: steps 8 and 12 remain, no temporaries.
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(wd + "/checkpoints")) ckpts.push_back(e.path().filename());
  std::sort(ckpts.begin(), ckpts.end());
  EXPECT_EQ(ckpts, (std::vector<std::string>{"checkpoint_12", "checkpoint_8"}));

  // `scenic eval` on the workdir reproduces the final test metrics from the checkpoint.
  auto e = run_scenic("eval --workdir " + wd);
  ASSERT_EQ(e.status, 0) << e.output;
  auto after = lines_of(read_metrics(wd), "test");
  ASSERT_EQ(after.size(), 2u);
  EXPECT_DOUBLE_EQ(after[1]["accuracy"].get<double>(), acc);
  EXPECT_NEAR(after[1]["loss"].get<double>(), test[0]["loss"].get<double>(), 1e-6);
}

TEST_F(TrainE2E, ResumeContinuesFromTheSavedStepAndMatchesAnUninterruptedRun) {
  const auto full = workdir("full"), split = workdir("split");
  ASSERT_EQ(train(full).status, 0);
  auto first = train(split, "--config.num_training_steps=8");
  ASSERT_EQ(first.status, 0) << first.output;
  auto second = train(split);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_CONTAINS(second.output, "resumed from");
  EXPECT_CONTAINS(second.output, "at step 8");
  // The resumed run logs steps 12 only (not 4, 8 again) and ends where the full run ends.
  auto resumed_train = lines_of(read_metrics(split), "train");
  ASSERT_FALSE(resumed_train.empty());
  EXPECT_EQ(resumed_train.back()["step"], 12);
  auto a = lines_of(read_metrics(full), "test").back();
  auto b = lines_of(read_metrics(split), "test").back();
  EXPECT_EQ(b["step"], 12);
  // Same data order and restored optimizer state: the same final model.
  EXPECT_NEAR(a["loss"].get<double>(), b["loss"].get<double>(), 1e-5);
  EXPECT_DOUBLE_EQ(a["accuracy"].get<double>(), b["accuracy"].get<double>());
}

TEST_F(TrainE2E, UnknownKeyInFileOrOverrideFailsWithSuggestion) {
  auto r = train(workdir("typo"), "--config.modle.hid_sizes=[8]");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "unknown config key 'modle.hid_sizes'");
  EXPECT_CONTAINS(r.output, "did you mean 'model.hid_sizes'");
  auto r2 = train(workdir("typo2"), "--config.lr_configs.warmup_step=5");
  EXPECT_NE(r2.status, 0);
  EXPECT_CONTAINS(r2.output, "did you mean 'lr_configs.warmup_steps'");
}

TEST_F(TrainE2E, WrongTypeMissingKeyAndUnknownNamesAreOneLineErrors) {
  auto r = train(workdir("type"), "--config.batch_size=eight");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "config key 'batch_size'");
  EXPECT_CONTAINS(r.output, "expected int");
  auto m = train(workdir("missing"), "--config.model_name=null");
  EXPECT_NE(m.status, 0);
  EXPECT_CONTAINS(m.output, "'model_name' is required");
  auto u = train(workdir("unknown"), "--config.model_name=fully_conected_classification");
  EXPECT_NE(u.status, 0);
  EXPECT_CONTAINS(u.output, "did you mean 'fully_connected_classification'");
}

// The CUDA input keys (train_lib/device_prefetch.h) are read by the trainer, so a GPU
// config passes the unknown-key check on a CPU and trains; a bad value still stops it.
TEST_F(TrainE2E, CudaInputKeysAreAcceptedOnCpuAndCheckedEverywhere) {
  auto r = train(workdir("gpu_keys"), "--config.num_training_steps=4 --config.dataset_configs.prefetch_to_device=3 "
                                      "--config.dataset_configs.pin_memory=true");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "are ignored on device cpu");
  auto bad = train(workdir("gpu_keys_bad"), "--config.dataset_configs.prefetch_to_device=-1");
  EXPECT_NE(bad.status, 0);
  EXPECT_CONTAINS(bad.output, "config key 'dataset_configs.prefetch_to_device' must be >= 0, got -1");
}

TEST_F(TrainE2E, CorruptDataFileIsNamed) {
  // Truncate the training images: the error names the file.
  const std::string images = data_dir_ + "/train-images-idx3-ubyte.gz";
  auto bytes = scenic::dataset::testing::read_raw(images);
  bytes.resize(bytes.size() / 2);
  scenic::dataset::testing::write_raw(images, bytes);
  auto r = train(workdir("corrupt"));
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "train-images-idx3-ubyte.gz");
}

TEST_F(TrainE2E, DivergingRunStopsAndKeepsTheLastGoodCheckpoint) {
  const auto wd = workdir("nan");
  ASSERT_EQ(train(wd, "--config.num_training_steps=4").status, 0);
  ASSERT_TRUE(fs::exists(wd + "/checkpoints/checkpoint_4"));
  // Resume with a learning rate that blows the weights up.
  auto r = train(wd, "--config.lr_configs.base_learning_rate=1e30");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "diverged");
  std::vector<std::string> ckpts;
  for (const auto& e : fs::directory_iterator(wd + "/checkpoints")) ckpts.push_back(e.path().filename());
  EXPECT_EQ(ckpts, std::vector<std::string>{"checkpoint_4"});
  // And the kept checkpoint is still good.
  auto e = run_scenic("eval --workdir " + wd);
  EXPECT_EQ(e.status, 0) << e.output;
}

// A real run: a small MLP on the real Fashion-MNIST for 150 steps beats 70% test accuracy.
TEST(TrainE2ERealData, FashionMnistMlpLearns) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  ASSERT_TRUE(fs::exists(dir)) << dir << " is missing: scripts/setup.sh installs dataset-fashion-mnist";
  TempDir tmp;
  auto r = run_scenic("train --config " SCENIC_SOURCE_DIR
                      "/scenic/projects/baselines/configs/fashion_mnist/fully_connected.yaml --workdir " +
                      tmp.file("wd") + " --config.num_training_steps=150 --config.log_eval_steps=1000");
  ASSERT_EQ(r.status, 0) << r.output;
  auto test = lines_of(read_metrics(tmp.file("wd")), "test");
  ASSERT_EQ(test.size(), 1u);
  EXPECT_GT(test[0]["accuracy"].get<double>(), 0.70);
}

}  // namespace
