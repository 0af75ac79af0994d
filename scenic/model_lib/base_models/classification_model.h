// ClassificationModel: softmax cross-entropy classifiers (Scenic's
// base_models/classification_model.py).
//
// Loss: weighted_softmax_cross_entropy(logits, one_hot(label), batch_mask,
// label_smoothing = config.label_smoothing) + 0.5 * config.l2_decay_factor * L2 (over
// parameters with ndim > 1) when l2_decay_factor is set. Metrics: `accuracy`
// (correct / num_examples) and `loss` (unnormalized cross-entropy without smoothing or
// L2 / num_examples), padded examples excluded. A concrete model supplies the network.
#pragma once

#include <optional>

#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

class ClassificationModel : public BaseModel {
 public:
  ClassificationModel(common::ConfigDict config, dataset::MetaData meta_data);

  torch::Tensor loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                              const Network* network) const override;
  MetricsFn get_metrics_fn(const std::string& split) const override;

  // The label as float one-hot [B, K] (as given when the dataset is already one-hot).
  torch::Tensor targets(const torch::Tensor& logits, const dataset::Batch& batch) const;

 protected:
  static torch::Tensor batch_mask(const dataset::Batch& batch);  // undefined when absent
  double label_smoothing() const { return label_smoothing_; }
  // loss + 0.5 * l2_decay_factor * L2(params with ndim > 1), when configured.
  torch::Tensor add_l2(const torch::Tensor& loss, const Network* network) const;

 private:
  double label_smoothing_ = 0.0;
  std::optional<double> l2_decay_factor_;
};

}  // namespace scenic::model
