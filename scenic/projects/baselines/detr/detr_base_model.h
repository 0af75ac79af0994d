// DETR's base model: bipartite-matching cost, set losses and metrics (Scenic's
// projects/baselines/detr/detr_base_model.py: `compute_cost`, `BaseModelWithMatching`,
// `DETRModel.labels_losses_and_metrics` / `boxes_losses_and_metrics`), registered as
// model `detr` with the network of detr_model.h.
//
// Matching (no gradient): cost[b, i, j] = class_coef * (-softmax(logits)[b, i, label_j])
//   + bbox_coef * L1(box_i, box_j) on cxcywh + giou_coef * (-GIoU(xyxy_i, xyxy_j));
// padded target columns (label 0) get Scenic's bound 1.1 * max(real cost) + 10, and the
// matcher (config key `matcher`, default Scenic's hungarian_cover_tpu; model/matchers)
// replaces NaN/Inf and solves only the real columns (n_cols).
// Targets: batch `labels` [B, M] (category + 1, 0 = padding, padding trailing), `boxes`
// [B, M, 4] normalized cxcywh. As Scenic's loss_function, one padding target is appended
// (so every prediction has a column), here after slicing the padding down to
// K = max #real boxes in the batch + 1 columns, which changes no match (padded columns
// are not solved) and keeps the matrix small; needs num_queries >= K. Predictions left
// unmatched (Scenic pads the matches) take a padding target: label 0 (no-object).
// Losses (per set of outputs; the batch's batch_mask weights examples):
//   loss_class = sum_q w_q CE(logits_q, label_q) / sum_q w_q, w = eos_coef for label 0,
//                1 otherwise (DETR's weighted cross-entropy, Scenic's 'detr' normalization);
//   loss_bbox  = sum over matched real targets of |xyxy(pred) - xyxy(tgt)|_1 / num_boxes
//                (Scenic takes the L1 on xyxy; PyTorch DETR on cxcywh);
//   loss_giou  = sum over matched real targets of (1 - GIoU) / num_boxes;
//   num_boxes  = max(real boxes in the batch, 1). Distributed training would all-reduce
//                (mean) num_boxes across processes before the max (Scenic's pmean); see
//                box_normalizer() in detr_base_model.cc.
// total = sum over the final and every auxiliary output (each matched on its own) of
// class_loss_coef * loss_class + bbox_loss_coef * loss_bbox + giou_loss_coef * loss_giou.
// Metrics (final outputs): loss (total), loss_class, loss_bbox, loss_giou (per batch,
// averaged over steps), class_accuracy (argmax over all classes on matched real
// targets, PyTorch DETR's 100 - class_error), class_accuracy_not_pad (Scenic's: argmax
// over the real classes 1.. only), cardinality_error (mean over images of
// |#queries whose argmax is not no-object - #real boxes|, PyTorch DETR's).
// Config keys (top level, as Scenic): class_loss_coef (1), bbox_loss_coef (5),
// giou_loss_coef (2), eos_coef (0.1), matcher; plus the network's (detr_model.h).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/matchers/matchers.h"
#include "scenic/projects/baselines/detr/detr_model.h"

namespace scenic::baselines::detr {

struct CostCoefficients {
  double class_coef = 1.0, bbox_coef = 5.0, giou_coef = 2.0;
};

// Scenic's compute_cost: pred_logits [B, N, C], pred_boxes [B, N, 4], tgt_labels
// [B, M] int64, tgt_boxes [B, M, 4] -> (cost [B, N, M] float32, n_cols [B] int64 =
// 1 + index of the last real target, 0 without any). Padded columns hold the bound.
std::pair<torch::Tensor, torch::Tensor> compute_cost(const torch::Tensor& pred_logits,
                                                     const torch::Tensor& pred_boxes,
                                                     const torch::Tensor& tgt_labels,
                                                     const torch::Tensor& tgt_boxes,
                                                     const CostCoefficients& coef);

struct DetrLossOptions {
  CostCoefficients cost;           // matching
  double class_loss_coef = 1.0;    // loss weights (Scenic uses the same keys for both)
  double bbox_loss_coef = 5.0;
  double giou_loss_coef = 2.0;
  double eos_coef = 0.1;
};

struct DetrLossResult {
  torch::Tensor total;                   // 0-dim, differentiable
  model::MetricsDict metrics;            // see the header comment
  torch::Tensor target_index;            // [B, N] int64: target column of each query (final outputs)
};

class DetrModel : public model::BaseModel {
 public:
  DetrModel(common::ConfigDict config, dataset::MetaData meta_data);

  std::shared_ptr<model::Network> build_network() const override;
  std::string default_network_config() const override { return ""; }
  // outputs: DETR's packed tensor [L, B, N, C + 4] (detr_model.h).
  torch::Tensor loss_function(const torch::Tensor& outputs, const dataset::Batch& batch,
                              const model::Network* network) const override;
  model::MetricsFn get_metrics_fn(const std::string& split) const override;

  // Everything at once (one matching per output set): what the DETR trainer calls.
  DetrLossResult loss_and_metrics(const DetrOutputs& outputs, const dataset::Batch& batch) const;

  // [B, N] int64: the target column of every query, matched by the configured matcher
  // on (logits, boxes) against labels/boxes already sliced to K columns (last one
  // padding). Unmatched queries get column K - 1.
  torch::Tensor match(const torch::Tensor& logits, const torch::Tensor& boxes, const torch::Tensor& labels,
                      const torch::Tensor& tgt_boxes) const;

  const DetrLossOptions& loss_options() const { return options_; }

 private:
  DetrLossOptions options_;
  model::MatcherFn matcher_;
};

}  // namespace scenic::baselines::detr
