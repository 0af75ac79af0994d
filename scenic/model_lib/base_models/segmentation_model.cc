#include "scenic/model_lib/base_models/segmentation_model.h"

#include <torch/torch.h>

#include <cstdio>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"
#include "scenic/model_lib/base_models/segmentation_metrics.h"

namespace scenic::model {
namespace {

torch::Tensor pixel_mask(const dataset::Batch& batch) {
  auto it = batch.find("batch_mask");
  if (it == batch.end()) return {};
  if (it->second.dim() != 3)
    throw Error("segmentation batch_mask must be a pixel mask [B, H, W], got " +
                c10::str(it->second.sizes()));
  return it->second.to(torch::kFloat32);
}

const torch::Tensor& label_of(const dataset::Batch& batch) {
  auto it = batch.find("label");
  if (it == batch.end()) throw Error("segmentation batch has no 'label' key");
  return it->second;
}

}  // namespace

SegmentationModel::SegmentationModel(common::ConfigDict config, dataset::MetaData meta_data)
    : BaseModel(std::move(config), std::move(meta_data)) {
  label_smoothing_ = config_.get<double>("label_smoothing", 0.0);
  l2_decay_factor_ = config_.get_optional<double>("l2_decay_factor");
  const double w = config_.get<double>("class_rebalancing_factor", 0.0);
  if (w != 0.0) {
    if (w < 0.0 || w > 1.0)
      throw Error("class_rebalancing_factor must be in [0, 1], got " + std::to_string(w));
    if (meta_data_.class_proportions.empty())
      throw Error("class_rebalancing_factor is set but the dataset's meta data has no "
                  "class_proportions");
    auto p = torch::tensor(meta_data_.class_proportions, torch::kFloat64);
    p = (p / p.sum()).clamp_min(1e-8);
    p = w * p + (1.0 - w);
    auto weights = 1.0 / p;
    weights = weights / weights.sum() * static_cast<double>(weights.numel());
    label_weights_ = weights.to(torch::kFloat32);
  }
}

torch::Tensor SegmentationModel::channels_last(const torch::Tensor& logits) const {
  if (logits.dim() != 4)
    throw Error("segmentation logits must be [B, K, H, W], got " + c10::str(logits.sizes()));
  return logits.movedim(1, -1);  // [B, H, W, K]
}

torch::Tensor SegmentationModel::targets(const torch::Tensor& logits, const dataset::Batch& batch) const {
  const auto& label = label_of(batch);
  if (meta_data_.target_is_onehot) {
    if (label.sizes() != logits.sizes())
      throw Error("one-hot segmentation label " + c10::str(label.sizes()) +
                  " must have the logits' shape " + c10::str(logits.sizes()));
    return label.to(torch::kFloat32).movedim(1, -1);
  }
  if (label.dim() != 3 || label.size(0) != logits.size(0) || label.size(1) != logits.size(2) ||
      label.size(2) != logits.size(3))
    throw Error("segmentation label must be [B, H, W] matching logits " + c10::str(logits.sizes()) +
                ", got " + c10::str(label.sizes()));
  // flax's onehot: a label outside [0, K) gives an all-zero row instead of an error.
  auto classes = torch::arange(logits.size(1), label.options().dtype(torch::kLong));
  return (label.to(torch::kLong).unsqueeze(-1) == classes).to(torch::kFloat32);  // [B, H, W, K]
}

torch::Tensor SegmentationModel::loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                                               const Network* network) const {
  auto z = channels_last(logits);
  if (label_weights_.defined() && label_weights_.size(0) != z.size(-1))
    throw Error("class_proportions has " + std::to_string(label_weights_.size(0)) +
                " entries but the logits have " + std::to_string(z.size(-1)) + " classes");
  auto weights = label_weights_.defined() ? label_weights_.to(z.device()) : torch::Tensor();
  auto loss = weighted_softmax_cross_entropy(z, targets(logits, batch), pixel_mask(batch),
                                             label_smoothing_, weights);
  if (l2_decay_factor_ && network != nullptr)
    loss = loss + 0.5 * *l2_decay_factor_ * l2_regularization(network->parameters());
  return loss;
}

MetricsFn SegmentationModel::get_metrics_fn(const std::string& /*split*/) const {
  return [this](const torch::Tensor& logits, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    auto z = channels_last(logits);
    auto one_hot = targets(logits, batch);
    auto weights = pixel_mask(batch);
    auto options = z.options().dtype(torch::kFloat32);
    // Scenic's num_pixels: real pixels, or B * H * W without a mask.
    auto num_pixels = weights.defined()
                          ? weights.sum()
                          : torch::full({}, static_cast<double>(one_hot.numel() / one_hot.size(-1)),
                                        options);
    MetricsDict metrics;
    metrics["accuracy"] = {weighted_correctly_classified(z, one_hot, weights).sum(), num_pixels};
    metrics["loss"] = {weighted_softmax_cross_entropy(z, one_hot, weights), torch::ones({}, options)};
    return metrics;
  };
}

torch::Tensor SegmentationModel::batch_confusion_matrix(const torch::Tensor& logits,
                                                        const dataset::Batch& batch) const {
  torch::NoGradGuard no_grad;
  auto z = channels_last(logits);
  const auto& label = label_of(batch);
  // Ignore labels (< 0) become 0; batch_mask already takes them out.
  auto y_true = meta_data_.target_is_onehot ? label.argmax(1) : label.to(torch::kLong).clamp_min(0);
  auto y_pred = z.argmax(-1);  // [B, H, W]
  auto weights = pixel_mask(batch);
  return confusion_matrix(y_true, y_pred, z.size(-1), weights);
}

std::map<std::string, double> SegmentationModel::global_metrics(const torch::Tensor& confusion_matrix) const {
  return global_metrics(confusion_matrix, meta_data_.class_names);
}

std::map<std::string, double> SegmentationModel::global_metrics(
    const torch::Tensor& confusion_matrix, const std::vector<std::string>& class_names) {
  auto cm = confusion_matrix;
  if (cm.dim() == 3) cm = cm.sum(0);  // Scenic's per-batch [N, K, K] stack
  auto [miou, per_class] = mean_iou(cm);
  std::map<std::string, double> metrics{{"mean_iou", miou.item<double>()}};
  auto ious = per_class.cpu();
  for (int64_t c = 0; c < ious.size(0); ++c) {
    char tag[32];
    std::snprintf(tag, sizeof(tag), "iou_per_class/%02lld", static_cast<long long>(c));
    std::string name = tag;
    if (!class_names.empty()) {
      if (static_cast<int64_t>(class_names.size()) != ious.size(0))
        throw Error("meta_data.class_names has " + std::to_string(class_names.size()) +
                    " names for a " + std::to_string(ious.size(0)) + "-class confusion matrix");
      name += "_" + class_names[c];
    }
    metrics[name] = ious[c].item<double>();
  }
  return metrics;
}

}  // namespace scenic::model
