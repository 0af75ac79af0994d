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
    double label_smoothing, const torch::Tensor& label_weights, bool logits_normalized,
    bool keep_label_dimension) {
  if (logits.sizes() != one_hot.sizes())
    throw Error("softmax cross-entropy: logits " + c10::str(logits.sizes()) +
                " and targets " + c10::str(one_hot.sizes()) + " differ in shape");
  auto targets = one_hot;
  if (label_smoothing > 0.0) targets = apply_label_smoothing(targets, label_smoothing);
  if (label_weights.defined()) targets = targets * label_weights;
  auto z = logits.to(torch::kFloat32);
  auto loss = -(targets * (logits_normalized ? z : torch::log_softmax(z, -1)));  // [..., K]
  if (weights.defined()) loss = apply_weights(loss, weights);
  return keep_label_dimension ? loss : loss.sum(-1);
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

namespace {

// Elementwise -(t log p + (1 - t) log(1 - p)) from logits or, when logits_normalized,
// from log p (Scenic adds 1e-6 inside log(1 - p) there, as p may be exactly 1).
torch::Tensor binary_cross_entropy_terms(const torch::Tensor& logits, const torch::Tensor& targets,
                                         bool logits_normalized) {
  auto z = logits.to(torch::kFloat32);
  torch::Tensor log_p, log_not_p;
  if (logits_normalized) {
    log_p = z;
    log_not_p = torch::log((1.0 + 1e-6) - torch::exp(z));
  } else {
    // log_sigmoid on both sides is the numerically stable form of BCE.
    log_p = torch::log_sigmoid(z);
    log_not_p = torch::log_sigmoid(-z);
  }
  return -(targets * log_p + (1.0 - targets) * log_not_p);
}

void check_same_shape(const char* what, const torch::Tensor& logits, const torch::Tensor& targets) {
  if (logits.sizes() != targets.sizes())
    throw Error(std::string(what) + ": logits " + c10::str(logits.sizes()) + " and targets " +
                c10::str(targets.sizes()) + " differ in shape");
}

void check_k(const char* what, const torch::Tensor& logits, int64_t k) {
  if (logits.dim() == 0 || k <= 0 || k > logits.size(-1))
    throw Error(std::string(what) + ": k = " + std::to_string(k) + " must be in [1, " +
                (logits.dim() ? std::to_string(logits.size(-1)) : std::string("?")) +
                "] for logits " + c10::str(logits.sizes()));
}

// [..., K] 0/1 float: the k highest logits, ties to the lower index (as jax.lax.top_k).
torch::Tensor topk_multi_hot(const torch::Tensor& logits, int64_t k) {
  auto order = std::get<1>(logits.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true));
  auto top = order.narrow(-1, 0, k);
  return torch::zeros(logits.sizes(), logits.options().dtype(torch::kFloat32))
      .scatter_(-1, top, 1.0f);
}

}  // namespace

