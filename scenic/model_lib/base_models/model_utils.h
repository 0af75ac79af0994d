// Loss and metric functions with Scenic's exact semantics (model_lib/base_models/model_utils.py).
//
// Conventions as in Scenic: `one_hot` targets are float [..., K]; `weights` is the
// batch_mask ([B] or [B, ...]) broadcast over trailing dims, or an undefined tensor for
// "no weights". Per-example functions return [B, ...]; the normalized losses return a
// 0-dim tensor divided by sum(weights) (or the example count) + 1e-8.
// `logits_normalized` means the "logits" are already log-probabilities.
//
// One deliberate difference: Scenic's correctly-classified counters cast to int32 after
// weighting (and top-k keeps a trailing 1 dim); here they stay float [B, ...], which is
// the same sum for the 0/1 batch_mask and keeps fractional weights.
//
// Regression and box losses live in regression_losses.h; confusion matrix, mean IoU and
// dice loss in segmentation_metrics.h.
#pragma once

#include <torch/types.h>

#include <vector>

namespace scenic::model {

torch::Tensor onehot(const torch::Tensor& labels, int64_t num_classes);  // int64 [B] -> float [B, K]
// t * (1 - ls) + ls / K.
torch::Tensor apply_label_smoothing(const torch::Tensor& one_hot, double label_smoothing);
// Multiplies `output` [B, ...] by `weights` [B, ...] broadcast over trailing dims.
torch::Tensor apply_weights(const torch::Tensor& output, const torch::Tensor& weights);

// Number of real examples: weights.sum() or the batch size.
torch::Tensor num_examples(const torch::Tensor& logits, const torch::Tensor& one_hot,
                           const torch::Tensor& weights = {});
// 1 where argmax(logits) == argmax(one_hot), times weights. Float [B, ...].
torch::Tensor weighted_correctly_classified(const torch::Tensor& logits, const torch::Tensor& one_hot,
                                            const torch::Tensor& weights = {});
// -sum_c t_c log_softmax(z)_c per example; smoothing first, then label_weights [K]
// multiply the targets. keep_label_dimension returns the [..., K] terms unsummed.
torch::Tensor weighted_unnormalized_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {},
    bool logits_normalized = false, bool keep_label_dimension = false);
// Sum of the above divided by (sum(weights) or prod(one_hot.shape[:-1])) + 1e-8.
torch::Tensor weighted_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {});

// Elementwise binary cross-entropy from logits, [..., K] (not summed over classes).
// With logits_normalized (log p given): -(t log p + (1 - t) log(1 + 1e-6 - p)).
torch::Tensor weighted_unnormalized_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights = {},
    const torch::Tensor& label_weights = {}, double label_smoothing = 0.0,
    bool logits_normalized = false);
// Summed over classes and examples, divided by (sum(weights) or the example count) + 1e-8.
torch::Tensor weighted_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights = {},
    const torch::Tensor& label_weights = {}, double label_smoothing = 0.0);
// The target value at the arg-max logit (1 when the top prediction is a positive label).
torch::Tensor weighted_top_one_correctly_classified(const torch::Tensor& logits,
                                                    const torch::Tensor& multi_hot,
                                                    const torch::Tensor& weights = {});

// 1 when any of the k highest logits is a positive label, times weights. Float [B, ...].
// Ties go to the lower class index (as jax.lax.top_k).
torch::Tensor weighted_topk_correctly_classified(const torch::Tensor& logits,
                                                 const torch::Tensor& multi_hot,
                                                 const torch::Tensor& weights = {}, int64_t k = 5);
// (positive labels among the k highest logits) / k, times weights. Float [B, ...].
torch::Tensor weighted_precision_at_k(const torch::Tensor& logits, const torch::Tensor& multi_hot,
                                      const torch::Tensor& weights = {}, int64_t k = 5);
// Recall at n = the number of positive labels of each example: positives among the n
// highest logits / (n + 1e-12), times weights. Float [B, ...]. Ties rank the higher class
// index first (Scenic reverses a stable ascending argsort).
torch::Tensor weighted_recall(const torch::Tensor& logits, const torch::Tensor& multi_hot,
                              const torch::Tensor& weights = {});

// Focal loss (arXiv:1708.02002), unnormalized: the softmax cross-entropy terms times
// (1 - p_t)^gamma, p_t = sum_c p_c * one_hot_c (the unsmoothed target's probability).
// [B, ...], or [B, ..., K] with keep_label_dimension.
torch::Tensor focal_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {},
    bool logits_normalized = false, double gamma = 2.0, bool keep_label_dimension = false);
// Sigmoid focal loss, elementwise [..., K]: BCE * (1 - p_t)^gamma * (alpha t + (1 - alpha)(1 - t)),
// p_t = exp(-BCE), t the (smoothed) target; then label_weights and weights.
torch::Tensor focal_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {},
    bool logits_normalized = false, double alpha = 0.5, double gamma = 2.0);

// output[i] = x[i, idx[i]]: x [B, N, ...], idx integer [B, M] -> [B, M, ...].
torch::Tensor simple_gather(const torch::Tensor& x, const torch::Tensor& idx);

// Sum of squares over parameters with more than one dimension (biases and scales excluded).
torch::Tensor l2_regularization(const std::vector<torch::Tensor>& params);

}  // namespace scenic::model
