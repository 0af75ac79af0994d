// Tests for SegmentationModel (Scenic's segmentation_model.py, inventory §2.2): pixel
// cross-entropy over real pixels (smoothing, class re-balancing, L2), the accuracy and
// loss metric pairs, and the global mean-IoU path (batch confusion matrices summed over
// an eval set, then global_metrics).
//
// The tiny batch: logits NCHW [B=2, K=3, H=1, W=2] whose pixels are
//   (0, 0, 0): z = [1, 2, 3],  label 2 -> CE log(1 + e^-1 + e^-2) = 0.407605964, correct
//   (0, 0, 1): z = [1, 0, -1], label 1 -> CE 1.407605964, predicted 0
//   (1, 0, 0): z = [3, 2, 1],  label 0 -> CE 0.407605964, correct
//   (1, 0, 1): garbage logits, ignore label -1, batch_mask 0
#include "scenic/model_lib/base_models/segmentation_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

constexpr double kTol = 1e-6;
constexpr double kLse = 0.407605964;

// Identity network with a [2, 2] kernel (sum of squares 30) and a [2] bias (not in L2).
class PixelNet : public Network {
 public:
  PixelNet() {
    kernel = register_parameter("kernel", torch::tensor({{1.f, 2.f}, {3.f, 4.f}}));
    bias = register_parameter("bias", torch::tensor({10.f, 20.f}));
  }
  torch::Tensor forward(const torch::Tensor& inputs) override { return inputs; }
  torch::Tensor kernel, bias;
};

std::unique_ptr<NetworkModel<SegmentationModel>> make_model(const std::string& yaml,
                                                            std::vector<double> proportions = {},
                                                            std::vector<std::string> names = {}) {
  dataset::MetaData meta;
  meta.num_classes = 3;
  meta.input_shape = {-1, 3, 1, 2};
  meta.class_proportions = std::move(proportions);
  meta.class_names = std::move(names);
  auto fn = [](const common::ConfigDict&, const dataset::MetaData&) { return std::make_shared<PixelNet>(); };
  return std::make_unique<NetworkModel<SegmentationModel>>(common::ConfigDict::from_yaml_string(yaml), meta,
                                                           fn, "hidden: 4\n");
}

torch::Tensor logits() {
  // [B, H, W, K] written pixel by pixel, then moved to NCHW.
  auto nhwk = torch::tensor({{{{1.f, 2.f, 3.f}, {1.f, 0.f, -1.f}}}, {{{3.f, 2.f, 1.f}, {-1e30f, 1e30f, 0.f}}}});
  return nhwk.permute({0, 3, 1, 2}).contiguous();  // [2, 3, 1, 2]
}
dataset::Batch batch() {
  return {{"label", torch::tensor({{{2, 1}}, {{0, -1}}}, torch::kLong)},
          {"batch_mask", torch::tensor({{{1.f, 1.f}}, {{1.f, 0.f}}})}};
}

TEST(SegmentationModel, LossIsMeanOverRealPixels) {
  auto model = make_model("");
  auto loss = model->loss_function(logits(), batch(), nullptr);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  // (0.4076 + 1.4076 + 0.4076) / 3 real pixels.
  EXPECT_NEAR(loss.item<double>(), (1.0 + 3 * kLse) / 3, kTol);
  // With label smoothing 0.1 each pixel's CE is 0.9 CE + 0.1 * 1.407605964
  // (the mean -log p of any permutation of (1, 2, 3)): [0.1 + kLse, 1 + kLse, 0.1 + kLse].
  auto smoothed = make_model("label_smoothing: 0.1\n");
  EXPECT_NEAR(smoothed->loss_function(logits(), batch(), nullptr).item<double>(), (1.2 + 3 * kLse) / 3, kTol);
  // L2 over matrices only: + 0.5 * 0.1 * 30.
  auto l2 = make_model("l2_decay_factor: 0.1\n");
  auto net = l2->build_network();
  EXPECT_NEAR(l2->loss_function(logits(), batch(), net.get()).item<double>(), (1.0 + 3 * kLse) / 3 + 1.5, 1e-5);
}

