// Tests for the losses and metrics of model_utils (Scenic's model_utils.py semantics,
// reference/scenic_inventory.md §2.3).
//
// The running example is logits z = [[1, 2, 3], [1, 0, -1]] with labels [2, 1].
// Both rows are shifts/reversals of (1, 2, 3), whose log-sum-exp is
//   3 + log(1 + e^-1 + e^-2) = 3 + log(1.503214724) = 3.407605964,
// so log_softmax(row 0) = [-2.407605964, -1.407605964, -0.407605964] and
//    log_softmax(row 1) = [-0.407605964, -1.407605964, -2.407605964].
// Cross-entropy with labels [2, 1] is therefore [0.407605964, 1.407605964].
#include "scenic/model_lib/base_models/model_utils.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

constexpr double kTol = 1e-6;
constexpr double kLse = 0.407605964;  // log(1 + e^-1 + e^-2)

torch::Tensor logits2x3() { return torch::tensor({{1.f, 2.f, 3.f}, {1.f, 0.f, -1.f}}); }
torch::Tensor labels2() { return torch::tensor({2, 1}, torch::kLong); }

void expect_values(const torch::Tensor& t, const std::vector<double>& expected, double tol = kTol) {
  auto flat = t.to(torch::kDouble).flatten();
  ASSERT_EQ(flat.numel(), static_cast<int64_t>(expected.size())) << t;
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(flat[i].item<double>(), expected[i], tol) << "index " << i << " of " << t;
}

TEST(OneHot, EncodesIntegerLabelsAsFloat) {
  auto oh = onehot(torch::tensor({2, 0, 1}, torch::kLong), 3);
  EXPECT_EQ(oh.dtype(), torch::kFloat32);
  EXPECT_EQ(oh.sizes(), (std::vector<int64_t>{3, 3}));
  expect_values(oh, {0, 0, 1, 1, 0, 0, 0, 1, 0});
  // int32 labels are accepted too.
  expect_values(onehot(torch::tensor({3}, torch::kInt), 5), {0, 0, 0, 1, 0});
}

TEST(ApplyLabelSmoothing, OnAndOffValues) {
  // K = 4, ls = 0.1: on = 1 - 0.1 + 0.1/4 = 0.925, off = 0.1/4 = 0.025.
  auto t = apply_label_smoothing(onehot(torch::tensor({1, 3}, torch::kLong), 4), 0.1);
  expect_values(t, {0.025, 0.925, 0.025, 0.025, 0.025, 0.025, 0.025, 0.925});
  // Each row still sums to 1.
  expect_values(t.sum(-1), {1.0, 1.0});
  // ls = 0 is the identity.
  auto oh = onehot(torch::tensor({0}, torch::kLong), 3);
  EXPECT_TRUE(torch::equal(apply_label_smoothing(oh, 0.0), oh));
}

TEST(ApplyWeights, BroadcastsOverTrailingDims) {
  auto out = torch::ones({2, 3, 2});
  auto w = torch::tensor({2.f, 0.f});
  auto r = apply_weights(out, w);
  EXPECT_EQ(r.sizes(), out.sizes());
  EXPECT_FLOAT_EQ(r[0].sum().item<float>(), 12.f);  // 6 elements x 2
  EXPECT_FLOAT_EQ(r[1].sum().item<float>(), 0.f);
  EXPECT_THROW(apply_weights(torch::ones({2}), torch::ones({2, 1})), scenic::Error);
}

