// End-to-end test of segmentation_trainer: simple_cnn_segmentation on small generated
// `shapes` segmentation data (background + 3 shape classes) trains, writes pixel
// accuracy while training and mean IoU / per-class IoU over the whole eval set, and
// beats what any constant prediction can reach.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <fstream>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"
#include "tests/e2e_util.h"

namespace {

using scenic::dataset::testing::TempDir;
using scenic::e2e::lines_of;
using scenic::e2e::read_metrics;
using scenic::e2e::run_scenic;

constexpr const char* kConfig = R"(model_name: simple_cnn_segmentation
trainer_name: segmentation_trainer
dataset_name: shapes
dataset_configs: {task: segmentation, image_size: 16, num_train_examples: 512, num_eval_examples: 25, max_shapes: 2}
rng_seed: 0
batch_size: 16
eval_batch_size: 10
num_training_steps: 150
log_summary_steps: 50
log_eval_steps: 75
checkpoint_steps: 75
num_threads: 1
model: {num_filters: [16, 16, 16], kernel_sizes: [3, 3, 3]}
optimizer_configs: {optimizer: adam}
lr_configs: {base_learning_rate: 0.003}
)";

const char* const kClasses[] = {"iou_per_class/00_background", "iou_per_class/01_rectangle",
                                "iou_per_class/02_ellipse", "iou_per_class/03_triangle"};

TEST(SegmentationE2E, TrainsAndReportsGlobalMeanIoU) {
  TempDir tmp;
  const auto config = tmp.file("config.yaml"), wd = tmp.file("wd");
  std::ofstream(config) << kConfig;
  auto r = run_scenic("train --config " + config + " --workdir " + wd);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto metrics = read_metrics(wd);

  auto train = lines_of(metrics, "train");
  ASSERT_EQ(train.size(), 4u) << r.output;  // step 0 (parameter count), 50, 100, 150
  for (size_t i = 1; i < train.size(); ++i) {
    const double acc = train[i]["accuracy"];  // pixel accuracy
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    EXPECT_TRUE(train[i].contains("loss") && train[i].contains("learning_rate"));
  }
  EXPECT_GT(train.back()["accuracy"].get<double>(), train[1]["accuracy"].get<double>());

  auto valid = lines_of(metrics, "valid");
  ASSERT_EQ(valid.size(), 1u);
  EXPECT_EQ(valid[0]["step"], 75);
  auto test = lines_of(metrics, "test");
  ASSERT_EQ(test.size(), 1u);
  const auto& t = test[0];
  EXPECT_EQ(t["step"], 150);
  // Every class shows up in 25 images, so mean IoU is the plain mean of the four.
  double sum = 0;
  for (const char* k : kClasses) {
    ASSERT_TRUE(t.contains(k)) << t.dump();
    const double iou = t[k];
    EXPECT_GE(iou, 0.0);
    EXPECT_LE(iou, 1.0);
    sum += iou;
  }
  const double miou = t["mean_iou"];
  EXPECT_NEAR(miou, sum / 4, 1e-9);
  // A constant prediction c has IoU(c) = share of c's pixels and 0 elsewhere, so its
  // mean IoU is at most 1/4 (background alone contributes at most 1/4 to the mean).
  // The trained CNN separates shapes from the (dark) background almost perfectly and
  // gets some shape classes right; telling rectangles, ellipses and triangles apart
  // pixel by pixel needs more context than three 3x3 layers see, so after this short
  // run mean IoU is ~0.38 here, not near 1.
  EXPECT_GT(miou, 0.3) << t.dump();
  EXPECT_GT(t["iou_per_class/00_background"].get<double>(), 0.9) << t.dump();
  // Pixel accuracy on test counts real pixels only (the last batch of 10 has 5 padded).
  EXPECT_GT(t["accuracy"].get<double>(), 0.8);
  EXPECT_TRUE(std::ifstream(wd + "/checkpoints/checkpoint_150").good());

  // `scenic eval` recomputes the same test metrics, global mean IoU included.
  auto e = run_scenic("eval --workdir " + wd);
  ASSERT_EQ(e.status, 0) << e.output;
  const auto again = lines_of(read_metrics(wd), "test");
  ASSERT_EQ(again.size(), 2u);
  for (const char* k : {"mean_iou", "accuracy", "iou_per_class/01_rectangle"})
    EXPECT_NEAR(again[1][k].get<double>(), t[k].get<double>(), 1e-6) << k;
}

