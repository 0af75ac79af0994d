// The classification trainer's options end to end through `scenic train`: gradient
// accumulation equals the big batch, EMA weights are what evaluation (and `scenic
// eval`) use, mixup/CutMix and bf16 autocast run, TensorBoard event files hold the same
// scalars as metrics.jsonl (read back by the real tensorboard package), `scenic plot`
// draws the curves, and `cuda_graph` is refused off CUDA (and, on a GPU, trains as the
// eager step does).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "scenic/common_lib/npz.h"
#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

namespace fs = std::filesystem;
using scenic::testing::TempDir;
using namespace scenic::e2e;

std::map<std::string, torch::Tensor> params_of(const std::string& checkpoint) {
  torch::serialize::InputArchive archive, params;
  archive.load_from(checkpoint);
  archive.read("params", params);
  std::map<std::string, torch::Tensor> out;
  for (const auto& k : params.keys()) params.read(k, out[k]);
  return out;
}

class TrainerFeaturesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto data = tmp_.file("data");
    fs::create_directories(data);
    scenic::dataset::testing::write_fake_mnist(data, 64, 20, /*gz=*/false);
    config_ = tmp_.file("config.yaml");
    std::ofstream(config_) << R"(model_name: fully_connected_classification
trainer_name: classification_trainer
dataset_name: mnist
dataset_configs: {data_dir: )" << data << R"(}
rng_seed: 1
num_threads: 1
batch_size: 8
num_training_steps: 10
log_summary_steps: 5
log_eval_steps: 5
model: {hid_sizes: [16]}
optimizer_configs: {optimizer: adam}
lr_configs: {learning_rate_schedule: compound, factors: constant, base_learning_rate: 0.01}
)";
  }
  RunResult train(const std::string& wd, const std::string& extra = "") {
    return run_scenic("train --config " + config_ + " --workdir " + wd + " " + extra);
  }
  TempDir tmp_;
  std::string config_;
};

TEST_F(TrainerFeaturesE2E, GradientAccumulationEqualsTheBigBatch) {
  const auto one = tmp_.file("one"), four = tmp_.file("four");
  ASSERT_EQ(train(one).status, 0);
  auto r = train(four, "--config.accum_steps=4");
  ASSERT_EQ(r.status, 0) << r.output;
  auto a = params_of(one + "/checkpoints/checkpoint_10"), b = params_of(four + "/checkpoints/checkpoint_10");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_TRUE(torch::allclose(v, b.at(k), 1e-5, 1e-6)) << k;
  // And accumulation is not a no-op: a different batch size does change the result.
  const auto small = tmp_.file("small");
  ASSERT_EQ(train(small, "--config.batch_size=2").status, 0);
  EXPECT_FALSE(torch::allclose(a.begin()->second, params_of(small + "/checkpoints/checkpoint_10").begin()->second));
  EXPECT_NE(train(tmp_.file("bad"), "--config.accum_steps=3").status, 0);  // 8 % 3 != 0
}

TEST_F(TrainerFeaturesE2E, EmaWeightsAreEvaluatedAndRestoredByScenicEval) {
  const auto wd = tmp_.file("ema");
  auto r = train(wd, "--config.ema.decay=0.8 --config.ema.warmup=true");
  ASSERT_EQ(r.status, 0) << r.output;
  auto test = lines_of(read_metrics(wd), "test");
  ASSERT_EQ(test.size(), 1u);
  // The EMA differs from the trained weights, so evaluating the raw weights would give
  // another loss; `scenic eval` must reproduce the EMA's test loss.
  auto e = run_scenic("eval --workdir " + wd);
  ASSERT_EQ(e.status, 0) << e.output;
  EXPECT_CONTAINS(e.output, "evaluating the EMA weights");
  auto after = lines_of(read_metrics(wd), "test");
  ASSERT_EQ(after.size(), 2u);
  EXPECT_NEAR(after[1]["loss"].get<double>(), test[0]["loss"].get<double>(), 1e-6);
  const auto plain = tmp_.file("plain");
  ASSERT_EQ(train(plain).status, 0);
  EXPECT_GT(std::abs(lines_of(read_metrics(plain), "test")[0]["loss"].get<double>() - test[0]["loss"].get<double>()),
            1e-6);
}

TEST_F(TrainerFeaturesE2E, MixupCutmixAndBf16AutocastRun) {
  const auto wd = tmp_.file("mix");
  auto r = train(wd, "--config.mixup.alpha=0.4 --config.mixup.cutmix_alpha=1.0 --config.autocast_dtype=bfloat16");
  ASSERT_EQ(r.status, 0) << r.output;
  auto train_lines = lines_of(read_metrics(wd), "train");
  ASSERT_EQ(train_lines.size(), 3u);  // step 0 (parameter count), 5, 10
  EXPECT_TRUE(std::isfinite(train_lines[2]["loss"].get<double>()));
  auto bad = train(tmp_.file("bad"), "--config.autocast_dtype=fp8");
  EXPECT_NE(bad.status, 0);
  EXPECT_CONTAINS(bad.output, "autocast_dtype");
}