TEST(NumExamples, BatchSizeOrSumOfWeights) {
  auto z = torch::zeros({3, 4});
  auto oh = torch::zeros({3, 4});
  EXPECT_DOUBLE_EQ(num_examples(z, oh).item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(num_examples(z, oh, torch::tensor({1.f, 1.f, 0.f})).item<double>(), 2.0);
  EXPECT_EQ(num_examples(z, oh).dim(), 0);
}

TEST(WeightedCorrectlyClassified, ArgmaxMatchTimesWeights) {
  auto oh = onehot(labels2(), 3);
  // argmax(z) = [2, 0]; labels [2, 1] -> [1, 0].
  expect_values(weighted_correctly_classified(logits2x3(), oh), {1, 0});
  expect_values(weighted_correctly_classified(logits2x3(), oh, torch::tensor({0.f, 1.f})), {0, 0});
  expect_values(weighted_correctly_classified(logits2x3(), oh, torch::tensor({3.f, 1.f})), {3, 0});
}

TEST(SoftmaxCrossEntropy, UnnormalizedHandValues) {
  auto oh = onehot(labels2(), 3);
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh),
                {kLse, 1.0 + kLse});
}

TEST(SoftmaxCrossEntropy, UnnormalizedWeightsZeroThePaddedExample) {
  auto oh = onehot(labels2(), 3);
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, torch::tensor({1.f, 0.f})),
                {kLse, 0.0});
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, torch::tensor({0.5f, 2.f})),
                {0.5 * kLse, 2.0 * (1.0 + kLse)});
}

TEST(SoftmaxCrossEntropy, UnnormalizedLabelSmoothing) {
  // With smoothing ls over K classes, CE = (1 - ls) * CE_hard + ls * mean_c(-log p_c).
  // mean_c(-log p_c) for either row = (2.4076 + 1.4076 + 0.4076) / 3 = 1.407605964.
  //   row 0: 0.9 * 0.407605964 + 0.1 * 1.407605964 = 0.507605964
  //   row 1: 0.9 * 1.407605964 + 0.1 * 1.407605964 = 1.407605964
  auto oh = onehot(labels2(), 3);
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, {}, 0.1),
                {0.1 + kLse, 1.0 + kLse});
}

TEST(SoftmaxCrossEntropy, UnnormalizedLabelWeightsScaleTargets) {
  auto oh = onehot(labels2(), 3);
  auto lw = torch::tensor({1.f, 2.f, 3.f});
  // row 0 (label 2): 3 * 0.407605964 = 1.222817892; row 1 (label 1): 2 * 1.407605964.
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, {}, 0.0, lw),
                {3.0 * kLse, 2.0 * (1.0 + kLse)});
  // Smoothing is applied before the label weights (numpy reference:
  // -sum((onehot*0.9 + 0.1/3) * [1,2,3] * log_softmax(z), -1)).
  expect_values(weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, {}, 0.1, lw),
                {1.31539063, 2.88187860});
}

TEST(SoftmaxCrossEntropy, NormalizedByExampleCountWithoutWeights) {
  auto oh = onehot(labels2(), 3);
  auto loss = weighted_softmax_cross_entropy(logits2x3(), oh);
  EXPECT_EQ(loss.dim(), 0);
  // (0.407605964 + 1.407605964) / (2 + 1e-8)
  EXPECT_NEAR(loss.item<double>(), (1.0 + 2.0 * kLse) / 2.0, kTol);
}

TEST(SoftmaxCrossEntropy, NormalizedBySumOfWeights) {
  auto oh = onehot(labels2(), 3);
  auto loss = weighted_softmax_cross_entropy(logits2x3(), oh, torch::tensor({1.f, 0.f}));
  EXPECT_NEAR(loss.item<double>(), kLse / (1.0 + 1e-8), kTol);
  // All-zero weights give 0 / 1e-8 = 0, not NaN.
  auto zero = weighted_softmax_cross_entropy(logits2x3(), oh, torch::zeros({2}));
  EXPECT_EQ(zero.item<double>(), 0.0);
}