TEST(SegmentationE2E, ResumeMatchesAnUninterruptedRun) {
  TempDir tmp;
  const auto config = tmp.file("config.yaml"), full = tmp.file("full"), split = tmp.file("split");
  std::ofstream(config) << kConfig;
  const std::string shorter = " --config.num_training_steps=60 --config.log_eval_steps=30 --config.checkpoint_steps=30";
  ASSERT_EQ(run_scenic("train --config " + config + " --workdir " + full + shorter).status, 0);
  auto first = run_scenic("train --config " + config + " --workdir " + split + shorter +
                          " --config.num_training_steps=30");
  ASSERT_EQ(first.status, 0) << first.output;
  auto second = run_scenic("train --config " + config + " --workdir " + split + shorter);
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_CONTAINS(second.output, "resumed from");
  auto a = lines_of(read_metrics(full), "test").back();
  auto b = lines_of(read_metrics(split), "test").back();
  EXPECT_EQ(b["step"], 60);
  // Same data order, restored Adam state, one thread: the same model, the same IoUs.
  for (const char* k : {"mean_iou", "accuracy", "iou_per_class/01_rectangle"})
    EXPECT_DOUBLE_EQ(a[k].get<double>(), b[k].get<double>()) << k;
}

// Data-parallel: 2 Gloo processes (global batch 16 = 2 x 8, each evaluating half of the
// split) give the one-process eval metrics, mean IoU from the summed confusion matrices.
// SGD, since Adam turns float-rounding noise in near-zero gradients into full steps.
TEST(SegmentationE2E, TwoProcessesMatchOneProcess) {
  TempDir tmp;
  const auto config = tmp.file("config.yaml"), one = tmp.file("one"), two = tmp.file("two");
  std::ofstream(config) << kConfig;
  const std::string opts = " --config.num_training_steps=40 --config.log_eval_steps=20 --config.checkpoint_steps=40"
                           " --config.optimizer_configs.optimizer=sgd --config.optimizer_configs.momentum=0.9"
                           " --config.lr_configs.base_learning_rate=0.1";
  auto r1 = run_scenic("train --config " + config + " --workdir " + one + opts);
  ASSERT_EQ(r1.status, 0) << r1.output;
  const int port = 21000 + static_cast<int>(::getpid() % 4000);
  auto r2 = run_scenic("launch --nproc_per_node 2 --master_port " + std::to_string(port) + " -- " + SCENIC_BINARY +
                       " train --config " + config + " --workdir " + two + opts);
  ASSERT_EQ(r2.status, 0) << r2.output;
  for (const char* split : {"valid", "test"}) {
    auto a = lines_of(read_metrics(one), split).back();
    auto b = lines_of(read_metrics(two), split).back();
    // Pixel-weighted metrics match. (Scenic's segmentation "loss" metric is a mean of
    // per-batch means, normalizer 1 per batch, so it depends on how the split is cut
    // into batches, which differs between 1 and 2 processes; it is not compared.)
    for (const char* k : {"mean_iou", "accuracy", "iou_per_class/01_rectangle"})
      EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), 1e-5) << split << " " << k;
  }
}

TEST(SegmentationE2E, ClassificationModelIsAClearError) {
  TempDir tmp;
  const auto config = tmp.file("config.yaml");
  std::ofstream(config) << kConfig;
  auto r = run_scenic("train --config " + config + " --workdir " + tmp.file("wd") +
                      " --config.model_name=simple_cnn_classification");
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "segmentation_trainer needs a segmentation model");
}

}  // namespace