TEST(SegmentationModel, ClassRebalancingWeights) {
  // w = 1, proportions [2, 1, 1] -> [0.5, 0.25, 0.25]; 1/p = [2, 4, 4] (sum 10);
  // scaled to sum 3: [0.6, 1.2, 1.2].
  auto full = make_model("class_rebalancing_factor: 1.0\n", {2.0, 1.0, 1.0});
  auto lw = full->label_weights();
  ASSERT_TRUE(lw.defined());
  EXPECT_TRUE(torch::allclose(lw, torch::tensor({0.6f, 1.2f, 1.2f})));
  // Pixel labels 2, 1, 0 are weighted 1.2, 1.2, 0.6; still divided by 3 real pixels.
  EXPECT_NEAR(full->loss_function(logits(), batch(), nullptr).item<double>(),
              (1.2 * kLse + 1.2 * (1 + kLse) + 0.6 * kLse) / 3, kTol);
  // w = 0.5: p = 0.5 p + 0.5 = [0.75, 0.625, 0.625]; 1/p = [4/3, 1.6, 1.6] (sum 68/15);
  // x 3 / sum = [0.882352941, 1.058823529, 1.058823529].
  auto half = make_model("class_rebalancing_factor: 0.5\n", {2.0, 1.0, 1.0});
  EXPECT_TRUE(torch::allclose(half->label_weights(), torch::tensor({0.882352941f, 1.058823529f, 1.058823529f})));
  // Off (0 or absent): no weights.
  EXPECT_FALSE(make_model("class_rebalancing_factor: 0\n", {2.0, 1.0, 1.0})->label_weights().defined());
  // Misconfigurations are reported.
  EXPECT_CONTAINS(testing::error_of([] { make_model("class_rebalancing_factor: 0.5\n"); }), "class_proportions");
  EXPECT_CONTAINS(testing::error_of([] { make_model("class_rebalancing_factor: 1.5\n", {1.0, 1.0, 1.0}); }),
                  "[0, 1]");
  auto wrong_k = make_model("class_rebalancing_factor: 1.0\n", {1.0, 1.0});
  EXPECT_CONTAINS(testing::error_of([&] { wrong_k->loss_function(logits(), batch(), nullptr); }), "2 entries");
}