torch::Tensor weighted_unnormalized_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights,
    const torch::Tensor& label_weights, double label_smoothing, bool logits_normalized) {
  check_same_shape("sigmoid cross-entropy", logits, multi_hot);
  auto targets = label_smoothing > 0.0 ? apply_label_smoothing(multi_hot, label_smoothing) : multi_hot;
  auto loss = binary_cross_entropy_terms(logits, targets, logits_normalized);
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

torch::Tensor weighted_topk_correctly_classified(const torch::Tensor& logits,
                                                 const torch::Tensor& multi_hot,
                                                 const torch::Tensor& weights, int64_t k) {
  check_same_shape("top-k correctly classified", logits, multi_hot);
  check_k("top-k correctly classified", logits, k);
  auto hit = (topk_multi_hot(logits, k) * multi_hot).sum(-1) > 0;
  auto correct = hit.to(torch::kFloat32);
  return weights.defined() ? apply_weights(correct, weights) : correct;
}

torch::Tensor weighted_precision_at_k(const torch::Tensor& logits, const torch::Tensor& multi_hot,
                                      const torch::Tensor& weights, int64_t k) {
  check_same_shape("precision@k", logits, multi_hot);
  check_k("precision@k", logits, k);
  // Exactly k classes are predicted, so true + false positives = k.
  auto precision = (topk_multi_hot(logits, k) * multi_hot).sum(-1).to(torch::kFloat32) / k;
  return weights.defined() ? apply_weights(precision, weights) : precision;
}

torch::Tensor weighted_recall(const torch::Tensor& logits, const torch::Tensor& multi_hot,
                              const torch::Tensor& weights) {
  check_same_shape("recall", logits, multi_hot);
  const int64_t num_classes = multi_hot.size(-1);
  // Descending rank order as Scenic gets it: a stable ascending argsort, reversed.
  auto order = std::get<1>(logits.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/false)).flip(-1);
  auto targets = multi_hot.to(torch::kFloat32);
  auto correct_at_rank = targets.gather(-1, order);               // [..., K]
  auto num_gt = targets.sum(-1, /*keepdim=*/true);                // [..., 1]
  auto ranks = torch::arange(num_classes, targets.options());     // [K]
  auto in_top = (num_gt > ranks).to(torch::kFloat32);             // rank < num_gt
  auto recall = (correct_at_rank * in_top).sum(-1) / (targets.sum(-1) + 1e-12);
  return weights.defined() ? apply_weights(recall, weights) : recall;
}

torch::Tensor focal_softmax_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& one_hot, const torch::Tensor& weights,
    double label_smoothing, const torch::Tensor& label_weights, bool logits_normalized,
    double gamma, bool keep_label_dimension) {
  auto loss = weighted_unnormalized_softmax_cross_entropy(
      logits, one_hot, /*weights=*/{}, label_smoothing, label_weights, logits_normalized,
      /*keep_label_dimension=*/true);  // [..., K]
  auto z = logits.to(torch::kFloat32);
  auto prob = logits_normalized ? torch::exp(z) : torch::softmax(z, -1);
  // p_t uses the unsmoothed targets, as in Scenic.
  auto p_t = (prob * one_hot).sum(-1, /*keepdim=*/true);  // [..., 1]
  loss = loss * torch::pow(1.0 - p_t, gamma);
  if (weights.defined()) loss = apply_weights(loss, weights);
  return keep_label_dimension ? loss : loss.sum(-1);
}

torch::Tensor focal_sigmoid_cross_entropy(
    const torch::Tensor& logits, const torch::Tensor& multi_hot, const torch::Tensor& weights,
    double label_smoothing, const torch::Tensor& label_weights, bool logits_normalized,
    double alpha, double gamma) {
  check_same_shape("focal sigmoid cross-entropy", logits, multi_hot);
  auto targets = label_smoothing > 0.0 ? apply_label_smoothing(multi_hot, label_smoothing) : multi_hot;
  auto loss = binary_cross_entropy_terms(logits, targets, logits_normalized);
  auto p_t = torch::exp(-loss);
  loss = loss * torch::pow(1.0 - p_t, gamma);
  loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets));
  if (label_weights.defined()) loss = loss * label_weights;
  return weights.defined() ? apply_weights(loss, weights) : loss;
}

torch::Tensor simple_gather(const torch::Tensor& x, const torch::Tensor& idx) {
  if (x.dim() < 2 || idx.dim() != 2 || idx.size(0) != x.size(0))
    throw Error("simple_gather: expected x [B, N, ...] and idx [B, M], got x " +
                c10::str(x.sizes()) + " and idx " + c10::str(idx.sizes()));
  auto rows = torch::arange(x.size(0), idx.options().dtype(torch::kLong)).unsqueeze(1);  // [B, 1]
  return x.index({rows, idx.to(torch::kLong)});  // [B, M, ...]
}

torch::Tensor l2_regularization(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> squares;
  for (const auto& p : params)
    if (p.dim() > 1) squares.push_back(p.pow(2).sum());
  if (squares.empty()) return torch::zeros({});
  return torch::stack(squares).sum();
}

}  // namespace scenic::model
