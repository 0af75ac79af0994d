// Tests for the L1 / box L1 / squared / absolute error losses (Scenic's model_utils.py
// regression section), on hand-computed values. Random inputs against numpy are in
// reference_fixture_test.cc.
//
// Running example: predictions p = [[1, 2], [3, 4], [0, 0]], targets y = [[1, 0], [0, 0],
// [5, 5]], example 2 padded (batch_mask [1, 1, 0]).
//   squared errors per example: 0 + 4 = 4, 9 + 16 = 25, 25 + 25 = 50
//   absolute errors:            0 + 2 = 2, 3 + 4 = 7,   5 + 5 = 10
#include "scenic/model_lib/base_models/regression_losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

torch::Tensor preds() { return torch::tensor({{1.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}}); }
torch::Tensor targs() { return torch::tensor({{1.f, 0.f}, {0.f, 0.f}, {5.f, 5.f}}); }
torch::Tensor mask() { return torch::tensor({1.f, 1.f, 0.f}); }

void expect_values(const torch::Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  auto flat = t.to(torch::kDouble).flatten();
  ASSERT_EQ(flat.numel(), static_cast<int64_t>(expected.size())) << t;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(flat[i].item<double>(), expected[i], tol) << i;
}

TEST(SquaredError, PerExampleSumTimesWeights) {
  expect_values(weighted_squared_error(preds(), targs()), {4, 25, 50});
  expect_values(weighted_squared_error(preds(), targs(), mask()), {4, 25, 0});
  // A 1-D input has no feature axis: elementwise (not one total).
  expect_values(weighted_squared_error(torch::tensor({1.f, 2.f}), torch::tensor({3.f, 3.f})), {4, 1});
  EXPECT_THROW(weighted_squared_error(torch::zeros({2, 2}), torch::zeros({2})), scenic::Error);
}

TEST(MeanSquaredError, NormalizedByRealExamples) {
  // (4 + 25) / 2; without weights (4 + 25 + 50) / 3.
  EXPECT_NEAR(weighted_mean_squared_error(preds(), targs(), mask()).item<double>(), 14.5, 1e-5);
  EXPECT_NEAR(weighted_mean_squared_error(preds(), targs()).item<double>(), 79.0 / 3, 1e-5);
  // The padded example's garbage does not matter.
  auto p = preds().clone();
  p[2] = torch::tensor({1e6f, -1e6f});
  EXPECT_NEAR(weighted_mean_squared_error(p, targs(), mask()).item<double>(), 14.5, 1e-5);
}

TEST(MeanSquaredError, NormalizerIsTheBroadcastWeightSumButMaeUsesTheWeightSum) {
  // p = 0, y = 1 over [2, 3, 1]; summing axis 2 only leaves [2, 3] ones; mask [1, 0].
  auto p = torch::zeros({2, 3, 1}), y = torch::ones({2, 3, 1});
  auto w = torch::tensor({1.f, 0.f});
  // MSE: 3 / (the mask broadcast to [2, 3], summed = 3) = 1.
  EXPECT_NEAR(weighted_mean_squared_error(p, y, w, {2}).item<double>(), 1.0, 1e-6);
  // MAE: 3 / sum(mask) = 3 (Scenic's asymmetry).
  EXPECT_NEAR(weighted_mean_absolute_error(p, y, w, {2}).item<double>(), 3.0, 1e-6);
  // Without weights: MSE divides by the element count 6, MAE by the batch size 2.
  EXPECT_NEAR(weighted_mean_squared_error(p, y, {}, {2}).item<double>(), 1.0, 1e-6);
  EXPECT_NEAR(weighted_mean_absolute_error(p, y, {}, {2}).item<double>(), 3.0, 1e-6);
}

TEST(AbsoluteError, PerExampleAndMean) {
  expect_values(weighted_absolute_error(preds(), targs(), mask()), {2, 7, 0});
  EXPECT_NEAR(weighted_mean_absolute_error(preds(), targs(), mask()).item<double>(), 4.5, 1e-6);
  EXPECT_NEAR(weighted_mean_absolute_error(preds(), targs()).item<double>(), 19.0 / 3, 1e-5);
}

TEST(L1Loss, ElementwiseOrMean) {
  auto x = torch::tensor({{1.f, -2.f}, {3.f, 0.f}});
  auto y = torch::zeros({2, 2});
  expect_values(weighted_l1_loss(x, y), {1, 2, 3, 0});
  expect_values(weighted_l1_loss(x, y, torch::tensor({1.f, 0.f})), {1, 2, 0, 0});
  // Global mean over all 4 entries, padded ones included as zeros: (1 + 2) / 4.
  EXPECT_NEAR(weighted_l1_loss(x, y, torch::tensor({1.f, 0.f}), "mean").item<double>(), 0.75, 1e-6);
  EXPECT_CONTAINS(testing::error_of([&] { weighted_l1_loss(x, y, {}, "sum"); }), "unknown reduction 'sum'");
}

TEST(BoxL1Loss, TightAndLoose) {
  auto tgt = torch::tensor({{1.f, 1.f, 9.f, 9.f}, {1.f, 1.f, 9.f, 9.f}});
  // Box 0 encloses the target by 1 on every side; box 1 lies inside it by 1.
  auto pred = torch::tensor({{0.f, 0.f, 10.f, 10.f}, {2.f, 2.f, 8.f, 8.f}});
  expect_values(weighted_box_l1_loss(pred, tgt), {1, 1, 1, 1, 1, 1, 1, 1});
  // Loose: only edges outside the target cost; box 1 is free.
  expect_values(weighted_box_l1_loss(pred, tgt, {}, "", /*tight=*/false), {1, 1, 1, 1, 0, 0, 0, 0});
  // A box shifted right by 2: x0 is inside (free), x1 sticks out by 2.
  auto shifted = torch::tensor({{3.f, 1.f, 11.f, 9.f}});
  expect_values(weighted_box_l1_loss(shifted, tgt.narrow(0, 0, 1), {}, "", false), {0, 0, 2, 0});
  EXPECT_NEAR(weighted_box_l1_loss(pred, tgt, torch::tensor({1.f, 0.f}), "mean").item<double>(), 0.5, 1e-6);
  EXPECT_CONTAINS(testing::error_of([] { weighted_box_l1_loss(torch::zeros({2, 3}), torch::zeros({2, 3})); }),
                  "must be 4");
}

}  // namespace
}  // namespace scenic::model