TEST(SegmentationModel, MetricsAccuracyOverPixelsAndMeanLoss) {
  auto model = make_model("label_smoothing: 0.1\nclass_rebalancing_factor: 1.0\n", {2.0, 1.0, 1.0});
  auto metrics = model->get_metrics_fn("validation")(logits(), batch());
  ASSERT_EQ(metrics.size(), 2u);
  // 2 of 3 real pixels correct.
  EXPECT_DOUBLE_EQ(metrics["accuracy"].first.item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(metrics["accuracy"].second.item<double>(), 3.0);
  // The loss metric: mean pixel CE without smoothing or label weights, normalizer 1.
  EXPECT_NEAR(metrics["loss"].first.item<double>(), (1.0 + 3 * kLse) / 3, kTol);
  EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 1.0);
  // Without a mask every pixel counts: a 1-image batch of the first two pixels.
  dataset::Batch unmasked{{"label", torch::tensor({{{2, 1}}}, torch::kLong)}};
  auto m2 = model->get_metrics_fn("train")(logits().narrow(0, 0, 1), unmasked);
  EXPECT_DOUBLE_EQ(m2["accuracy"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(m2["accuracy"].second.item<double>(), 2.0);
  EXPECT_NEAR(m2["loss"].first.item<double>(), (1.0 + 2 * kLse) / 2, kTol);
}

TEST(SegmentationModel, OneHotLabelsAreNchwLikeTheLogits) {
  dataset::MetaData meta;
  meta.num_classes = 3;
  meta.target_is_onehot = true;
  auto fn = [](const common::ConfigDict&, const dataset::MetaData&) { return std::make_shared<PixelNet>(); };
  NetworkModel<SegmentationModel> model(common::ConfigDict(), meta, fn, "hidden: 4\n");
  auto one_hot = torch::one_hot(torch::tensor({{{2, 1}}, {{0, 0}}}, torch::kLong), 3)
                     .permute({0, 3, 1, 2}).to(torch::kFloat32);  // [2, 3, 1, 2]
  dataset::Batch b{{"label", one_hot}, {"batch_mask", torch::tensor({{{1.f, 1.f}}, {{1.f, 0.f}}})}};
  EXPECT_NEAR(model.loss_function(logits(), b, nullptr).item<double>(), (1.0 + 3 * kLse) / 3, kTol);
  EXPECT_TRUE(torch::equal(model.batch_confusion_matrix(logits(), b),
                           make_model("")->batch_confusion_matrix(logits(), batch())));
}

TEST(SegmentationModel, BadShapesAreReported) {
  auto model = make_model("");
  EXPECT_CONTAINS(testing::error_of([&] { model->loss_function(logits().flatten(2), batch(), nullptr); }),
                  "[B, K, H, W]");
  dataset::Batch wrong{{"label", torch::zeros({2, 2, 1}, torch::kLong)}};
  EXPECT_CONTAINS(testing::error_of([&] { model->loss_function(logits(), wrong, nullptr); }), "[B, H, W]");
  dataset::Batch example_mask{{"label", torch::zeros({2, 1, 2}, torch::kLong)}, {"batch_mask", torch::ones({2})}};
  EXPECT_CONTAINS(testing::error_of([&] { model->get_metrics_fn("test")(logits(), example_mask); }),
                  "pixel mask");
}

TEST(SegmentationModel, GlobalMeanIouFromAccumulatedConfusionMatrices) {
  auto model = make_model("", {}, {"road", "car", "sky"});
  // Real pixels (true -> predicted): 2 -> 2, 1 -> 0, 0 -> 0; the masked one is left out.
  auto cm = model->batch_confusion_matrix(logits(), batch());
  EXPECT_EQ(cm.dtype(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(cm, torch::tensor({{1., 0., 0.}, {1., 0., 0.}, {0., 0., 1.}}, torch::kFloat64)));
  // Accumulate a second eval batch: one image whose two pixels are 1 -> 1 and 1 -> 0.
  auto z2 = torch::tensor({{{{0.f, 5.f, 0.f}, {5.f, 0.f, 0.f}}}}).permute({0, 3, 1, 2}).contiguous();
  dataset::Batch b2{{"label", torch::tensor({{{1, 1}}}, torch::kLong)}, {"batch_mask", torch::ones({1, 1, 2})}};
  auto total = cm + model->batch_confusion_matrix(z2, b2);
  // total = [[1, 0, 0], [2, 1, 0], [0, 0, 1]]:
  //   class 0: 1 / (1 + 3 - 1) = 1/3;  class 1: 1 / (3 + 1 - 1) = 1/3;  class 2: 1
  //   mean = 5/9
  auto metrics = model->global_metrics(total);
  ASSERT_EQ(metrics.size(), 4u);
  EXPECT_NEAR(metrics.at("mean_iou"), 5.0 / 9.0, 1e-12);
  EXPECT_NEAR(metrics.at("iou_per_class/00_road"), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(metrics.at("iou_per_class/01_car"), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(metrics.at("iou_per_class/02_sky"), 1.0, 1e-12);
  // Without class names the tags are only numbered; a stacked [N, K, K] is summed first.
  auto unnamed = SegmentationModel::global_metrics(torch::stack({cm, total - cm}), {});
  EXPECT_NEAR(unnamed.at("mean_iou"), 5.0 / 9.0, 1e-12);
  EXPECT_TRUE(unnamed.count("iou_per_class/02"));
  EXPECT_CONTAINS(testing::error_of([&] { SegmentationModel::global_metrics(total, {"a", "b"}); }),
                  "class_names");
}

}  // namespace
}  // namespace scenic::model
