// Regression and box-regression losses with Scenic's exact semantics (the L1, squared
// and absolute error functions of model_lib/base_models/model_utils.py).
//
// `weights` is the batch_mask ([B] or [B, ...]) broadcast over trailing dims, or an
// undefined tensor for "no weights". The per-example errors sum over `axes` (default:
// every axis but the batch axis; none when the input is 1-D) and return [B, ...].
// `reduction` is "" (none: the weighted elementwise values) or "mean" (their global mean).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace scenic::model {

// |x - y| (y broadcastable to x), times weights; reduced by `reduction`.
torch::Tensor weighted_l1_loss(const torch::Tensor& x, const torch::Tensor& y,
                               const torch::Tensor& weights = {}, const std::string& reduction = "");
// L1 loss on [..., 4] xyxy boxes. tight: |pred - tgt|. Loose (tight = false): an edge
// only costs where the predicted box reaches outside the target, i.e.
// |min(pred_x0y0 - tgt_x0y0, 0)| and |max(pred_x1y1 - tgt_x1y1, 0)|.
torch::Tensor weighted_box_l1_loss(const torch::Tensor& pred, const torch::Tensor& tgt,
                                   const torch::Tensor& weights = {},
                                   const std::string& reduction = "", bool tight = true);

// sum over `axes` of (targets - predictions)^2, times weights.
torch::Tensor weighted_squared_error(const torch::Tensor& predictions, const torch::Tensor& targets,
                                     const torch::Tensor& weights = {},
                                     const std::vector<int64_t>& axes = {});
// sum(weighted_squared_error) / (sum of the weights broadcast to its shape, or its
// element count, + 1e-8). 0-dim.
torch::Tensor weighted_mean_squared_error(const torch::Tensor& predictions,
                                          const torch::Tensor& targets,
                                          const torch::Tensor& weights = {},
                                          const std::vector<int64_t>& axes = {});
// sum over `axes` of |targets - predictions|, times weights.
torch::Tensor weighted_absolute_error(const torch::Tensor& predictions, const torch::Tensor& targets,
                                      const torch::Tensor& weights = {},
                                      const std::vector<int64_t>& axes = {});
// sum(weighted_absolute_error) / (sum(weights), or its leading dim, + 1e-8). 0-dim.
// (Unlike the MSE, the normalizer is not broadcast: Scenic's asymmetry, kept.)
torch::Tensor weighted_mean_absolute_error(const torch::Tensor& predictions,
                                           const torch::Tensor& targets,
                                           const torch::Tensor& weights = {},
                                           const std::vector<int64_t>& axes = {});

}  // namespace scenic::model
