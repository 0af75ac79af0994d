// `scenic info` and `scenic bench` through the real binary: the CLI wiring, the
// published parameter count of ViT-Ti/16, the JSON of a tiny bench run, and errors.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/testing.h"
#include "tests/e2e_util.h"

namespace {

using namespace scenic::e2e;

const std::string kConfig =
    std::string(" --config ") + SCENIC_SOURCE_DIR + "/scenic/projects/baselines/configs/fashion_mnist/vit.yaml";

TEST(InfoE2E, ViTTi16ParameterCountAndFlops) {
  // ViT-Ti/16 at 224 with 1000 classes: 5,717,416 parameters (anchors.md), no dataset
  // needed with --input_shape. Forward multiply-adds (N = 197 tokens, D = 192, M = 768,
  // L = 12): patch embed 196*192*768 = 28,901,376; per layer 4*N*D^2 + 2*N^2*D + 2*N*D*M
  // = 29,048,832 + 14,902,656 + 58,097,664 = 102,049,152, x 12 = 1,224,589,824;
  // head 192*1000 = 192,000; total 1,253,683,200.
  const auto r = run_scenic(
      "info" + kConfig +
      " --input_shape 3,224,224 --num_classes 1000 --config.model.patches.size=[16,16]"
      " --config.model.hidden_size=192 --config.model.mlp_dim=768 --config.model.num_heads=3"
      " --config.model.num_layers=12");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "model vit_classification: input [-1, 3, 224, 224], 1000 classes");
  EXPECT_CONTAINS(r.output, "| Transformer.encoderblock_11.MlpBlock_3.Dense_1.weight");
  EXPECT_CONTAINS(r.output, "Total: 5,717,416\n");
  EXPECT_CONTAINS(r.output, "GFLOPs per example (forward, batch 1, multiply-add = 1 FLOP): 1.2537 (1,253,683,200 multiply-adds)");
}

// The config that reaches the ViT goal (vit_long.yaml): patch 4 (N = 49 tokens), D = 128,
// M = 256, 4 layers, GAP head and fixed 2-D sin-cos position embeddings. Parameters:
// vit.yaml's 540,170 - patch-7 embed 6,400 - learned pos-emb 17*128 - [CLS] 128 + patch-4
// embed 16*128+128 = 533,642. Multiply-adds: embed 49*16*128 = 100,352; per layer
// 4*N*D^2 + 2*N^2*D + 2*N*D*M = 3,211,264 + 614,656 + 3,211,264, x 4 = 28,148,736; head
// 1,280; total 28,250,368.
TEST(InfoE2E, VitLongConfigParameterCountAndFlops) {
  const auto r = run_scenic(std::string("info --config ") + SCENIC_SOURCE_DIR +
                            "/scenic/projects/baselines/configs/fashion_mnist/vit_long.yaml");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "Total: 533,642\n");
  EXPECT_CONTAINS(r.output, "(28,250,368 multiply-adds)");
}

TEST(BenchE2E, JsonFieldsAndErrors) {
  const auto r = run_scenic("bench" + kConfig +
                            " --input_shape 1,28,28 --num_classes 10 --steps 2 --warmup_steps 1 --batch_size 8"
                            " --matmul_size 64 --json --config.model.num_layers=1");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j.at("mode"), "train");
  EXPECT_EQ(j.at("batch_size"), 8);
  EXPECT_EQ(j.at("steps"), 2);
  EXPECT_GT(j.at("examples_per_sec").get<double>(), 0);
  EXPECT_GT(j.at("matmul_gflops").get<double>(), 0);
  EXPECT_GT(j.at("peak_rss_mib").get<double>(), 0);
  // The config's ViT with one block: 540,170 - 3 blocks of 132,480 = 142,730 parameters
  // (a block: 2 LNs 512 + q/k/v/out 4*(128*128+128) = 66,048 + MLP 65,920).
  EXPECT_EQ(j.at("num_params"), 142'730);

  auto e = run_scenic("bench" + kConfig + " --input_shape 1,28,28");
  EXPECT_EQ(e.status, 1);
  EXPECT_CONTAINS(e.output, "error: --input_shape needs --num_classes");
  e = run_scenic("bench" + kConfig + " --mode infer");
  EXPECT_NE(e.status, 0);
  EXPECT_CONTAINS(e.output, "--mode");
  e = run_scenic("bench" + kConfig + " --batch_size 0");  // not a silent fall-back to the config's
  EXPECT_NE(e.status, 0);
  EXPECT_CONTAINS(e.output, "--batch_size");
  e = run_scenic("bench" + kConfig + " --input_shape 1,28,28 --num_classes 10 --config.batch_size=0");
  EXPECT_EQ(e.status, 1);
  EXPECT_CONTAINS(e.output, "config key 'batch_size' must be >= 1, got 0");
}

