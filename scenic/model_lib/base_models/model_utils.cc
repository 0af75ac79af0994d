#include "scenic/model_lib/base_models/model_utils.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"

namespace scenic::model {

torch::Tensor onehot(const torch::Tensor& labels, int64_t num_classes) {
  return torch::one_hot(labels.to(torch::kLong), num_classes).to(torch::kFloat32);
}

torch::Tensor apply_label_smoothing(const torch::Tensor& one_hot, double label_smoothing) {
  const auto k = static_cast<double>(one_hot.size(-1));
  return one_hot * (1.0 - label_smoothing) + label_smoothing / k;
}

torch::Tensor apply_weights(const torch::Tensor& output, const torch::Tensor& weights) {
  if (weights.dim() > output.dim())
    throw Error("apply_weights: weights of shape " + c10::str(weights.sizes()) +
                " have more dims than the output " + c10::str(output.sizes()));
  auto w = weights;
  while (w.dim() < output.dim()) w = w.unsqueeze(-1);
  return output * w;
}

torch::Tensor num_examples(const torch::Tensor& logits, const torch::Tensor& one_hot,
                           const torch::Tensor& weights) {
  if (!weights.defined())
    return torch::full({}, static_cast<double>(one_hot.size(0)), logits.options().dtype(torch::kFloat32));
  return weights.sum().to(torch::kFloat32);
}

torch::Tensor weighted_correctly_classified(const torch::Tensor& logits, const torch::Tensor& one_hot,
                                            const torch::Tensor& weights) {
  auto correct = (logits.argmax(-1) == one_hot.argmax(-1)).to(torch::kFloat32);
  return weights.defined() ? apply_weights(correct, weights) : correct;
}

torch::Tensor weighted_unnormalized_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights,
    double label_smoothing, const torch::Tensor& label_weights) {
  if (logits.sizes() != one_hot.sizes())
    throw Error("softmax cross-entropy: logits " + c10::str(logits.sizes()) +
                " and targets " + c10::str(one_hot.sizes()) + " differ in shape");
  auto targets = one_hot;
  if (label_smoothing > 0.0) targets = apply_label_smoothing(targets, label_smoothing);
  if (label_weights.defined()) targets = targets * label_weights;
  auto loss = -(targets * torch::log_softmax(logits.to(torch::kFloat32), -1)).sum(-1);
  return weights.defined() ? apply_weights(loss, weights) : loss;
}

torch::Tensor weighted_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights,
    double label_smoothing, const torch::Tensor& label_weights) {
  auto loss = weighted_unnormalized_softmax_cross_entropy(logits, one_hot, weights,
                                                          label_smoothing, label_weights);
  torch::Tensor normalization;
  if (weights.defined()) {
    normalization = weights.sum().to(torch::kFloat32);
  } else {
    normalization = torch::full({}, static_cast<double>(one_hot.numel() / one_hot.size(-1)),
                                loss.options());
  }
  return loss.sum() / (normalization + 1e-8);
}

torch::Tensor weighted_unnormalized_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights,
    const torch::Tensor& label_weights, double label_smoothing) {
  if (logits.sizes() != multi_hot.sizes())
    throw Error("sigmoid cross-entropy: logits " + c10::str(logits.sizes()) +
                " and targets " + c10::str(multi_hot.sizes()) + " differ in shape");
  auto targets = label_smoothing > 0.0 ? apply_label_smoothing(multi_hot, label_smoothing) : multi_hot;
  auto z = logits.to(torch::kFloat32);
  // log_sigmoid on both sides is the numerically stable form of BCE.
  auto loss = -(targets * torch::log_sigmoid(z) + (1.0 - targets) * torch::log_sigmoid(-z));
  if (label_weights.defined()) loss = loss * label_weights;
  return weights.defined() ? apply_weights(loss, weights) : loss;
}

torch::Tensor weighted_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights,
    const torch::Tensor& label_weights, double label_smoothing) {
  auto loss = weighted_unnormalized_sigmoid_cross_entropy(logits, multi_hot, weights, label_weights,
                                                          label_smoothing);
  torch::Tensor normalization =
      weights.defined() ? weights.sum().to(torch::kFloat32)
                        : torch::full({}, static_cast<double>(multi_hot.numel() / multi_hot.size(-1)),
                                      loss.options());
  return loss.sum() / (normalization + 1e-8);
}

torch::Tensor weighted_top_one_correctly_classified(const torch::Tensor& logits,
                                                    const torch::Tensor& multi_hot,
                                                    const torch::Tensor& weights) {
  auto top = multi_hot.gather(-1, logits.argmax(-1, /*keepdim=*/true)).squeeze(-1).to(torch::kFloat32);
  return weights.defined() ? apply_weights(top, weights) : top;
}

torch::Tensor l2_regularization(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> squares;
  for (const auto& p : params)
    if (p.dim() > 1) squares.push_back(p.pow(2).sum());
  if (squares.empty()) return torch::zeros({});
  return torch::stack(squares).sum();
}

}  // namespace scenic::model
