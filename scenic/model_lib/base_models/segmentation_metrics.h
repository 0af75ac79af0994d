// Segmentation metrics and losses with Scenic's semantics (confusion_matrix, mean_iou and
// dice_loss of model_lib/base_models/model_utils.py).
//
// The confusion matrix is accumulated over a whole eval set and turned into mean IoU
// once at the end (SegmentationModel::batch_confusion_matrix / global_metrics build on
// these). Counts are float64 so that pixel counts stay exact far beyond float32's 2^24.
#pragma once

#include <torch/types.h>

#include <string>
#include <utility>

namespace scenic::model {

// Weighted [K, K] counts, rows = y_true, columns = y_pred, float64. Same as Scenic's
// histogram2d with bin edges 0..K: a value v lands in bin v, v == K in the last bin (the
// last edge is inclusive), values outside [0, K] are dropped. All-zero weights give zeros.
// y_true, y_pred integer of one shape; weights undefined (all 1) or of the same shape.
torch::Tensor confusion_matrix(const torch::Tensor& y_true, const torch::Tensor& y_pred,
                               int64_t num_classes, const torch::Tensor& weights = {});

// IoU_c = TP_c / (row_c + col_c - TP_c) from a [K, K] confusion matrix. Returns
// (mean over classes whose denominator is non-zero, 0 when there is none; per-class IoU
// [K] with 0 for absent classes), both float64.
std::pair<torch::Tensor, torch::Tensor> mean_iou(const torch::Tensor& confusion_matrix);

// Dice loss 1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps) with p = sigmoid(inputs)
// (DETR / V-Net). inputs: mask logits [B, N, H, W]; targets [B, M, H', W'], resized to
// H x W first ("nearest": half-pixel nearest as jax.image.resize, i.e. torch's
// nearest-exact; "bilinear"/"linear": antialiased bilinear). all_pairs: [B, N, M];
// otherwise N == M and [B, N]. Then times weights.
torch::Tensor dice_loss(const torch::Tensor& inputs, const torch::Tensor& targets,
                        const torch::Tensor& weights = {}, bool all_pairs = false, double eps = 1.0,
                        const std::string& interpolation = "nearest");

}  // namespace scenic::model