TEST(SoftmaxCrossEntropy, PaddedExampleWithGarbageLogitsDoesNotChangeTheLoss) {
  auto oh = onehot(labels2(), 3);
  auto unpadded = weighted_softmax_cross_entropy(logits2x3(), oh);
  auto padded_logits = torch::cat({logits2x3(), torch::tensor({{1e30f, -1e30f, 0.f}})});
  auto padded_labels = onehot(torch::tensor({2, 1, 1}, torch::kLong), 3);
  auto padded = weighted_softmax_cross_entropy(padded_logits, padded_labels,
                                               torch::tensor({1.f, 1.f, 0.f}));
  EXPECT_TRUE(std::isfinite(padded.item<double>()));
  EXPECT_NEAR(padded.item<double>(), unpadded.item<double>(), kTol);
  // Also with smoothing.
  EXPECT_NEAR(weighted_softmax_cross_entropy(padded_logits, padded_labels,
                                             torch::tensor({1.f, 1.f, 0.f}), 0.1)
                  .item<double>(),
              weighted_softmax_cross_entropy(logits2x3(), oh, {}, 0.1).item<double>(), kTol);
}

TEST(SoftmaxCrossEntropy, SequenceTargetsNormalizeByAllLeadingDims) {
  // [B=2, L=2, K=3]: without weights the normalizer is B * L = 4.
  auto z = torch::stack({logits2x3(), logits2x3()});
  auto oh = torch::stack({onehot(labels2(), 3), onehot(labels2(), 3)});
  EXPECT_NEAR(weighted_softmax_cross_entropy(z, oh).item<double>(),
              2.0 * (1.0 + 2.0 * kLse) / 4.0, kTol);
}

TEST(SoftmaxCrossEntropy, ShapeMismatchThrows) {
  EXPECT_THROW(weighted_unnormalized_softmax_cross_entropy(torch::zeros({2, 3}), torch::zeros({2, 4})),
               scenic::Error);
}

// Sigmoid cross-entropy: BCE(z, t) = -(t log s(z) + (1 - t) log s(-z)) = log(1 + e^z) - t z.
// Example z = [[2, -1], [0, 3]], t = [[1, 0], [1, 1]]:
//   (2, 1):  log(1 + e^-2) = 0.126928011
//   (-1, 0): log(1 + e^-1) = 0.313261687
//   (0, 1):  log 2         = 0.693147181
//   (3, 1):  log(1 + e^-3) = 0.048587352
torch::Tensor sig_logits() { return torch::tensor({{2.f, -1.f}, {0.f, 3.f}}); }
torch::Tensor sig_targets() { return torch::tensor({{1.f, 0.f}, {1.f, 1.f}}); }

TEST(SigmoidCrossEntropy, ElementwiseMatchesHandFormula) {
  auto loss = weighted_unnormalized_sigmoid_cross_entropy(sig_logits(), sig_targets());
  EXPECT_EQ(loss.sizes(), (std::vector<int64_t>{2, 2}));
  expect_values(loss, {0.126928011, 0.313261687, 0.693147181, 0.048587352});
  // Equal to the closed form log(1 + e^z) - t z on random inputs.
  torch::manual_seed(0);
  auto z = torch::randn({4, 5}) * 3;
  auto t = (torch::rand({4, 5}) > 0.5).to(torch::kFloat32);
  auto closed = torch::log1p(torch::exp(z)) - t * z;
  EXPECT_TRUE(torch::allclose(weighted_unnormalized_sigmoid_cross_entropy(z, t), closed, 1e-5, 1e-5));
}

TEST(SigmoidCrossEntropy, StableForLargeLogits) {
  // log(1 + e^100) - 0 * 100 = 100 (to float precision); a naive form would overflow.
  auto loss = weighted_unnormalized_sigmoid_cross_entropy(torch::tensor({{100.f, -100.f}}),
                                                          torch::tensor({{0.f, 0.f}}));
  expect_values(loss, {100.0, 0.0}, 1e-4);
}

