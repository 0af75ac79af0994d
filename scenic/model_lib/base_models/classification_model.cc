#include "scenic/model_lib/base_models/classification_model.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::model {

ClassificationModel::ClassificationModel(common::ConfigDict config, dataset::MetaData meta_data)
    : BaseModel(std::move(config), std::move(meta_data)) {
  label_smoothing_ = config_.get<double>("label_smoothing", 0.0);
  l2_decay_factor_ = config_.get_optional<double>("l2_decay_factor");
}

torch::Tensor ClassificationModel::targets(const torch::Tensor& logits, const dataset::Batch& batch) const {
  auto it = batch.find("label");
  if (it == batch.end()) throw Error("classification batch has no 'label' key");
  // Float [B, K] labels are already one-hot (or soft, after mixup/cutmix).
  if (meta_data_.target_is_onehot || it->second.is_floating_point()) return it->second.to(torch::kFloat32);
  return onehot(it->second, logits.size(-1));
}

torch::Tensor ClassificationModel::batch_mask(const dataset::Batch& batch) {
  auto it = batch.find("batch_mask");
  return it == batch.end() ? torch::Tensor() : it->second;
}

torch::Tensor ClassificationModel::add_l2(const torch::Tensor& loss, const Network* network) const {
  if (!l2_decay_factor_ || network == nullptr) return loss;
  return loss + 0.5 * *l2_decay_factor_ * l2_regularization(network->parameters());
}

torch::Tensor ClassificationModel::loss_function(const torch::Tensor& logits,
                                                 const dataset::Batch& batch,
                                                 const Network* network) const {
  auto loss = weighted_softmax_cross_entropy(logits, targets(logits, batch), batch_mask(batch),
                                             label_smoothing_);
  return add_l2(loss, network);
}

MetricsFn ClassificationModel::get_metrics_fn(const std::string& /*split*/) const {
  return [this](const torch::Tensor& logits, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    auto one_hot = targets(logits, batch);
    auto weights = batch_mask(batch);
    auto n = num_examples(logits, one_hot, weights);
    MetricsDict metrics;
    metrics["accuracy"] = {weighted_correctly_classified(logits, one_hot, weights).sum(), n};
    metrics["loss"] = {weighted_unnormalized_softmax_cross_entropy(logits, one_hot, weights).sum(), n};
    return metrics;
  };
}

}  // namespace scenic::model
