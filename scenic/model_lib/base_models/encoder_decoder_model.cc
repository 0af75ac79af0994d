#include "scenic/model_lib/base_models/encoder_decoder_model.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/model_utils.h"

namespace scenic::model {
namespace {

torch::Tensor batch_mask(const dataset::Batch& batch) {
  auto it = batch.find("batch_mask");
  return it == batch.end() ? torch::Tensor() : it->second.to(torch::kFloat32);
}

void check_logits(const torch::Tensor& logits) {
  if (logits.dim() != 3)
    throw Error("encoder-decoder logits must be [B, L, V], got " + c10::str(logits.sizes()));
}

}  // namespace

EncoderDecoderModel::EncoderDecoderModel(common::ConfigDict config, dataset::MetaData meta_data)
    : BaseModel(std::move(config), std::move(meta_data)) {
  label_smoothing_ = config_.get<double>("label_smoothing", 0.0);
  l2_decay_factor_ = config_.get_optional<double>("l2_decay_factor");
}

torch::Tensor EncoderDecoderModel::targets(const torch::Tensor& logits, const dataset::Batch& batch) const {
  check_logits(logits);
  auto it = batch.find("label");
  if (it == batch.end()) throw Error("encoder-decoder batch has no 'label' key");
  if (meta_data_.target_is_onehot) return it->second.to(torch::kFloat32);
  if (it->second.dim() != 2)
    throw Error("encoder-decoder label must be [B, L] token ids, got " + c10::str(it->second.sizes()));
  return onehot(it->second, logits.size(-1));
}

torch::Tensor EncoderDecoderModel::loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                                                 const Network* network) const {
  auto loss = weighted_softmax_cross_entropy(logits, targets(logits, batch), batch_mask(batch),
                                             label_smoothing_);
  if (l2_decay_factor_ && network != nullptr)
    loss = loss + 0.5 * *l2_decay_factor_ * l2_regularization(network->parameters());
  return loss;
}

MetricsFn EncoderDecoderModel::get_metrics_fn(const std::string& /*split*/) const {
  return [this](const torch::Tensor& logits, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    auto one_hot = targets(logits, batch);
    const int64_t length = one_hot.size(1);
    auto weights = batch_mask(batch);
    // A sequence mask [B] covers each of its tokens: [B, L].
    if (weights.defined() && weights.dim() == 1) weights = weights.unsqueeze(1).expand({-1, length});
    auto options = logits.options().dtype(torch::kFloat32);
    auto num_tokens = weights.defined()
                          ? weights.sum()
                          : torch::full({}, static_cast<double>(one_hot.size(0) * length), options);
    auto loss = weighted_softmax_cross_entropy(logits, one_hot, weights);
    auto one = torch::ones({}, options);
    MetricsDict metrics;
    metrics["accuracy"] = {weighted_correctly_classified(logits, one_hot, weights).sum(), num_tokens};
    metrics["loss"] = {loss, one};
    metrics["perplexity"] = {torch::exp(loss / one).clamp_max(kMaxPerplexity), one};
    return metrics;
  };
}

}  // namespace scenic::model
