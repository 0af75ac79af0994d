// Tests for box_utils (Scenic's box_utils.py): conversions on known boxes, IoU / GIoU
// by hand, shapes of the all-pairs and pairwise forms, and finite, correct gradients
// (DETR trains through GIoU). Random boxes against numpy are in reference_fixture_test.cc.
#include "scenic/model_lib/base_models/box_utils.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

void expect_values(const torch::Tensor& t, const std::vector<double>& expected, double tol = 1e-6) {
  auto flat = t.to(torch::kDouble).flatten();
  ASSERT_EQ(flat.numel(), static_cast<int64_t>(expected.size())) << t;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(flat[i].item<double>(), expected[i], tol) << i;
}

TEST(BoxConversions, KnownBox) {
  // Center (5, 5), 4 wide, 2 high: x 3..7, y 4..6.
  auto cxcywh = torch::tensor({5.f, 5.f, 4.f, 2.f});
  expect_values(box_cxcywh_to_xyxy(cxcywh), {3, 4, 7, 6});
  expect_values(box_cxcywh_to_yxyx(cxcywh), {4, 3, 6, 7});
  expect_values(box_xyxy_to_cxcywh(torch::tensor({3.f, 4.f, 7.f, 6.f})), {5, 5, 4, 2});
  expect_values(box_yxyx_to_cxcywh(torch::tensor({4.f, 3.f, 6.f, 7.f})), {5, 5, 4, 2});
  expect_values(box_xywh_to_xyxy(torch::tensor({3.f, 4.f, 4.f, 2.f})), {3, 4, 7, 6});
  expect_values(box_xyxy_to_xywh(torch::tensor({3.f, 4.f, 7.f, 6.f})), {3, 4, 4, 2});
  EXPECT_THROW(box_cxcywh_to_xyxy(torch::zeros({2, 3})), scenic::Error);
}

