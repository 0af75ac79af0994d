// The losses, metrics and box functions against an independent numpy statement of
// Scenic's semantics: tools/fixtures/model_utils_reference.py writes
// scenic/model_lib/testdata/model_utils_reference.json (random inputs, fixed seed;
// padding, label weights, label smoothing, log-probability inputs, resized dice targets,
// histogram2d's out-of-range labels). Regenerate with
//   .venv/bin/python tools/fixtures/model_utils_reference.py \
//       > scenic/model_lib/testdata/model_utils_reference.json
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "scenic/model_lib/base_models/box_utils.h"
#include "scenic/model_lib/base_models/model_utils.h"
#include "scenic/model_lib/base_models/regression_losses.h"
#include "scenic/model_lib/base_models/segmentation_metrics.h"

namespace scenic::model {
namespace {

const nlohmann::json& fixture() {
  static const nlohmann::json data = [] {
    const std::string path = std::string(SCENIC_SOURCE_DIR) + "/scenic/model_lib/testdata/model_utils_reference.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
  }();
  return data;
}

const nlohmann::json& fcase(const std::string& name) { return fixture().at("cases").at(name); }

// A {"shape", "data"} array as a float32 tensor (float64 with `dtype`).
torch::Tensor tensor(const nlohmann::json& a, torch::Dtype dtype = torch::kFloat32) {
  auto data = a.at("data").get<std::vector<double>>();
  auto shape = a.at("shape").get<std::vector<int64_t>>();
  return torch::tensor(data, torch::kFloat64).reshape(shape).to(dtype);
}

void expect_close(const torch::Tensor& actual, const nlohmann::json& expected, double tol = 1e-5) {
  auto e = tensor(expected, torch::kFloat64);
  ASSERT_EQ(actual.sizes(), e.sizes()) << actual;
  auto a = actual.to(torch::kFloat64);
  auto err = (a - e).abs().max().item<double>();
  EXPECT_LE(err, tol) << "actual\n" << a << "\nexpected\n" << e;
}

TEST(ReferenceFixture, MultiLabelMetrics) {
  const auto& c = fcase("multilabel_metrics");
  auto z = tensor(c["logits"]), t = tensor(c["targets"]), w = tensor(c["weights"]);
  expect_close(weighted_topk_correctly_classified(z, t, w, 1), c["topk_k1"]);
  expect_close(weighted_topk_correctly_classified(z, t, w, 3), c["topk_k3"]);
  // k = 1 is the top-one metric.
  expect_close(weighted_top_one_correctly_classified(z, t, w), c["topk_k1"]);
  expect_close(weighted_precision_at_k(z, t, w, 1), c["precision_k1"]);
  expect_close(weighted_precision_at_k(z, t, w, 3), c["precision_k3"]);
  expect_close(weighted_recall(z, t, w), c["recall"]);
  expect_close(weighted_recall(z, t), c["recall_unweighted"]);
}

TEST(ReferenceFixture, SoftmaxCrossEntropyVariants) {
  const auto& c = fcase("softmax_ce");
  auto z = tensor(c["logits"]), t = tensor(c["targets"]), w = tensor(c["weights"]);
  auto lw = tensor(c["label_weights"]);
  expect_close(weighted_unnormalized_softmax_cross_entropy(z, t, w, 0.2, lw, false, true),
               c["keep_label_dim"]);
  expect_close(weighted_unnormalized_softmax_cross_entropy(z, t, w, 0.2, lw), c["summed"]);
  expect_close(weighted_unnormalized_softmax_cross_entropy(tensor(c["normalized_input"]), t, w, 0.1,
                                                           {}, /*logits_normalized=*/true),
               c["from_log_probs"]);
  EXPECT_NEAR(weighted_softmax_cross_entropy(z, t, w, 0.2, lw).item<double>(), c["mean"].get<double>(),
              1e-5);
}

TEST(ReferenceFixture, SigmoidCrossEntropyVariants) {
  const auto& c = fcase("sigmoid_ce");
  auto z = tensor(c["logits"]), t = tensor(c["targets"]), w = tensor(c["weights"]);
  expect_close(weighted_unnormalized_sigmoid_cross_entropy(z, t, w, tensor(c["label_weights"]), 0.1),
               c["elementwise"]);
  expect_close(weighted_unnormalized_sigmoid_cross_entropy(tensor(c["log_probs"]), t, w, {}, 0.0,
                                                           /*logits_normalized=*/true),
               c["from_log_probs"], 1e-4);
}

TEST(ReferenceFixture, FocalLosses) {
  const auto& c = fcase("focal");
  auto z = tensor(c["logits"]), oh = tensor(c["one_hot"]), mh = tensor(c["multi_hot"]);
  auto w = tensor(c["weights"]), lw = tensor(c["label_weights"]);
  expect_close(focal_softmax_cross_entropy(z, oh, w), c["softmax_g2"]);
  expect_close(focal_softmax_cross_entropy(z, oh, w, 0.1, lw, false, 0.5), c["softmax_g05_ls_lw"]);
  expect_close(focal_softmax_cross_entropy(torch::log_softmax(z, -1), oh, w, 0.0, {}, true),
               c["softmax_from_log_probs"]);
  expect_close(focal_sigmoid_cross_entropy(z, mh, w, 0.1, lw, false, 0.25, 2.0),
               c["sigmoid_a025_g2_ls_lw"]);
  expect_close(focal_sigmoid_cross_entropy(z, mh, w), c["sigmoid_default"]);
}

TEST(ReferenceFixture, RegressionErrors) {
  const auto& c = fcase("regression");
  auto p = tensor(c["predictions"]), y = tensor(c["targets"]);
  auto w = tensor(c["weights"]), w2 = tensor(c["weights2"]);
  expect_close(weighted_squared_error(p, y, w), c["squared_error"]);
  EXPECT_NEAR(weighted_mean_squared_error(p, y, w).item<double>(), c["mean_squared_error"].get<double>(), 1e-5);
  EXPECT_NEAR(weighted_mean_squared_error(p, y).item<double>(),
              c["mean_squared_error_unweighted"].get<double>(), 1e-5);
  // Per-position errors ([B, 3], summed over axis 2 only) with a [B, 3] mask: the MSE
  // normalizer is the mask's sum.
  expect_close(weighted_squared_error(p, y, w2, {2}), c["squared_error_axis2"]);
  EXPECT_NEAR(weighted_mean_squared_error(p, y, w2, {2}).item<double>(),
              c["mean_squared_error_axis2"].get<double>(), 1e-5);
  expect_close(weighted_absolute_error(p, y, w), c["absolute_error"]);
  EXPECT_NEAR(weighted_mean_absolute_error(p, y, w).item<double>(), c["mean_absolute_error"].get<double>(),
              1e-5);
  // Without weights the MAE divides by the batch size even though axis 2 leaves [B, 3].
  EXPECT_NEAR(weighted_mean_absolute_error(p, y, {}, {2}).item<double>(),
              c["mean_absolute_error_axis2_unweighted"].get<double>(), 1e-5);
}

TEST(ReferenceFixture, BoxL1TightAndLoose) {
  const auto& c = fcase("box_l1");
  auto pred = tensor(c["pred"]), tgt = tensor(c["tgt"]), w = tensor(c["weights"]);
  expect_close(weighted_box_l1_loss(pred, tgt, w), c["l1"]);
  expect_close(weighted_l1_loss(pred, tgt, w), c["l1"]);
  EXPECT_NEAR(weighted_box_l1_loss(pred, tgt, w, "mean").item<double>(), c["l1_mean"].get<double>(), 1e-6);
  expect_close(weighted_box_l1_loss(pred, tgt, w, "", /*tight=*/false), c["loose"]);
  EXPECT_NEAR(weighted_box_l1_loss(pred, tgt, w, "mean", false).item<double>(),
              c["loose_mean"].get<double>(), 1e-6);
}

TEST(ReferenceFixture, BoxIouAndGiou) {
  const auto& c = fcase("boxes");
  auto x1 = tensor(c["xyxy1"]), x2 = tensor(c["xyxy2"]);
  expect_close(box_cxcywh_to_xyxy(tensor(c["cxcywh1"])), c["xyxy1"]);
  auto [iou, uni] = box_iou(x1, x2);
  expect_close(iou, c["iou_all_pairs"]);
  expect_close(uni, c["union_all_pairs"]);
  expect_close(generalized_box_iou(x1, x2), c["giou_all_pairs"]);
  auto x2n = x2.narrow(1, 0, 3);
  auto [iou_pw, uni_pw] = box_iou(x1, x2n, /*all_pairs=*/false);
  expect_close(iou_pw, c["iou_pairwise"]);
  expect_close(uni_pw, c["union_pairwise"]);
  expect_close(generalized_box_iou(x1, x2n, false), c["giou_pairwise"]);
}

TEST(ReferenceFixture, ConfusionMatrixMatchesHistogram2d) {
  const auto& c = fcase("confusion");
  const int64_t k = c["num_classes"].get<int64_t>();
  auto cm = confusion_matrix(tensor(c["y_true"], torch::kLong), tensor(c["y_pred"], torch::kLong), k,
                             tensor(c["weights"]));
  EXPECT_EQ(cm.dtype(), torch::kFloat64);
  expect_close(cm, c["confusion_matrix"], 0.0);
  auto [miou, per_class] = mean_iou(cm);
  EXPECT_NEAR(miou.item<double>(), c["mean_iou"].get<double>(), 1e-12);
  expect_close(per_class, c["iou_per_class"], 1e-12);
}

TEST(ReferenceFixture, DiceLoss) {
  const auto& c = fcase("dice");
  auto inputs = tensor(c["inputs"]), targets = tensor(c["targets"]);
  expect_close(dice_loss(inputs, targets), c["pairwise"]);
  expect_close(dice_loss(inputs, targets, tensor(c["weights"])), c["pairwise_weighted"]);
  auto targets_m2 = tensor(c["targets_m2"]);
  expect_close(dice_loss(inputs, targets_m2, {}, /*all_pairs=*/true), c["all_pairs"]);
  expect_close(dice_loss(inputs, targets_m2, {}, true, 1e-3), c["all_pairs_eps_small"]);
}

}  // namespace
}  // namespace scenic::model
