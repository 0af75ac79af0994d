#include "scenic/projects/baselines/detr/detr_base_model.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/box_utils.h"

namespace scenic::baselines::detr {
namespace {

const torch::Tensor& need(const dataset::Batch& batch, const std::string& key) {
  auto it = batch.find(key);
  if (it == batch.end())
    throw Error("DETR: the batch has no '" + key +
                "' (a detection dataset is needed: dataset_configs.task: detection for shapes)");
  return it->second;
}

// Normalizer of the box losses: the number of real boxes, at least 1. In a
// data-parallel run this count would be all-reduced (averaged) across processes here,
// before the max, as Scenic's pmean over the 'batch' axis; one process needs nothing.
torch::Tensor box_normalizer(const torch::Tensor& num_boxes) { return num_boxes.clamp_min(1.0); }

struct SetLosses {
  torch::Tensor loss_class, loss_bbox, loss_giou;
};

}  // namespace

std::pair<torch::Tensor, torch::Tensor> compute_cost(const torch::Tensor& pred_logits, const torch::Tensor& pred_boxes,
                                                     const torch::Tensor& tgt_labels, const torch::Tensor& tgt_boxes,
                                                     const CostCoefficients& coef) {
  torch::NoGradGuard no_grad;
  const int64_t M = tgt_labels.size(1);
  auto prob = pred_logits.to(torch::kFloat32).softmax(-1);  // [B, N, C]
  // -p[b, i, label_j]: gather along classes with the labels broadcast over queries.
  auto idx = tgt_labels.unsqueeze(1).expand({-1, prob.size(1), -1});  // [B, N, M]
  auto cost = -coef.class_coef * prob.gather(2, idx);
  auto out_b = pred_boxes.to(torch::kFloat32), tgt_b = tgt_boxes.to(torch::kFloat32);
  cost = cost + coef.bbox_coef * (out_b.unsqueeze(2) - tgt_b.unsqueeze(1)).abs().sum(-1);
  cost = cost - coef.giou_coef * model::generalized_box_iou(model::box_cxcywh_to_xyxy(out_b),
                                                            model::box_cxcywh_to_xyxy(tgt_b), true);
  // Padded columns: Scenic's bound, 1.1 * (largest real cost, 1 if none) + 10.
  auto mask = (tgt_labels != 0).unsqueeze(1).expand_as(cost);  // [B, N, M]
  auto real_max = torch::where(mask, cost, torch::full_like(cost, -1e10)).amax({1, 2});  // [B]
  auto any_real = mask.any(2).any(1);
  auto bound = (torch::where(any_real, real_max, torch::ones_like(real_max)) * 1.1 + 10.0).view({-1, 1, 1});
  cost = torch::where(mask, cost, bound.expand_as(cost));
  // n_cols: 1 + the index of the last real column (trailing padding assumed, as Scenic).
  auto positions = torch::arange(1, M + 1, tgt_labels.options()).unsqueeze(0);
  auto n_cols = torch::where(tgt_labels != 0, positions, torch::zeros_like(positions)).amax(1);
  return {cost, n_cols};
}

DetrModel::DetrModel(common::ConfigDict config, dataset::MetaData meta_data)
    : BaseModel(std::move(config), std::move(meta_data)) {
  options_.class_loss_coef = config_.get<double>("class_loss_coef", options_.class_loss_coef);
  options_.bbox_loss_coef = config_.get<double>("bbox_loss_coef", options_.bbox_loss_coef);
  options_.giou_loss_coef = config_.get<double>("giou_loss_coef", options_.giou_loss_coef);
  options_.eos_coef = config_.get<double>("eos_coef", options_.eos_coef);
  // Scenic matches with the loss coefficients.
  options_.cost = {options_.class_loss_coef, options_.bbox_loss_coef, options_.giou_loss_coef};
  matcher_ = model::get_matcher(config_);
}

std::shared_ptr<model::Network> DetrModel::build_network() const {
  return DETR::from_config(config_, meta_data_);
}

torch::Tensor DetrModel::match(const torch::Tensor& logits, const torch::Tensor& boxes, const torch::Tensor& labels,
                               const torch::Tensor& tgt_boxes) const {
  torch::NoGradGuard no_grad;
  const int64_t B = logits.size(0), N = logits.size(1), K = labels.size(1);
  auto [cost, n_cols] = compute_cost(logits.detach(), boxes.detach(), labels, tgt_boxes, options_.cost);
  auto matches = matcher_(cost.cpu(), n_cols.cpu());  // [B, 2, K] int64 on the CPU
  auto target = torch::full({B, N}, K - 1, torch::kInt64);
  auto t = target.accessor<int64_t, 2>();
  auto m = matches.accessor<int64_t, 3>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < matches.size(2); ++k) t[b][m[b][0][k]] = m[b][1][k];
  return target.to(logits.device());
}

