#include "scenic/model_lib/base_models/regression_losses.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::model {
namespace {

torch::Tensor reduce(const torch::Tensor& values, const std::string& reduction, const char* what) {
  if (reduction.empty()) return values;
  if (reduction == "mean") return values.mean();
  throw Error(std::string(what) + ": unknown reduction '" + reduction + "' (expected '' or 'mean')");
}

void check_box(const torch::Tensor& boxes, const char* which) {
  if (boxes.dim() == 0 || boxes.size(-1) != 4)
    throw Error(std::string("weighted_box_l1_loss: the last dimension of the ") + which +
                " boxes must be 4, got shape " + c10::str(boxes.sizes()));
}

// Sums `error` over `axes`, by default every axis but the first (none for a 1-D input;
// torch's sum over an empty list would sum everything, so that case is explicit).
torch::Tensor sum_over(const torch::Tensor& error, const std::vector<int64_t>& axes) {
  std::vector<int64_t> dims = axes;
  if (dims.empty())
    for (int64_t d = 1; d < error.dim(); ++d) dims.push_back(d);
  if (dims.empty()) return error;
  return error.sum(dims);
}

torch::Tensor per_example(const torch::Tensor& predictions, const torch::Tensor& targets,
                          const torch::Tensor& weights, const std::vector<int64_t>& axes,
                          bool squared, const char* what) {
  if (predictions.dim() != targets.dim())
    throw Error(std::string(what) + ": predictions " + c10::str(predictions.sizes()) +
                " and targets " + c10::str(targets.sizes()) + " differ in rank");
  auto error = targets.to(torch::kFloat32) - predictions.to(torch::kFloat32);
  auto loss = sum_over(squared ? error.square() : error.abs(), axes);
  return weights.defined() ? apply_weights(loss, weights) : loss;
}

}  // namespace

torch::Tensor weighted_l1_loss(const torch::Tensor& x, const torch::Tensor& y,
                               const torch::Tensor& weights, const std::string& reduction) {
  auto abs_diff = (x - y).abs();
  if (weights.defined()) abs_diff = apply_weights(abs_diff, weights);
  return reduce(abs_diff, reduction, "weighted_l1_loss");
}

torch::Tensor weighted_box_l1_loss(const torch::Tensor& pred, const torch::Tensor& tgt,
                                   const torch::Tensor& weights, const std::string& reduction,
                                   bool tight) {
  check_box(pred, "prediction");
  check_box(tgt, "target");
  torch::Tensor abs_diff;
  if (tight) {
    abs_diff = (pred - tgt).abs();
  } else {
    auto diff = pred - tgt;                               // [..., 4]
    auto lo = diff.narrow(-1, 0, 2).clamp_max(0.0);       // x0, y0 left of / above the target
    auto hi = diff.narrow(-1, 2, 2).clamp_min(0.0);       // x1, y1 right of / below it
    abs_diff = torch::cat({lo, hi}, -1).abs();
  }
  if (weights.defined()) abs_diff = apply_weights(abs_diff, weights);
  return reduce(abs_diff, reduction, "weighted_box_l1_loss");
}

torch::Tensor weighted_squared_error(const torch::Tensor& predictions, const torch::Tensor& targets,
                                     const torch::Tensor& weights, const std::vector<int64_t>& axes) {
  return per_example(predictions, targets, weights, axes, /*squared=*/true, "weighted_squared_error");
}

torch::Tensor weighted_mean_squared_error(const torch::Tensor& predictions,
                                          const torch::Tensor& targets, const torch::Tensor& weights,
                                          const std::vector<int64_t>& axes) {
  auto unnormalized = weighted_squared_error(predictions, targets, weights, axes);
  torch::Tensor normalization;
  if (weights.defined()) {
    // The weights broadcast to the per-example error's shape, summed.
    normalization = apply_weights(torch::ones_like(unnormalized), weights.to(torch::kFloat32)).sum();
  } else {
    normalization = torch::full({}, static_cast<double>(unnormalized.numel()), unnormalized.options());
  }
  return unnormalized.sum() / (normalization + 1e-8);
}

torch::Tensor weighted_absolute_error(const torch::Tensor& predictions, const torch::Tensor& targets,
                                      const torch::Tensor& weights, const std::vector<int64_t>& axes) {
  return per_example(predictions, targets, weights, axes, /*squared=*/false,
                     "weighted_absolute_error");
}

torch::Tensor weighted_mean_absolute_error(const torch::Tensor& predictions,
                                           const torch::Tensor& targets, const torch::Tensor& weights,
                                           const std::vector<int64_t>& axes) {
  auto unnormalized = weighted_absolute_error(predictions, targets, weights, axes);
  torch::Tensor normalization =
      weights.defined() ? weights.sum().to(torch::kFloat32)
                        : torch::full({}, static_cast<double>(unnormalized.size(0)),
                                      unnormalized.options());
  return unnormalized.sum() / (normalization + 1e-8);
}

}  // namespace scenic::model
