// Loss and metric functions with Scenic's exact semantics (model_lib/base_models/model_utils.py).
//
// Conventions as in Scenic: `one_hot` targets are float [..., K]; `weights` is the
// batch_mask ([B] or [B, ...]) broadcast over trailing dims, or an undefined tensor for
// "no weights". Per-example functions return [B, ...]; the normalized losses return a
// 0-dim tensor divided by sum(weights) (or the example count) + 1e-8.
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
// -sum_c t_c log_softmax(z)_c per example; label_weights [K] multiply the targets.
torch::Tensor weighted_unnormalized_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {});
// Sum of the above divided by (sum(weights) or prod(one_hot.shape[:-1])) + 1e-8.
torch::Tensor weighted_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights = {},
    double label_smoothing = 0.0, const torch::Tensor& label_weights = {});

// Elementwise binary cross-entropy from logits, [..., K] (not summed over classes).
torch::Tensor weighted_unnormalized_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights = {},
    const torch::Tensor& label_weights = {}, double label_smoothing = 0.0);
// Summed over classes and examples, divided by (sum(weights) or the example count) + 1e-8.
torch::Tensor weighted_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights = {},
    const torch::Tensor& label_weights = {}, double label_smoothing = 0.0);
// The target value at the arg-max logit (1 when the top prediction is a positive label).
torch::Tensor weighted_top_one_correctly_classified(const torch::Tensor& logits,
                                                    const torch::Tensor& multi_hot,
                                                    const torch::Tensor& weights = {});

// Sum of squares over parameters with more than one dimension (biases and scales excluded).
torch::Tensor l2_regularization(const std::vector<torch::Tensor>& params);

}  // namespace scenic::model
