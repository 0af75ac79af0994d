// Gradient accumulation over micro-batches, equal to one step on the whole batch.
//
// Mirrors Scenic's train_utils.accumulate_gradients (a batch split into `accum_steps`
// micro-batches, gradients combined before one optimizer update), with one change:
// Scenic averages the micro-batch gradients with equal weights, which differs from the
// big-batch gradient when padding (batch_mask = 0) is spread unevenly. Here
// micro-batch k's loss is weighted by
//   w_k = sum(batch_mask_k) / sum(batch_mask)     (or B_k / B without a batch_mask)
// before its backward pass, so the accumulated `.grad` equals the gradient of the
// big-batch loss whenever that loss is a batch_mask-weighted mean (Scenic's weighted
// losses: sum of weighted per-example losses / sum of weights) plus terms that do not
// depend on the batch (an L2 penalty: the w_k sum to 1, so it counts once). The
// weights are computed on the device (no host synchronization); an all-padding
// micro-batch gets weight 0.
//
// Caveat, as in Scenic (which refuses accumulation with batch_stats): BatchNorm sees
// micro-batch statistics, so networks with BatchNorm do not match the big batch.
// Dropout draws differ from a big-batch step too (different random streams).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "scenic/dataset_lib/dataset.h"

namespace scenic::train {

// Splits every tensor of `batch` ([B, ...]) into `num_microbatches` equal slices along
// dim 0 (views, no copies). Throws scenic::Error when B is not divisible or the
// tensors disagree on B.
std::vector<dataset::Batch> split_batch(const dataset::Batch& batch, int64_t num_microbatches);

// w_k of each micro-batch of `batch` (0-dim float64 tensors on its device; see above).
std::vector<torch::Tensor> microbatch_weights(const dataset::Batch& batch,
                                              const std::vector<dataset::Batch>& microbatches);

// Computes (loss, outputs) for one micro-batch with autograd on, e.g.
//   [&](const Batch& b) { auto out = net->forward(b.at("inputs"));
//                         return std::make_pair(model.loss_function(out, b, net.get()), out); }
using MicrobatchLossFn =
    std::function<std::pair<torch::Tensor, torch::Tensor>(const dataset::Batch& microbatch)>;

struct AccumulatedStep {
  torch::Tensor loss;     // 0-dim, detached: the big-batch loss (sum of w_k * loss_k)
  torch::Tensor outputs;  // [B, ...] detached micro-batch outputs concatenated (for metrics)
};

// Runs `loss_fn` and backward on each micro-batch, adding w_k * grad(loss_k) into the
// parameters' `.grad` (call optimizer.zero_grad() before, optimizer.step() after).
// num_microbatches = 1 is one plain forward/backward.
AccumulatedStep accumulate_gradients(const dataset::Batch& batch, int64_t num_microbatches,
                                     const MicrobatchLossFn& loss_fn);

}  // namespace scenic::train