// `gemm_backend` (layers/dense.h): both libraries run the same step to the same loss
// from the same seed, the JSON says which ran, and a wrong value names the key.
TEST(BenchE2E, GemmBackendKey) {
  const std::string common = "bench" + kConfig +
                             " --input_shape 1,28,28 --num_classes 10 --steps 2 --warmup_steps 1 --batch_size 8"
                             " --matmul_size 64 --json --config.model.num_layers=1 --config.num_threads=1";
  double loss[2] = {0, 0};
  int i = 0;
  for (const std::string backend : {"aten", "onednn"}) {
    const auto r = run_scenic(common + " --config.gemm_backend=" + backend);
    ASSERT_EQ(r.status, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    EXPECT_EQ(j.at("gemm_backend"), backend);
    loss[i++] = j.at("last_loss").get<double>();
  }
  EXPECT_GT(loss[0], 0.1);
  EXPECT_NEAR(loss[1], loss[0], 1e-4 * loss[0]);
  // Without the key, `auto`: oneDNN on AMD (read here from /proc/cpuinfo, not CPUID).
  const auto d = run_scenic(common);
  ASSERT_EQ(d.status, 0) << d.output;
  std::ifstream cpuinfo("/proc/cpuinfo");
  const std::string info((std::istreambuf_iterator<char>(cpuinfo)), std::istreambuf_iterator<char>());
  const bool amd = info.find("AuthenticAMD") != std::string::npos;
  EXPECT_EQ(nlohmann::json::parse(d.output.substr(d.output.find('{'))).at("gemm_backend"), amd ? "onednn" : "aten");
  const auto e = run_scenic(common + " --config.gemm_backend=mkl");
  EXPECT_NE(e.status, 0);
  EXPECT_CONTAINS(e.output, "config key 'gemm_backend': expected 'auto', 'aten' or 'onednn', got 'mkl'");
}

// `eval_split_batch` and `train_split_batch` (train_lib/batch_split.h): on by default, a
// batch is split over the intra-op threads (batch_split_test.cc checks the outputs and
// gradients); the JSON says how it ran.
TEST(BenchE2E, SplitBatchKeys) {
  const std::string common = "bench" + kConfig +
                             " --input_shape 1,28,28 --num_classes 10 --steps 2 --warmup_steps 1"
                             " --matmul_size 64 --json --config.model.num_layers=1 --config.num_threads=2";
  auto split_of = [&](const std::string& extra, const std::string& batch = " --batch_size 8") {
    const auto r = run_scenic(common + batch + extra);
    EXPECT_EQ(r.status, 0) << r.output;
    return nlohmann::json::parse(r.output.substr(r.output.find('{'))).at("batch_split").get<int64_t>();
  };
  EXPECT_EQ(split_of(" --mode eval"), 2);
  EXPECT_EQ(split_of(" --mode eval --config.eval_split_batch=false"), 1);
  EXPECT_EQ(split_of(" --mode eval --config.num_threads=1"), 1);
  EXPECT_EQ(split_of(" --mode train"), 2);
  EXPECT_EQ(split_of(" --mode train --config.train_split_batch=false"), 1);
  EXPECT_EQ(split_of(" --mode train --config.eval_split_batch=false"), 2);
  EXPECT_EQ(split_of(" --mode train", " --batch_size 7"), 1);  // 7 is not divisible by 2
  const auto e = run_scenic(common + " --batch_size 8 --mode eval --config.eval_split_batch=sometimes");
  EXPECT_NE(e.status, 0);
  EXPECT_CONTAINS(e.output, "eval_split_batch");
  const auto t = run_scenic(common + " --batch_size 8 --mode train --config.train_split_batch=3");
  EXPECT_NE(t.status, 0);
  EXPECT_CONTAINS(t.output, "train_split_batch");
}

}  // namespace