TEST(SigmoidCrossEntropy, WeightsLabelWeightsAndSmoothing) {
  expect_values(weighted_unnormalized_sigmoid_cross_entropy(sig_logits(), sig_targets(),
                                                            torch::tensor({1.f, 0.f})),
                {0.126928011, 0.313261687, 0.0, 0.0});
  expect_values(weighted_unnormalized_sigmoid_cross_entropy(sig_logits(), sig_targets(), {},
                                                            torch::tensor({2.f, 0.5f})),
                {2 * 0.126928011, 0.5 * 0.313261687, 2 * 0.693147181, 0.5 * 0.048587352});
  // ls = 0.2, K = 2: targets become 0.9 / 0.1; log(1 + e^z) - t z gives
  //   (2, 0.9): 2.126928011 - 1.8 = 0.326928011;  (-1, 0.1): 0.313261687 + 0.1 = 0.413261687
  //   (0, 0.9): 0.693147181;                       (3, 0.9): 3.048587352 - 2.7 = 0.348587352
  expect_values(weighted_unnormalized_sigmoid_cross_entropy(sig_logits(), sig_targets(), {}, {}, 0.2),
                {0.326928011, 0.413261687, 0.693147181, 0.348587352});
}

TEST(SigmoidCrossEntropy, NormalizedSumsClassesAndAveragesExamples) {
  // Sum of the four values = 1.181924231; 2 examples.
  EXPECT_NEAR(weighted_sigmoid_cross_entropy(sig_logits(), sig_targets()).item<double>(),
              1.181924231 / 2.0, kTol);
  // Only the first example real: (0.126928011 + 0.313261687) / 1.
  EXPECT_NEAR(weighted_sigmoid_cross_entropy(sig_logits(), sig_targets(), torch::tensor({1.f, 0.f}))
                  .item<double>(),
              0.440189698, kTol);
  // numpy: sum of the smoothed values above / 2 = 0.890962115.
  EXPECT_NEAR(weighted_sigmoid_cross_entropy(sig_logits(), sig_targets(), {}, {}, 0.2).item<double>(),
              0.890962115, kTol);
  // A padded example with garbage logits changes nothing.
  auto z = torch::cat({sig_logits(), torch::tensor({{1e30f, -1e30f}})});
  auto t = torch::cat({sig_targets(), torch::tensor({{0.f, 1.f}})});
  EXPECT_NEAR(weighted_sigmoid_cross_entropy(z, t, torch::tensor({1.f, 1.f, 0.f})).item<double>(),
              1.181924231 / 2.0, kTol);
}

TEST(TopOneCorrect, TargetValueAtTheArgmax) {
  auto z = torch::tensor({{0.1f, 0.9f, 0.5f}, {0.7f, 0.2f, 0.3f}, {0.f, 0.f, 5.f}});
  auto t = torch::tensor({{0.f, 1.f, 1.f}, {0.f, 1.f, 1.f}, {1.f, 0.f, 1.f}});
  // argmax = [1, 0, 2] -> t = [1, 0, 1].
  expect_values(weighted_top_one_correctly_classified(z, t), {1, 0, 1});
  expect_values(weighted_top_one_correctly_classified(z, t, torch::tensor({1.f, 1.f, 0.f})), {1, 0, 0});
}

TEST(L2Regularization, CountsOnlyTensorsWithMoreThanOneDim) {
  auto kernel = torch::tensor({{1.f, 2.f}, {3.f, 4.f}});  // 1 + 4 + 9 + 16 = 30
  auto bias = torch::tensor({5.f, 6.f});                   // excluded (ndim 1)
  auto conv = torch::full({1, 1, 2, 2}, 0.5f);             // 4 * 0.25 = 1
  auto scalar = torch::tensor(7.f);                        // excluded (ndim 0)
  EXPECT_NEAR(l2_regularization({kernel, bias, conv, scalar}).item<double>(), 31.0, kTol);
  EXPECT_EQ(l2_regularization({bias}).item<double>(), 0.0);
  EXPECT_EQ(l2_regularization({}).item<double>(), 0.0);
  // Differentiable: d/dw sum(w^2) = 2w.
  auto w = kernel.clone().requires_grad_(true);
  l2_regularization({w}).backward();
  EXPECT_TRUE(torch::allclose(w.grad(), 2 * kernel));
}