DetrLossResult DetrModel::loss_and_metrics(const DetrOutputs& outputs, const dataset::Batch& batch) const {
  const auto& labels_in = need(batch, "labels");  // [B, M]
  const auto& boxes_in = need(batch, "boxes");    // [B, M, 4]
  const auto& logits = outputs.pred_logits;       // [B, N, C]
  const int64_t B = logits.size(0), N = logits.size(1), C = logits.size(2);
  const auto device = logits.device();
  if (labels_in.dim() != 2 || labels_in.size(0) != B || boxes_in.dim() != 3 || boxes_in.size(1) != labels_in.size(1))
    throw Error("DETR: batch 'labels' must be [B, M] and 'boxes' [B, M, 4] with B = " + std::to_string(B));
  auto labels_full = labels_in.to(device, torch::kInt64);
  auto n_real = (labels_full != 0).sum(1);  // [B]
  if (labels_full.numel() && labels_full.max().item<int64_t>() >= C)
    throw Error("DETR: a target label is >= the number of classes " + std::to_string(C));
  // K = most real boxes in the batch + one padding column (Scenic's dummy target).
  const int64_t K = (B ? n_real.max().item<int64_t>() : 0) + 1;
  if (K > N)
    throw Error("DETR: an image has " + std::to_string(K - 1) + " boxes but there are only " + std::to_string(N) +
                " queries (num_queries must exceed the number of objects per image)");
  auto labels = torch::cat({labels_full, torch::zeros({B, 1}, labels_full.options())}, 1).narrow(1, 0, K);
  auto tgt_boxes = torch::cat({boxes_in.to(device, torch::kFloat32), torch::zeros({B, 1, 4}, logits.options())}, 1)
                       .narrow(1, 0, K);
  auto batch_mask = batch.count("batch_mask") ? batch.at("batch_mask").to(device, torch::kFloat32)
                                              : torch::ones({B}, logits.options());

  auto label_weights = torch::ones({C}, logits.options());
  label_weights[0] = options_.eos_coef;

  torch::Tensor final_target;
  auto set_losses = [&](const torch::Tensor& lg, const torch::Tensor& bx, bool keep_target) {
    auto target = match(lg, bx, labels, tgt_boxes);          // [B, N]
    if (keep_target) final_target = target;
    auto tgt_label = labels.gather(1, target);              // [B, N]
    auto tgt_box = tgt_boxes.gather(1, target.unsqueeze(-1).expand({-1, -1, 4}));  // [B, N, 4]
    SetLosses s;
    auto w = label_weights.index_select(0, tgt_label.flatten()).view({B, N}) * batch_mask.unsqueeze(1);
    auto ce = -lg.to(torch::kFloat32).log_softmax(-1).gather(2, tgt_label.unsqueeze(-1)).squeeze(-1);  // [B, N]
    s.loss_class = (w * ce).sum() / w.sum().clamp_min(1e-9);
    auto real = (tgt_label != 0).to(torch::kFloat32) * batch_mask.unsqueeze(1);  // [B, N]
    // Padding targets get a benign box so that no NaN enters the (masked) terms.
    auto safe_tgt = torch::where(real.unsqueeze(-1) > 0, tgt_box,
                                 torch::tensor({0.5f, 0.5f, 1.0f, 1.0f}, logits.options()).expand_as(tgt_box));
    auto src_xyxy = model::box_cxcywh_to_xyxy(bx.to(torch::kFloat32));
    auto tgt_xyxy = model::box_cxcywh_to_xyxy(safe_tgt);
    auto norm = box_normalizer(real.sum());
    s.loss_bbox = (real * (src_xyxy - tgt_xyxy).abs().sum(-1)).sum() / norm;
    s.loss_giou = (real * (1.0 - model::generalized_box_iou(src_xyxy, tgt_xyxy, false))).sum() / norm;
    return s;
  };
  auto weighted = [&](const SetLosses& s) {
    return options_.class_loss_coef * s.loss_class + options_.bbox_loss_coef * s.loss_bbox +
           options_.giou_loss_coef * s.loss_giou;
  };

  DetrLossResult r;
  const SetLosses final_losses = set_losses(logits, outputs.pred_boxes, true);
  r.total = weighted(final_losses);
  for (const auto& [aux_logits, aux_boxes] : outputs.aux_outputs) r.total = r.total + weighted(set_losses(aux_logits, aux_boxes, false));
  r.target_index = final_target;

  torch::NoGradGuard no_grad;
  auto one = torch::ones({}, logits.options());
  auto& m = r.metrics;
  m["loss"] = {r.total.detach(), one};
  m["loss_class"] = {final_losses.loss_class.detach(), one};
  m["loss_bbox"] = {final_losses.loss_bbox.detach(), one};
  m["loss_giou"] = {final_losses.loss_giou.detach(), one};
  auto tgt_label = labels.gather(1, final_target);
  auto real = (tgt_label != 0).to(torch::kFloat32) * batch_mask.unsqueeze(1);
  auto lg = logits.detach();
  auto correct = (lg.argmax(-1) == tgt_label).to(torch::kFloat32);
  auto correct_not_pad = (lg.narrow(-1, 1, C - 1).argmax(-1) + 1 == tgt_label).to(torch::kFloat32);
  m["class_accuracy"] = {(correct * real).sum(), real.sum()};
  m["class_accuracy_not_pad"] = {(correct_not_pad * real).sum(), real.sum()};
  auto predicted_objects = (lg.argmax(-1) != 0).to(torch::kFloat32).sum(1);  // [B]
  auto card_err = (predicted_objects - n_real.to(torch::kFloat32)).abs();
  m["cardinality_error"] = {(card_err * batch_mask).sum(), batch_mask.sum()};
  return r;
}

torch::Tensor DetrModel::loss_function(const torch::Tensor& outputs, const dataset::Batch& batch,
                                       const model::Network* /*network*/) const {
  return loss_and_metrics(unpack_detr_outputs(outputs, meta_data_.num_classes), batch).total;
}

model::MetricsFn DetrModel::get_metrics_fn(const std::string& /*split*/) const {
  return [this](const torch::Tensor& outputs, const dataset::Batch& batch) {
    torch::NoGradGuard no_grad;
    return loss_and_metrics(unpack_detr_outputs(outputs, meta_data_.num_classes), batch).metrics;
  };
}

}  // namespace scenic::baselines::detr
