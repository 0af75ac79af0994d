// SegmentationModel: per-pixel softmax classifiers (Scenic's
// base_models/segmentation_model.py).
//
// Layout: the network's logits are NCHW, [B, K, H, W] (LibTorch's convention; Scenic's
// are [B, H, W, K]); `label` is int64 [B, H, W] (or, with target_is_onehot, float
// [B, K, H, W]); `batch_mask` is the pixel mask [B, H, W] (1 real, 0 padding or
// ignored). Labels outside [0, K) one-hot encode to zeros, as flax's onehot does, so
// ignore labels (-1, 255) only need batch_mask = 0.
//
// Loss: weighted_softmax_cross_entropy over real pixels with config.label_smoothing and
// label weights from class re-balancing (below), + 0.5 * l2_decay_factor * L2.
// Metrics: `accuracy` (correct pixels / real pixels) and `loss` (the batch's mean pixel
// cross-entropy, without smoothing or label weights, over the constant normalizer 1, so
// the trainer reports the mean over batches, as Scenic).
//
// Class re-balancing (config.class_rebalancing_factor = w in [0, 1], needs
// meta_data.class_proportions p): p = max(p / sum(p), 1e-8); p = w p + (1 - w);
// weights = 1 / p, scaled to sum to K.
//
// Global metrics (mean IoU needs the whole eval set): for each eval batch call
//   total += model.batch_confusion_matrix(logits, batch);     // [K, K] float64
// then once at the end
//   model.global_metrics(total)  ->  {"mean_iou": ..., "iou_per_class/00[_name]": ...}
// The names take meta_data.class_names when given. Counts are exact float64 pixel
// counts; Scenic divides each batch's counts by its pixel count to keep float32 precise,
// which IoU (a ratio) does not see as long as every batch has one size.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

class SegmentationModel : public BaseModel {
 public:
  SegmentationModel(common::ConfigDict config, dataset::MetaData meta_data);

  torch::Tensor loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                              const Network* network) const override;
  MetricsFn get_metrics_fn(const std::string& split) const override;

  // [K] class weights from class re-balancing; undefined when it is off.
  const torch::Tensor& label_weights() const { return label_weights_; }

  // The batch's [K, K] confusion counts (rows true, columns predicted) over pixels with
  // batch_mask != 0; ignore labels < 0 are counted as class 0 only if unmasked.
  torch::Tensor batch_confusion_matrix(const torch::Tensor& logits, const dataset::Batch& batch) const;
  // mean_iou and iou_per_class/NN[_name] from an accumulated [K, K] matrix (a leading
  // batch axis [N, K, K] is summed first).
  std::map<std::string, double> global_metrics(const torch::Tensor& confusion_matrix) const;
  static std::map<std::string, double> global_metrics(const torch::Tensor& confusion_matrix,
                                                      const std::vector<std::string>& class_names);

  // Logits moved to [B, H, W, K] and the targets as float one-hot [B, H, W, K].
  torch::Tensor channels_last(const torch::Tensor& logits) const;
  torch::Tensor targets(const torch::Tensor& logits, const dataset::Batch& batch) const;

 private:
  double label_smoothing_ = 0.0;
  std::optional<double> l2_decay_factor_;
  torch::Tensor label_weights_;
};

}  // namespace scenic::model
