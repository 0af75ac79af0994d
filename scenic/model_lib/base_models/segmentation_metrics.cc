#include "scenic/model_lib/base_models/segmentation_metrics.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::model {

torch::Tensor confusion_matrix(const torch::Tensor& y_true, const torch::Tensor& y_pred,
                               int64_t num_classes, const torch::Tensor& weights) {
  if (y_true.sizes() != y_pred.sizes())
    throw Error("confusion_matrix: y_true " + c10::str(y_true.sizes()) + " and y_pred " +
                c10::str(y_pred.sizes()) + " differ in shape");
  if (weights.defined() && weights.sizes() != y_true.sizes())
    throw Error("confusion_matrix: weights " + c10::str(weights.sizes()) +
                " differ in shape from the labels " + c10::str(y_true.sizes()));
  if (num_classes <= 0) throw Error("confusion_matrix: num_classes must be positive");
  auto t = y_true.flatten().to(torch::kLong);
  auto p = y_pred.flatten().to(torch::kLong);
  auto w = weights.defined() ? weights.flatten().to(torch::kFloat64)
                             : torch::ones(t.sizes(), t.options().dtype(torch::kFloat64));
  // histogram2d's bins [0, 1), ..., [K-1, K]: drop what falls outside, fold K into K-1.
  auto inside = (t >= 0) & (t <= num_classes) & (p >= 0) & (p <= num_classes);
  t = t.clamp_max(num_classes - 1);
  p = p.clamp_max(num_classes - 1);
  auto flat_index = (t * num_classes + p).masked_fill(~inside, 0);
  auto cm = torch::zeros({num_classes * num_classes}, w.options());
  cm.index_add_(0, flat_index, w * inside.to(torch::kFloat64));
  return cm.view({num_classes, num_classes});
}

std::pair<torch::Tensor, torch::Tensor> mean_iou(const torch::Tensor& confusion_matrix) {
  if (confusion_matrix.dim() != 2 || confusion_matrix.size(0) != confusion_matrix.size(1))
    throw Error("mean_iou: expected a [K, K] confusion matrix, got " +
                c10::str(confusion_matrix.sizes()));
  auto cm = confusion_matrix.to(torch::kFloat64);
  auto true_positives = cm.diagonal();
  // row + col = 2 TP + FP + FN, so this is TP + FP + FN.
  auto denominator = cm.sum(0) + cm.sum(1) - true_positives;
  auto iou = true_positives / denominator;  // NaN (0/0) for classes that never appear
  auto present = ~torch::isnan(iou);
  auto count = present.sum();
  auto mean = count.item<int64_t>() > 0 ? iou.masked_select(present).mean()
                                        : torch::zeros({}, cm.options());
  return {torch::nan_to_num(mean), torch::nan_to_num(iou)};
}

torch::Tensor dice_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                        const torch::Tensor& weights, bool all_pairs, double eps,
                        const std::string& interpolation) {
  if (inputs.dim() != 4 || targets.dim() != 4 || inputs.size(0) != targets.size(0))
    throw Error("dice_loss: expected inputs [B, N, H, W] and targets [B, M, H, W], got " +
                c10::str(inputs.sizes()) + " and " + c10::str(targets.sizes()));
  const int64_t b = inputs.size(0), n = inputs.size(1), h = inputs.size(2), w = inputs.size(3);
  const int64_t m = targets.size(1);
  if (!all_pairs && n != m)
    throw Error("dice_loss: without all_pairs inputs and targets need as many masks, got " +
                std::to_string(n) + " and " + std::to_string(m));
  auto tgt = targets.to(torch::kFloat32);
  if (tgt.size(2) != h || tgt.size(3) != w) {
    namespace F = torch::nn::functional;
    auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w});
    if (interpolation == "nearest") {
      opts = opts.mode(torch::kNearestExact);
    } else if (interpolation == "bilinear" || interpolation == "linear") {
      opts = opts.mode(torch::kBilinear).align_corners(false).antialias(true);
    } else {
      throw Error("dice_loss: unknown interpolation '" + interpolation +
                  "' (expected nearest, bilinear or linear)");
    }
    tgt = F::interpolate(tgt, opts);
  }
  auto p = torch::sigmoid(inputs.to(torch::kFloat32)).reshape({b, n, h * w});
  auto t = tgt.reshape({b, m, h * w});
  torch::Tensor numerator, denominator;
  if (all_pairs) {
    numerator = 2 * torch::einsum("bnp,bkp->bnk", {p, t});               // [B, N, M]
    denominator = p.sum(-1).unsqueeze(2) + t.sum(-1).unsqueeze(1);       // [B, N, M]
  } else {
    numerator = 2 * (p * t).sum(-1);                                     // [B, N]
    denominator = (p + t).sum(-1);
  }
  auto loss = 1.0 - (numerator + eps) / (denominator + eps);
  return weights.defined() ? apply_weights(loss, weights) : loss;
}

}  // namespace scenic::model
