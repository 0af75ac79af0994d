#include "scenic/model_lib/base_models/multilabel_classification_model.h"

#include <torch/torch.h>

#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::model {

torch::Tensor MultiLabelClassificationModel::loss_function(const torch::Tensor& logits,
                                                           const dataset::Batch& batch,
                                                           const Network* network) const {
  auto loss = weighted_sigmoid_cross_entropy(logits, targets(logits, batch), batch_mask(batch),
                                             /*label_weights=*/{}, label_smoothing());
  return add_l2(loss, network);
}

MetricsFn MultiLabelClassificationModel::get_metrics_fn(const std::string& /*split*/) const {
  return [this](const torch::Tensor& logits, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    auto multi_hot = targets(logits, batch);
    auto weights = batch_mask(batch);
    auto n = num_examples(logits, multi_hot, weights);
    MetricsDict metrics;
    metrics["prec@1"] = {weighted_top_one_correctly_classified(logits, multi_hot, weights).sum(), n};
    metrics["loss"] = {weighted_unnormalized_sigmoid_cross_entropy(logits, multi_hot, weights).sum(), n};
    return metrics;
  };
}

}  // namespace scenic::model
