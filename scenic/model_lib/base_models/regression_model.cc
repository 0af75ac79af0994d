#include "scenic/model_lib/base_models/regression_model.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"
#include "scenic/model_lib/base_models/regression_losses.h"

namespace scenic::model {
namespace {

const torch::Tensor& targets_of(const dataset::Batch& batch) {
  auto it = batch.find("targets");
  if (it == batch.end()) throw Error("regression batch has no 'targets' key");
  return it->second;
}

torch::Tensor batch_mask(const dataset::Batch& batch) {
  auto it = batch.find("batch_mask");
  return it == batch.end() ? torch::Tensor() : it->second;
}

}  // namespace

RegressionModel::RegressionModel(common::ConfigDict config, dataset::MetaData meta_data)
    : BaseModel(std::move(config), std::move(meta_data)) {
  // Scenic tests `if config.get('l2_decay_factor')`: null and 0 both mean none.
  l2_decay_factor_ = config_.get_optional<double>("l2_decay_factor").value_or(0.0);
}

torch::Tensor RegressionModel::loss_function(const torch::Tensor& predictions,
                                             const dataset::Batch& batch,
                                             const Network* network) const {
  auto loss = weighted_mean_squared_error(predictions, targets_of(batch), batch_mask(batch));
  if (l2_decay_factor_ != 0.0 && network != nullptr)
    loss = loss + 0.5 * l2_decay_factor_ * l2_regularization(network->parameters());
  return loss;
}

MetricsFn RegressionModel::get_metrics_fn(const std::string& /*split*/) const {
  return [](const torch::Tensor& predictions, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    const auto& targets = targets_of(batch);
    auto weights = batch_mask(batch);
    MetricsDict metrics;
    metrics["mean_squared_error"] = {weighted_squared_error(predictions, targets, weights).sum(),
                                     num_examples(predictions, targets, weights)};
    return metrics;
  };
}

}  // namespace scenic::model
