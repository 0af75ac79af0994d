// MultiLabelClassificationModel: sigmoid cross-entropy classifiers (Scenic's
// base_models/multilabel_classification_model.py), the base of Scenic's ViT, Mixer and
// BiT registrations.
//
// Loss: weighted_sigmoid_cross_entropy(logits, multi_hot, batch_mask, label_smoothing)
// (summed over classes, averaged over real examples) + 0.5 * l2_decay_factor * L2.
// Metrics: `prec@1` (is the top prediction a positive label) and `loss`
// (unnormalized sigmoid cross-entropy summed over classes), over real examples.
// Integer labels are one-hot encoded, so single-label data trains unchanged.
#pragma once

#include "scenic/model_lib/base_models/classification_model.h"

namespace scenic::model {

class MultiLabelClassificationModel : public ClassificationModel {
 public:
  using ClassificationModel::ClassificationModel;

  torch::Tensor loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                              const Network* network) const override;
  MetricsFn get_metrics_fn(const std::string& split) const override;
};

}  // namespace scenic::model
