// EncoderDecoderModel: sequence-output models trained with token-level softmax
// cross-entropy (Scenic's base_models/encoder_decoder_model.py).
//
// Batch: `label` int64 [B, L] (or one-hot [B, L, V] with target_is_onehot), optional
// `batch_mask`; the network's logits are [B, L, V].
// Loss: weighted_softmax_cross_entropy(logits, one_hot, batch_mask, label_smoothing)
// + 0.5 * l2_decay_factor * L2. As in Scenic, a sequence-level mask [B] is used as given,
// so the loss is normalized by the number of real sequences (B * L without a mask).
// Metrics: the mask is tiled to tokens [B, L] (a token mask [B, L] is used as is), then
// `accuracy` = (correct tokens, real tokens), `loss` = (mean token cross-entropy, 1), and
// `perplexity` = (min(exp(loss), 1e4), 1).
#pragma once

#include <optional>

#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::model {

class EncoderDecoderModel : public BaseModel {
 public:
  static constexpr double kMaxPerplexity = 1.0e4;

  EncoderDecoderModel(common::ConfigDict config, dataset::MetaData meta_data);

  torch::Tensor loss_function(const torch::Tensor& logits, const dataset::Batch& batch,
                              const Network* network) const override;
  MetricsFn get_metrics_fn(const std::string& split) const override;

  // The label as float one-hot [B, L, V].
  torch::Tensor targets(const torch::Tensor& logits, const dataset::Batch& batch) const;

 private:
  double label_smoothing_ = 0.0;
  std::optional<double> l2_decay_factor_;
};

}  // namespace scenic::model