TEST(BoxConversions, RoundTripsKeepShape) {
  torch::manual_seed(3);
  auto boxes = torch::rand({2, 5, 4});
  EXPECT_TRUE(torch::allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(box_yxyx_to_cxcywh(box_cxcywh_to_yxyx(boxes)), boxes, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(box_xyxy_to_xywh(box_xywh_to_xyxy(boxes)), boxes, 1e-5, 1e-6));
  EXPECT_EQ(box_cxcywh_to_xyxy(boxes).sizes(), boxes.sizes());
}

// A = [0, 0, 2, 2] (area 4), B = [1, 1, 3, 3] (area 4), C = [3, 0, 4, 1] (area 1).
//   A, B: intersection 1, union 7, hull [0, 0, 3, 3] = 9:
//         IoU = 1 / 7, GIoU = 1/7 - (9 - 7) / 9 = -0.079365079
//   A, C: disjoint, union 5, hull [0, 0, 4, 2] = 8: IoU 0, GIoU = -(8 - 5) / 8 = -0.375
//   A, A: IoU = GIoU = 4 / (4 + 1e-6) ~ 1
TEST(BoxIou, AllPairsByHand) {
  auto a = torch::tensor({{{0.f, 0.f, 2.f, 2.f}}});                          // [1, 1, 4]
  auto others = torch::tensor({{{1.f, 1.f, 3.f, 3.f}, {3.f, 0.f, 4.f, 1.f}, {0.f, 0.f, 2.f, 2.f}}});  // [1, 3, 4]
  auto [iou, uni] = box_iou(a, others);
  EXPECT_EQ(iou.sizes(), (std::vector<int64_t>{1, 1, 3}));
  expect_values(iou, {1.0 / 7.0, 0.0, 1.0});
  expect_values(uni, {7, 5, 4});
  auto giou = generalized_box_iou(a, others);
  expect_values(giou, {1.0 / 7.0 - 2.0 / 9.0, -0.375, 1.0});
  // Symmetric: the transposed problem gives the transposed matrix.
  EXPECT_TRUE(torch::allclose(generalized_box_iou(others, a), giou.transpose(1, 2)));
}

TEST(BoxIou, PairwiseMatchesTheDiagonalOfAllPairs) {
  torch::manual_seed(5);
  auto c1 = torch::rand({2, 4, 4}), c2 = torch::rand({2, 4, 4});
  auto b1 = box_cxcywh_to_xyxy(c1), b2 = box_cxcywh_to_xyxy(c2);
  auto all = generalized_box_iou(b1, b2);                        // [2, 4, 4]
  auto pairwise = generalized_box_iou(b1, b2, /*all_pairs=*/false);  // [2, 4]
  EXPECT_EQ(pairwise.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(torch::allclose(pairwise, all.diagonal(0, 1, 2)));
  EXPECT_TRUE(torch::allclose(box_iou(b1, b2, false).first, box_iou(b1, b2).first.diagonal(0, 1, 2)));
  // GIoU in [-1, 1] and never above IoU.
  EXPECT_LE(all.max().item<double>(), 1.0);
  EXPECT_GE(all.min().item<double>(), -1.0);
  EXPECT_TRUE((all <= box_iou(b1, b2).first + 1e-6).all().item<bool>());
  EXPECT_THROW(box_iou(b1, b2.narrow(1, 0, 3), false), scenic::Error);
  EXPECT_THROW(box_iou(b1, torch::zeros({3, 4, 4})), scenic::Error);
}

TEST(BoxIou, EpsKeepsDegenerateBoxesFinite) {
  // Two identical points: union 0 and hull 0; eps makes IoU = 0 and GIoU = 0, not NaN.
  auto p = torch::tensor({{{1.f, 1.f, 1.f, 1.f}}});
  expect_values(box_iou(p, p).first, {0.0});
  expect_values(generalized_box_iou(p, p), {0.0});
}

TEST(GeneralizedBoxIou, GradientsAreFiniteAndMatchFiniteDifferences) {
  // Overlapping, disjoint, identical, nested and zero-width predictions against targets.
  auto pred = torch::tensor({{{0.1, 0.1, 0.5, 0.6}, {0.7, 0.7, 0.9, 0.8}, {0.2, 0.2, 0.4, 0.4},
                              {0.3, 0.3, 0.35, 0.4}, {0.5, 0.1, 0.5, 0.9}}},
                            torch::kFloat64)
                  .requires_grad_(true);
  auto tgt = torch::tensor({{{0.2, 0.2, 0.6, 0.5}, {0.0, 0.0, 0.3, 0.3}, {0.2, 0.2, 0.4, 0.4},
                             {0.1, 0.1, 0.9, 0.9}, {0.4, 0.2, 0.6, 0.6}}},
                           torch::kFloat64);
  auto loss_of = [&](const torch::Tensor& p) { return (1 - generalized_box_iou(p, tgt, false)).sum(); };
  loss_of(pred).backward();
  auto grad = pred.grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_TRUE(torch::isfinite(grad).all().item<bool>()) << grad;
  EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
  // Central differences on every coordinate of the overlapping, disjoint and nested
  // boxes, where GIoU is smooth (the identical pair sits on a kink of min/max, the
  // zero-width box on the kink of the intersection's clamp).
  // All pairs too.
  auto p2 = pred.detach().clone().requires_grad_(true);
  generalized_box_iou(p2, tgt).sum().backward();
  EXPECT_TRUE(torch::isfinite(p2.grad()).all().item<bool>());

  torch::NoGradGuard no_grad;
  const double h = 1e-6;
  for (int64_t n : {0, 1, 3}) {
    for (int64_t c = 0; c < 4; ++c) {
      auto plus = pred.detach().clone(), minus = pred.detach().clone();
      plus[0][n][c] += h;
      minus[0][n][c] -= h;
      double numeric = (loss_of(plus).item<double>() - loss_of(minus).item<double>()) / (2 * h);
      EXPECT_NEAR(grad[0][n][c].item<double>(), numeric, 1e-5) << "box " << n << " coord " << c;
    }
  }
}

}  // namespace
}  // namespace scenic::model
