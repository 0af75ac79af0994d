// End-to-end tests of transfer_trainer: pre-train a small MLP on fake MNIST with
// classification_trainer, then fine-tune from its checkpoint (`init_from`) with named
// eval sets, few-shot ridge-regression and linear-probe evaluations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "scenic/common_lib/testing.h"
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

std::map<std::string, torch::Tensor> params_of(const std::string& checkpoint) {
  torch::serialize::InputArchive archive, params;
  archive.load_from(checkpoint);
  EXPECT_TRUE(archive.try_read("params", params));
  std::map<std::string, torch::Tensor> out;
  for (const auto& k : params.keys()) params.read(k, out[k]);
  return out;
}

class TransferE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = tmp_.file("data");
    fs::create_directories(data_dir_);
    write_fake_mnist(data_dir_, 64, 20, /*gz=*/true);
    const std::string common = "dataset_name: mnist\ndataset_configs: {data_dir: " + data_dir_ +
                               "}\nbatch_size: 8\nnum_threads: 1\nmodel: {hid_sizes: [16]}\n";
    pretrain_config_ = tmp_.file("pretrain.yaml");
    std::ofstream(pretrain_config_) << common << R"(model_name: fully_connected_classification
trainer_name: classification_trainer
rng_seed: 3
num_training_steps: 12
log_eval_steps: 12
optimizer_configs: {optimizer: sgd, momentum: 0.9}
lr_configs: {base_learning_rate: 0.05}
)";
    // Learning rate 0: fine-tuning leaves the weights exactly as loaded, so the final
    // checkpoint shows what init_from put in. A different rng_seed: a fresh init differs.
    transfer_config_ = tmp_.file("transfer.yaml");
    std::ofstream(transfer_config_) << common << R"(model_name: fully_connected_classification
trainer_name: transfer_trainer
rng_seed: 11
num_training_steps: 4
log_eval_steps: 2
optimizer_configs: {optimizer: sgd}
lr_configs: {base_learning_rate: 0.0}
eval_sets: {val: valid, holdout: test}
fewshot:
  shots: [1, 2]
  l2_regs: [0.1, 10.0]
  walk_first: [mnist, 2]
linear_probe:
  num_training_steps: 40
  batch_size: 16
  log_eval_steps: 0
  lr_configs: {base_learning_rate: 0.01}
)";
  }
  RunResult pretrain(const std::string& wd) {
    return run_scenic("train --config " + pretrain_config_ + " --workdir " + wd);
  }
  RunResult transfer(const std::string& wd, const std::string& from, const std::string& extra = "") {
    return run_scenic("train --config " + transfer_config_ + " --workdir " + wd +
                      " --config.init_from.checkpoint_path=" + from + " " + extra);
  }

  TempDir tmp_;
  std::string data_dir_, pretrain_config_, transfer_config_;
};