// Multi-label ranking metrics. z = [[0.1, 0.9, 0.5, 0.3], [0.7, 0.2, 0.3, 0.6], [1, 1, 1, 0]]
// t = [[0, 0, 0, 1], [1, 0, 1, 0], [1, 0, 0, 0]].
//   row 0 ranks classes 1, 2, 3, 0; its positive (3) is third.
//   row 1 ranks 0, 3, 2, 1; positives 0 (first) and 2 (third).
//   row 2 is a three-way tie: top-k takes the lowest index first (class 0, a hit).
torch::Tensor rank_logits() {
  return torch::tensor({{0.1f, 0.9f, 0.5f, 0.3f}, {0.7f, 0.2f, 0.3f, 0.6f}, {1.f, 1.f, 1.f, 0.f}});
}
torch::Tensor rank_targets() {
  return torch::tensor({{0.f, 0.f, 0.f, 1.f}, {1.f, 0.f, 1.f, 0.f}, {1.f, 0.f, 0.f, 0.f}});
}

TEST(TopKCorrect, AnyPositiveAmongTheTopK) {
  auto z = rank_logits(), t = rank_targets();
  expect_values(weighted_topk_correctly_classified(z, t, {}, 1), {0, 1, 1});
  expect_values(weighted_topk_correctly_classified(z, t, {}, 2), {0, 1, 1});
  expect_values(weighted_topk_correctly_classified(z, t, {}, 3), {1, 1, 1});
  expect_values(weighted_topk_correctly_classified(z, t, torch::tensor({1.f, 0.f, 1.f}), 3), {1, 0, 1});
  // Default k = 5 needs at least 5 classes.
  EXPECT_THROW(weighted_topk_correctly_classified(z, t), scenic::Error);
  EXPECT_THROW(weighted_topk_correctly_classified(z, t, {}, 0), scenic::Error);
}

TEST(PrecisionAtK, TruePositivesOverK) {
  auto z = rank_logits(), t = rank_targets();
  // k = 2: row 0 {1, 2} -> 0; row 1 {0, 3} -> 1/2; row 2 {0, 1} -> 1/2.
  expect_values(weighted_precision_at_k(z, t, {}, 2), {0.0, 0.5, 0.5});
  // k = 3: row 0 {1, 2, 3} -> 1/3; row 1 {0, 3, 2} -> 2/3; row 2 {0, 1, 2} -> 1/3.
  expect_values(weighted_precision_at_k(z, t, torch::tensor({1.f, 1.f, 0.f}), 3), {1.0 / 3, 2.0 / 3, 0.0});
  EXPECT_THROW(weighted_precision_at_k(z, t, {}, 5), scenic::Error);
}

TEST(Recall, AtTheNumberOfPositiveLabels) {
  auto z = rank_logits(), t = rank_targets();
  // row 0: n = 1, top-1 {1} -> 0.  row 1: n = 2, top-2 {0, 3} -> 1/2.
  // row 2: n = 1; Scenic reverses a stable ascending argsort, so among the tied classes
  // 0, 1, 2 the highest index (2) ranks first -> 0 (unlike top-k above).
  expect_values(weighted_recall(z, t), {0.0, 0.5, 0.0});
  expect_values(weighted_recall(z, t, torch::tensor({0.f, 2.f, 1.f})), {0.0, 1.0, 0.0});
  // No positive label: 0 / (0 + 1e-12) = 0.
  expect_values(weighted_recall(torch::tensor({{1.f, 2.f}}), torch::zeros({1, 2})), {0.0});
}

TEST(SoftmaxCrossEntropy, KeepLabelDimensionAndLogProbInputs) {
  auto oh = onehot(labels2(), 3);
  auto terms = weighted_unnormalized_softmax_cross_entropy(logits2x3(), oh, torch::tensor({1.f, 2.f}), 0.0,
                                                           {}, false, /*keep_label_dimension=*/true);
  EXPECT_EQ(terms.sizes(), (std::vector<int64_t>{2, 3}));
  // Only the target column is non-zero: row 0 col 2 = 0.4076; row 1 col 1 = 2 * 1.4076.
  expect_values(terms, {0, 0, kLse, 0, 2 * (1.0 + kLse), 0});
  // Log-probabilities in, the same cross-entropy out: log p = [ln 1/4, ln 3/4], class 1.
  auto log_p = torch::log(torch::tensor({{0.25f, 0.75f}}));
  expect_values(weighted_unnormalized_softmax_cross_entropy(log_p, torch::tensor({{0.f, 1.f}}), {}, 0.0, {},
                                                            /*logits_normalized=*/true),
                {0.287682072});
}

