// End-to-end test of DETR: `scenic train` with the shipped shapes config
// (configs/shapes/detr.yaml), shrunk to a few steps on a few images, must train, write
// the loss metrics and COCO AP metrics for valid and test, a COCO-format detections
// JSON, and resume from its checkpoint.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

namespace fs = std::filesystem;
using scenic::dataset::testing::TempDir;
using scenic::e2e::lines_of;
using scenic::e2e::read_metrics;
using scenic::e2e::run_scenic;

const char* const kShrink =
    " --config.num_training_steps=6 --config.batch_size=4 --config.eval_batch_size=6"
    " --config.dataset_configs.num_eval_examples=8 --config.log_summary_steps=3"
    " --config.log_eval_steps=3 --config.checkpoint_steps=3 --config.lr_configs.steps_per_cycle=6"
    " --config.lr_configs.warmup_steps=2 --config.hidden_dim=16 --config.transformer_qkv_dim=16 --config.transformer_mlp_dim=32"
    " --config.backbone_num_filters=4";

TEST(DetrE2E, TrainsAndWritesCocoMetricsAndDetections) {
  TempDir tmp;
  const std::string config = std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/configs/shapes/detr.yaml";
  const auto wd = tmp.file("run");
  auto r = run_scenic("train --config " + config + " --workdir " + wd + kShrink);
  ASSERT_EQ(r.status, 0) << r.output;

  auto metrics = read_metrics(wd);
  auto train_lines = lines_of(metrics, "train");
  ASSERT_EQ(train_lines.size(), 3u) << r.output;  // step 0 (parameter count), 3, 6
  for (const char* k : {"loss", "loss_class", "loss_bbox", "loss_giou", "class_accuracy", "cardinality_error",
                        "learning_rate", "l2_grads"})
    EXPECT_TRUE(train_lines[2].contains(k)) << k;
  for (const std::string split : {"valid", "test"}) {
    auto lines = lines_of(metrics, split);
    ASSERT_EQ(lines.size(), 1u) << split << "\n" << r.output;
    for (const char* k : {"AP", "AP_50", "AP_75", "AP_small", "AP_medium", "AP_large", "AR_max_1", "AR_max_10",
                          "AR_max_100", "loss", "class_accuracy"}) {
      ASSERT_TRUE(lines[0].contains(k)) << split << " " << k;
      EXPECT_TRUE(lines[0][k].is_number()) << split << " " << k;
    }
    // Every eval image has a shape, so the AP is defined (not -1) and a precision.
    EXPECT_GE(lines[0]["AP_50"].get<double>(), 0.0);
    EXPECT_LE(lines[0]["AP_50"].get<double>(), 1.0);
  }
  EXPECT_EQ(lines_of(metrics, "test")[0]["step"], 6);

  // Detections: 8 images x 10 queries, COCO results format with category ids 1..3.
  std::ifstream in(wd + "/detections_test.json");
  ASSERT_TRUE(in.good());
  auto dets = nlohmann::json::parse(in);
  ASSERT_EQ(dets.size(), 80u);
  for (const auto& d : dets) {
    EXPECT_GE(d["category_id"].get<int>(), 1);
    EXPECT_LE(d["category_id"].get<int>(), 3);
    EXPECT_EQ(d["bbox"].size(), 4u);
    EXPECT_GE(d["score"].get<double>(), 0.0);
  }
  EXPECT_TRUE(fs::exists(wd + "/checkpoints"));

  // Training longer resumes from step 6 (the checkpoint), not from scratch.
  auto r2 = run_scenic("train --config " + config + " --workdir " + wd + kShrink +
                       " --config.num_training_steps=9");
  ASSERT_EQ(r2.status, 0) << r2.output;
  EXPECT_CONTAINS(r2.output, "at step 6");
}

TEST(DetrE2E, ClassificationDataIsRejectedWithAClearError) {
  TempDir tmp;
  const std::string config = std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/configs/shapes/detr.yaml";
  auto r = run_scenic("train --config " + config + " --workdir " + tmp.file("run") +
                      " --config.dataset_configs.task=classification");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "detection");
}

}  // namespace
