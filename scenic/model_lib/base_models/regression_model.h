// RegressionModel: networks regressing real-valued targets (Scenic's
// base_models/regression_model.py).
//
// Batch: `inputs`, `targets` [B, ...] (the network's predictions have the same shape)
// and optionally `batch_mask` [B]. Loss: weighted_mean_squared_error (squared error
// summed over each example's features, averaged over real examples) plus
// 0.5 * l2_decay_factor * L2 when l2_decay_factor is non-zero. Metric:
// `mean_squared_error` = (sum of per-example squared errors, number of real examples).
#pragma once

#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

class RegressionModel : public BaseModel {
 public:
  RegressionModel(common::ConfigDict config, dataset::MetaData meta_data);

  torch::Tensor loss_function(const torch::Tensor& predictions, const dataset::Batch& batch,
                              const Network* network) const override;
  MetricsFn get_metrics_fn(const std::string& split) const override;

 private:
  double l2_decay_factor_ = 0.0;
};

}  // namespace scenic::model
