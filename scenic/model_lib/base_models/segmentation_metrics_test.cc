// Tests for confusion_matrix, mean_iou and dice_loss (Scenic's model_utils.py) on
// hand-computed values; random inputs against numpy's histogram2d and a numpy dice are
// in reference_fixture_test.cc.
#include "scenic/model_lib/base_models/segmentation_metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

void expect_values(const torch::Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  auto flat = t.to(torch::kDouble).flatten();
  ASSERT_EQ(flat.numel(), static_cast<int64_t>(expected.size())) << t;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(flat[i].item<double>(), expected[i], tol) << i;
}

TEST(ConfusionMatrix, RowsTrueColumnsPredicted) {
  auto y_true = torch::tensor({0, 0, 1, 2}, torch::kLong);
  auto y_pred = torch::tensor({0, 1, 1, 0}, torch::kLong);
  auto cm = confusion_matrix(y_true, y_pred, 3);
  EXPECT_EQ(cm.dtype(), torch::kFloat64);
  expect_values(cm, {1, 1, 0, 0, 1, 0, 1, 0, 0});
  // Weights: the (0 -> 1) pixel is padding; the (2 -> 0) one counts 0.5.
  expect_values(confusion_matrix(y_true, y_pred, 3, torch::tensor({1.f, 0.f, 1.f, 0.5f})),
                {1, 0, 0, 0, 1, 0, 0.5, 0, 0});
  // All weights zero: a zero matrix (Scenic guards histogram2d's NaN).
  expect_values(confusion_matrix(y_true, y_pred, 3, torch::zeros({4})), std::vector<double>(9, 0.0));
}

TEST(ConfusionMatrix, OutOfRangeLabelsAsHistogram2d) {
  // Bin edges 0, 1, 2, 3: label 3 (== K) falls in the last, closed bin (class 2);
  // -1 and 4 fall outside and are dropped.
  auto y_true = torch::tensor({3, -1, 4, 1}, torch::kLong);
  auto y_pred = torch::tensor({0, 0, 0, 3}, torch::kLong);
  expect_values(confusion_matrix(y_true, y_pred, 3), {0, 0, 0, 0, 0, 1, 1, 0, 0});
  // Any shape: [2, 2] images flatten the same way.
  expect_values(confusion_matrix(y_true.view({2, 2}), y_pred.view({2, 2}), 3), {0, 0, 0, 0, 0, 1, 1, 0, 0});
  EXPECT_CONTAINS(testing::error_of([] {
                    confusion_matrix(torch::zeros({2}, torch::kLong), torch::zeros({3}, torch::kLong), 2);
                  }),
                  "differ in shape");
}

TEST(MeanIou, KnownConfusionMatrix) {
  // cm = [[3, 1, 0], [2, 4, 0], [0, 0, 0]] (rows true):
  //   class 0: TP 3, true 4, predicted 5 -> 3 / (4 + 5 - 3) = 1/2
  //   class 1: TP 4, true 6, predicted 5 -> 4 / (6 + 5 - 4) = 4/7
  //   class 2: never seen: 0/0, left out of the mean and reported as 0
  // mean = (1/2 + 4/7) / 2 = 15/28 = 0.535714286
  auto cm = torch::tensor({{3., 1., 0.}, {2., 4., 0.}, {0., 0., 0.}}, torch::kFloat64);
  auto [miou, per_class] = mean_iou(cm);
  EXPECT_NEAR(miou.item<double>(), 15.0 / 28.0, 1e-12);
  expect_values(per_class, {0.5, 4.0 / 7.0, 0.0}, 1e-12);
  // A class predicted but never true still counts (its IoU is 0): 0 / (0 + 2 - 0).
  auto cm2 = torch::tensor({{3., 0., 2.}, {0., 5., 0.}, {0., 0., 0.}}, torch::kFloat64);
  auto [miou2, per2] = mean_iou(cm2);
  // class 0: 3 / (5 + 3 - 3) = 3/5; class 1: 1; class 2: 0 -> mean (0.6 + 1 + 0) / 3.
  expect_values(per2, {0.6, 1.0, 0.0}, 1e-12);
  EXPECT_NEAR(miou2.item<double>(), 1.6 / 3.0, 1e-12);
  // Empty matrix: 0, not NaN.
  auto [miou0, per0] = mean_iou(torch::zeros({2, 2}));
  EXPECT_EQ(miou0.item<double>(), 0.0);
  expect_values(per0, {0.0, 0.0});
  EXPECT_THROW(mean_iou(torch::zeros({2, 3})), scenic::Error);
}

TEST(DiceLoss, HandValues) {
  // Logits 0 -> p = 0.5 on a 2 x 2 mask; target [[1, 0], [0, 0]]:
  //   sum(p t) = 0.5, sum(p) = 2, sum(t) = 1 -> 1 - (2 * 0.5 + 1) / (3 + 1) = 0.5
  auto inputs = torch::zeros({1, 1, 2, 2});
  auto target = torch::tensor({1.f, 0.f, 0.f, 0.f}).view({1, 1, 2, 2});
  expect_values(dice_loss(inputs, target), {0.5});
  // eps = 0: 1 - 1 / 3.
  expect_values(dice_loss(inputs, target, {}, false, 0.0), {2.0 / 3.0});
  // All pairs against [ones, zeros]: 1 - (4 + 1) / (2 + 4 + 1) = 2/7; 1 - 1 / (2 + 1) = 2/3.
  auto targets = torch::stack({torch::ones({2, 2}), torch::zeros({2, 2})}).unsqueeze(0);
  auto all = dice_loss(inputs, targets, {}, /*all_pairs=*/true);
  EXPECT_EQ(all.sizes(), (std::vector<int64_t>{1, 1, 2}));
  expect_values(all, {2.0 / 7.0, 2.0 / 3.0});
  // Weights zero the padded example.
  expect_values(dice_loss(torch::zeros({2, 1, 2, 2}), torch::cat({target, target}), torch::tensor({1.f, 0.f})),
                {0.5, 0.0});
  EXPECT_THROW(dice_loss(inputs, targets), scenic::Error);  // N != M without all_pairs
}

TEST(DiceLoss, TargetsResizedWithHalfPixelNearest) {
  // A 4 x 4 target down to 2 x 2 samples rows/cols floor((i + 0.5) * 2) = 1, 3.
  auto inputs = torch::zeros({1, 1, 2, 2});
  auto at_11 = torch::zeros({1, 1, 4, 4});
  at_11[0][0][1][1] = 1;  // kept: the resized target is [[1, 0], [0, 0]] -> 0.5 as above
  expect_values(dice_loss(inputs, at_11), {0.5});
  auto at_00 = torch::zeros({1, 1, 4, 4});
  at_00[0][0][0][0] = 1;  // dropped: empty target -> 1 - 1 / (2 + 0 + 1) = 2/3
  expect_values(dice_loss(inputs, at_00), {2.0 / 3.0});
  // Antialiased bilinear keeps a constant target constant: ones -> 1 - (4 + 1) / (2 + 4 + 1).
  expect_values(dice_loss(inputs, torch::ones({1, 1, 4, 4}), {}, false, 1.0, "bilinear"), {2.0 / 7.0});
  EXPECT_CONTAINS(testing::error_of([&] { dice_loss(inputs, at_00, {}, false, 1.0, "cubic"); }),
                  "unknown interpolation");
}

}  // namespace
}  // namespace scenic::model