TEST_F(TrainerFeaturesE2E, TensorBoardHoldsTheMetricsAndPlotDrawsThem) {
  const auto wd = tmp_.file("tb");
  ASSERT_EQ(train(wd).status, 0);
  const std::string cmd = std::string(SCENIC_SOURCE_DIR) + "/.venv/bin/python " + SCENIC_SOURCE_DIR +
                          "/tools/read_tb_events.py " + wd;
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  ASSERT_EQ(::pclose(pipe), 0) << out;
  auto tb = nlohmann::json::parse(out);
  auto metrics = lines_of(read_metrics(wd), "train");
  auto loss = tb["scalars"]["train_loss"];
  ASSERT_EQ(loss.size(), 2u) << out.substr(0, 500);
  EXPECT_EQ(loss[1][0], 10);
  EXPECT_NEAR(loss[1][1].get<double>(), metrics.back()["loss"].get<double>(), 1e-6);
  EXPECT_TRUE(tb["scalars"].contains("valid_accuracy"));
  EXPECT_TRUE(tb["scalars"].contains("test_accuracy"));
  EXPECT_TRUE(tb["histograms"].contains("params/Dense_0.weight") || !tb["histograms"].empty());
  EXPECT_EQ(tb["images"]["train_inputs"].size(), 1u);
  EXPECT_CONTAINS(tb["texts"]["config"][0][1].get<std::string>(), "fully_connected_classification");

  auto p = run_scenic("plot --workdir " + wd);
  ASSERT_EQ(p.status, 0) << p.output;
  EXPECT_TRUE(fs::exists(wd + "/curves.png"));
  auto bad = run_scenic("plot --workdir " + wd + " --metrics nope");
  EXPECT_NE(bad.status, 0);
  EXPECT_CONTAINS(bad.output, "no metric 'nope'");
}

TEST_F(TrainerFeaturesE2E, CudaGraphIsRefusedOnTheCpuAndMatchesEagerOnAGpu) {
  const std::string adamw = "--config.optimizer_configs.optimizer=adamw --config.optimizer_configs.weight_decay=0.1 ";
  auto cpu = train(tmp_.file("cpu"), adamw + "--config.device=cpu --config.cuda_graph=true");
  EXPECT_NE(cpu.status, 0);
  EXPECT_CONTAINS(cpu.output, "config key 'cuda_graph': CUDA graphs need a CUDA device");
  auto sgd = train(tmp_.file("sgd"), "--config.device=cuda --config.cuda_graph=true");
  EXPECT_NE(sgd.status, 0);  // no GPU here, or (on a GPU) adam has no graph-safe update
  if (!torch::cuda::is_available()) GTEST_SKIP() << "the captured run needs a GPU";
  EXPECT_CONTAINS(sgd.output, "needs optimizer_configs.optimizer 'adamw'");
  const auto eager = tmp_.file("eager"), graph = tmp_.file("graph");
  auto e = train(eager, adamw + "--config.device=cuda");
  ASSERT_EQ(e.status, 0) << e.output;
  auto g = train(graph, adamw + "--config.device=cuda --config.cuda_graph=true");
  ASSERT_EQ(g.status, 0) << g.output;
  auto a = params_of(eager + "/checkpoints/checkpoint_10"), b = params_of(graph + "/checkpoints/checkpoint_10");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) EXPECT_TRUE(torch::allclose(v, b.at(k), 1e-4, 1e-5)) << k;
  EXPECT_NEAR(lines_of(read_metrics(graph), "test")[0]["loss"].get<double>(),
              lines_of(read_metrics(eager), "test")[0]["loss"].get<double>(), 1e-4);
}

// Transfer from a big_vision/AugReg-style .npz (the ViT fixture written by real Flax,
// tools/fixtures/make_vit_flax_fixture.py) into a ViT with another number of classes,
// on the generated `shapes` data; learning rate 0, so the checkpoint after one step
// holds exactly the imported weights (and the re-initialized head).
TEST(InitFromE2E, ImportsAnAugRegNpzAndReinitializesTheHead) {
  TempDir tmp;
  const std::string npz = SCENIC_SOURCE_DIR "/scenic/projects/baselines/testdata/vit_augreg.npz";
  const auto config = tmp.file("config.yaml");
  std::ofstream(config) << R"(model_name: vit_classification
trainer_name: classification_trainer
dataset_name: shapes
dataset_configs: {task: classification, image_size: 16, num_train_examples: 16, num_eval_examples: 4}
rng_seed: 0
batch_size: 4
num_training_steps: 1
log_eval_steps: 1
model: {patches: {size: [4, 4]}, hidden_size: 32, mlp_dim: 64, num_heads: 2, num_layers: 2, classifier: token}
optimizer_configs: {optimizer: sgd}
lr_configs: {learning_rate_schedule: compound, factors: constant, base_learning_rate: 0.0}
init_from: {checkpoint_path: )" << npz << R"(, format: npz}
)";
  const auto wd = tmp.file("wd");
  auto r = run_scenic("train --config " + config + " --workdir " + wd);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "initialized from " + npz);
  auto ours = params_of(wd + "/checkpoints/checkpoint_1");
  auto theirs = scenic::common::read_npz(npz);
  // Conv kernel HWIO -> OIHW; Dense kernel [in, out] -> Linear weight [out, in].
  EXPECT_TRUE(torch::equal(ours.at("embedding.weight"), theirs.at("embedding/kernel").permute({3, 2, 0, 1})));
  EXPECT_TRUE(torch::equal(ours.at("Transformer.encoderblock_1.MlpBlock_3.Dense_0.weight"),
                           theirs.at("Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel").t()));
  // The head had 10 classes; shapes has 3: re-initialized (Scenic zero-initializes it).
  ASSERT_EQ(ours.at("output_projection.weight").size(0), 3);
  EXPECT_EQ(ours.at("output_projection.weight").abs().sum().item<double>(), 0.0);
}

}  // namespace