TEST_F(TransferE2E, InitFromLoadsTheCheckpointAndRunsTransferEvaluations) {
  const auto src = tmp_.file("pre"), wd = tmp_.file("ft");
  auto p = pretrain(src);
  ASSERT_EQ(p.status, 0) << p.output;
  auto r = transfer(wd, src);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "init_from " + src + "/checkpoints/checkpoint_12 (step 12): loaded 4 tensors");

  // Every parameter equals the pre-trained one (lr 0), head included (same shape).
  auto before = params_of(src + "/checkpoints/checkpoint_12");
  auto after = params_of(wd + "/checkpoints/checkpoint_4");
  ASSERT_EQ(before.size(), 4u);
  ASSERT_EQ(after.size(), 4u);
  for (const auto& [k, v] : before) EXPECT_TRUE(torch::equal(v, after.at(k))) << k;

  const auto metrics = read_metrics(wd);
  auto step0 = lines_of(metrics, "train")[0];
  EXPECT_EQ(step0["init_from_loaded"], 4);
  EXPECT_EQ(step0["init_from_reinitialized"], 0);
  // Named eval sets at step 2 and at the end; the final test split as well.
  for (const char* name : {"val", "holdout"}) {
    auto lines = lines_of(metrics, name);
    ASSERT_EQ(lines.size(), 2u) << name;
    EXPECT_EQ(lines[0]["step"], 2);
    EXPECT_EQ(lines[1]["step"], 4);
  }
  auto test = lines_of(metrics, "test");
  ASSERT_EQ(test.size(), 1u);
  // The same weights as the pre-trained model: the same test accuracy (20 examples).
  auto pre_test = lines_of(read_metrics(src), "test");
  ASSERT_EQ(pre_test.size(), 1u);
  EXPECT_DOUBLE_EQ(test[0]["accuracy"].get<double>(), pre_test[0]["accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(lines_of(metrics, "holdout")[1]["accuracy"].get<double>(), test[0]["accuracy"].get<double>());

  // Few-shot at step 2 (fewshot.log_eval_steps defaults to log_eval_steps) and 4.
  auto fewshot = lines_of(metrics, "fewshot");
  ASSERT_EQ(fewshot.size(), 2u) << r.output;
  for (const auto& f : fewshot) {
    for (const char* k : {"z/mnist_1shot", "z/mnist_2shot", "a/mnist_2shot", "zz/mnist_1shot_l2=0.1",
                          "zz/mnist_1shot_l2=10.0", "zz/mnist_2shot_l2=0.1", "zz/mnist_2shot_l2=10.0"}) {
      ASSERT_TRUE(f.contains(k)) << k << " " << f.dump();
      EXPECT_GE(f[k].get<double>(), 0.0) << k;
      EXPECT_LE(f[k].get<double>(), 1.0) << k;
      // 20 test examples: accuracies are multiples of 1/20.
      EXPECT_NEAR(f[k].get<double>() * 20, std::round(f[k].get<double>() * 20), 1e-9) << k;
    }
    const double best = f["z/best_l2_for_2shot_image_eval"];
    EXPECT_TRUE(best == 0.1 || best == 10.0) << best;
    EXPECT_EQ(f["a/mnist_2shot"], f["z/mnist_2shot"]);
    EXPECT_EQ(f["z/mnist_2shot"], f[best == 0.1 ? "zz/mnist_2shot_l2=0.1" : "zz/mnist_2shot_l2=10.0"]);
  }
  // Frozen weights: the same few-shot results at both steps.
  EXPECT_EQ(fewshot[0]["z/mnist_1shot"], fewshot[1]["z/mnist_1shot"]);
  // Linear probe only at the end (log_eval_steps 0).
  auto probe = lines_of(metrics, "linear_eval");
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0]["step"], 4);
  const double acc = probe[0]["linear_eval/mnist_accuracy"];
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_TRUE(probe[0].contains("linear_eval/mnist_loss"));

  // `scenic eval` reads the transfer workdir like any other.
  auto e = run_scenic("eval --workdir " + wd);
  ASSERT_EQ(e.status, 0) << e.output;
}

TEST_F(TransferE2E, SkippedHeadIsReinitializedAndTheRestLoaded) {
  const auto src = tmp_.file("pre"), wd = tmp_.file("ft");
  ASSERT_EQ(pretrain(src).status, 0);
  auto r = transfer(wd, src + "/checkpoints/checkpoint_12",
                    "--config.init_from.skip_regex=^output_projection --config.fewshot.shots=[1] "
                    "--config.fewshot.walk_first=[mnist,1] "
                    "--config.linear_probe.num_training_steps=1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "loaded 2 tensors");
  EXPECT_CONTAINS(r.output, "output_projection.weight [10, 16] (skip_regex)");
  auto before = params_of(src + "/checkpoints/checkpoint_12");
  auto after = params_of(wd + "/checkpoints/checkpoint_4");
  for (const char* k : {"Dense_0.weight", "Dense_0.bias"}) EXPECT_TRUE(torch::equal(before.at(k), after.at(k))) << k;
  // The head is the fresh (lecun-normal) initialisation of this run, not the checkpoint's.
  EXPECT_FALSE(torch::equal(before.at("output_projection.weight"), after.at("output_projection.weight")));
}

TEST_F(TransferE2E, BadInitFromPathIsOneClearError) {
  auto r = transfer(tmp_.file("ft"), tmp_.file("missing"));
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "init_from.checkpoint_path");
  EXPECT_CONTAINS(r.output, "does not exist");
}

}  // namespace