TEST(SigmoidCrossEntropy, LogProbInputsUseTheEpsilonInLogOneMinusP) {
  // log p = ln 0.5, t = 0: -log(1 + 1e-6 - 0.5) = -ln 0.500001 = 0.693145181.
  auto loss = weighted_unnormalized_sigmoid_cross_entropy(torch::log(torch::tensor({{0.5f}})),
                                                          torch::tensor({{0.f}}), {}, {}, 0.0, true);
  EXPECT_NEAR(loss.item<double>(), 0.693145181, 1e-6);
}

TEST(FocalSoftmax, ModulatesByOneMinusPTarget) {
  // z = [0, ln 3]: p = [1/4, 3/4].
  auto z = torch::tensor({{0.f, std::log(3.f)}, {0.f, std::log(3.f)}});
  auto t = torch::tensor({{0.f, 1.f}, {1.f, 0.f}});
  // row 0: CE = -ln 0.75 = 0.287682072, (1 - 0.75)^2 = 0.0625 -> 0.017980130
  // row 1: CE = ln 4 = 1.386294361,      (1 - 0.25)^2 = 0.5625 -> 0.779790578
  expect_values(focal_softmax_cross_entropy(z, t), {0.017980130, 0.779790578});
  // gamma = 0 is plain cross-entropy; weights and keep_label_dimension as in CE.
  expect_values(focal_softmax_cross_entropy(z, t, torch::tensor({1.f, 0.f}), 0.0, {}, false, 0.0),
                {0.287682072, 0.0});
  expect_values(focal_softmax_cross_entropy(z, t, {}, 0.0, {}, false, 2.0, true),
                {0.0, 0.017980130, 0.779790578, 0.0});
}

TEST(FocalSigmoid, AlphaBalancesPositivesAndNegatives) {
  // z = 0: BCE = ln 2 = 0.693147181, p_t = 0.5, (1 - p_t)^2 = 0.25.
  //   t = 1: x alpha = 0.25       -> 0.693147181 * 0.25 * 0.25 = 0.043321699
  //   t = 0: x (1 - alpha) = 0.75 -> 0.693147181 * 0.25 * 0.75 = 0.129965097
  auto loss = focal_sigmoid_cross_entropy(torch::zeros({1, 2}), torch::tensor({{1.f, 0.f}}), {}, 0.0, {},
                                          false, /*alpha=*/0.25, /*gamma=*/2.0);
  expect_values(loss, {0.043321699, 0.129965097});
  // Default alpha = 0.5 with label weights [2, 1]: 0.693147181 * 0.25 * 0.5 * [2, 1].
  expect_values(focal_sigmoid_cross_entropy(torch::zeros({1, 2}), torch::tensor({{1.f, 0.f}}), {}, 0.0,
                                            torch::tensor({2.f, 1.f})),
                {0.173286795, 0.086643398});
}

TEST(SimpleGather, PicksRowsPerBatchElement) {
  auto x = torch::arange(12, torch::kFloat32).reshape({2, 3, 2});
  auto idx = torch::tensor({{2, 0}, {1, 1}}, torch::kLong);
  // x[0, 2] = [4, 5], x[0, 0] = [0, 1]; x[1, 1] = [8, 9] twice.
  auto out = simple_gather(x, idx);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 2, 2}));
  expect_values(out, {4, 5, 0, 1, 8, 9, 8, 9});
  EXPECT_THROW(simple_gather(x, torch::zeros({3, 1}, torch::kLong)), scenic::Error);
}

}  // namespace
}  // namespace scenic::model
