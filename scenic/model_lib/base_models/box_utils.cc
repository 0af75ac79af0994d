#include "scenic/model_lib/base_models/box_utils.h"

#include <torch/torch.h>

#include <array>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

std::array<torch::Tensor, 4> split4(const torch::Tensor& boxes, const char* what) {
  if (boxes.dim() == 0 || boxes.size(-1) != 4)
    throw Error(std::string(what) + ": expected boxes [..., 4], got " + c10::str(boxes.sizes()));
  auto parts = boxes.unbind(-1);
  return {parts[0], parts[1], parts[2], parts[3]};
}

torch::Tensor stack4(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c,
                     const torch::Tensor& d) {
  return torch::stack({a, b, c, d}, -1);
}

void check_pair(const torch::Tensor& boxes1, const torch::Tensor& boxes2, bool all_pairs,
                const char* what) {
  auto ok = [](const torch::Tensor& b) { return b.dim() >= 2 && b.size(-1) == 4; };
  if (!ok(boxes1) || !ok(boxes2) || boxes1.dim() != boxes2.dim() ||
      boxes1.sizes().slice(0, boxes1.dim() - 2) != boxes2.sizes().slice(0, boxes2.dim() - 2))
    throw Error(std::string(what) + ": expected boxes [..., N, 4] and [..., M, 4], got " +
                c10::str(boxes1.sizes()) + " and " + c10::str(boxes2.sizes()));
  if (!all_pairs && boxes1.size(-2) != boxes2.size(-2))
    throw Error(std::string(what) + ": without all_pairs both sets need as many boxes, got " +
                c10::str(boxes1.sizes()) + " and " + c10::str(boxes2.sizes()));
}

torch::Tensor area(const torch::Tensor& boxes) {  // [..., 4] -> [...]
  auto wh = boxes.narrow(-1, 2, 2) - boxes.narrow(-1, 0, 2);
  return wh.select(-1, 0) * wh.select(-1, 1);
}

// The two boxes' corners lined up for an elementwise op: [..., N, 1, 2] vs
// [..., 1, M, 2] (all pairs) or [..., N, 2] vs [..., N, 2].
std::pair<torch::Tensor, torch::Tensor> corners(const torch::Tensor& boxes1,
                                                const torch::Tensor& boxes2, int64_t start,
                                                bool all_pairs) {
  auto c1 = boxes1.narrow(-1, start, 2);
  auto c2 = boxes2.narrow(-1, start, 2);
  if (all_pairs) return {c1.unsqueeze(-2), c2.unsqueeze(-3)};
  return {c1, c2};
}

}  // namespace

torch::Tensor box_cxcywh_to_xyxy(const torch::Tensor& boxes) {
  auto [cx, cy, w, h] = split4(boxes, "box_cxcywh_to_xyxy");
  return stack4(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h);
}

torch::Tensor box_cxcywh_to_yxyx(const torch::Tensor& boxes) {
  auto [cx, cy, w, h] = split4(boxes, "box_cxcywh_to_yxyx");
  return stack4(cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w);
}

torch::Tensor box_xyxy_to_cxcywh(const torch::Tensor& boxes) {
  auto [x0, y0, x1, y1] = split4(boxes, "box_xyxy_to_cxcywh");
  return stack4((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0);
}

torch::Tensor box_yxyx_to_cxcywh(const torch::Tensor& boxes) {
  auto [y0, x0, y1, x1] = split4(boxes, "box_yxyx_to_cxcywh");
  return stack4((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0);
}

torch::Tensor box_xywh_to_xyxy(const torch::Tensor& boxes) {
  auto [x0, y0, w, h] = split4(boxes, "box_xywh_to_xyxy");
  return stack4(x0, y0, x0 + w, y0 + h);
}

torch::Tensor box_xyxy_to_xywh(const torch::Tensor& boxes) {
  auto [x0, y0, x1, y1] = split4(boxes, "box_xyxy_to_xywh");
  return stack4(x0, y0, x1 - x0, y1 - y0);
}

std::pair<torch::Tensor, torch::Tensor> box_iou(const torch::Tensor& boxes1,
                                                const torch::Tensor& boxes2, bool all_pairs,
                                                double eps) {
  check_pair(boxes1, boxes2, all_pairs, "box_iou");
  auto area1 = area(boxes1);  // [B, N]
  auto area2 = area(boxes2);  // [B, M]
  auto [tl1, tl2] = corners(boxes1, boxes2, 0, all_pairs);
  auto [br1, br2] = corners(boxes1, boxes2, 2, all_pairs);
  auto lt = torch::maximum(tl1, tl2);           // [B, N, M, 2] or [B, N, 2]
  auto rb = torch::minimum(br1, br2);
  auto wh = (rb - lt).clamp_min(0.0);
  auto intersection = wh.select(-1, 0) * wh.select(-1, 1);  // [B, N, M] or [B, N]
  auto union_area = all_pairs ? area1.unsqueeze(-1) + area2.unsqueeze(-2) - intersection
                              : area1 + area2 - intersection;
  return {intersection / (union_area + eps), union_area};
}

torch::Tensor generalized_box_iou(const torch::Tensor& boxes1, const torch::Tensor& boxes2,
                                  bool all_pairs, double eps) {
  auto [iou, union_area] = box_iou(boxes1, boxes2, all_pairs, eps);
  // The enclosing box: the intersection's min/max flipped.
  auto [tl1, tl2] = corners(boxes1, boxes2, 0, all_pairs);
  auto [br1, br2] = corners(boxes1, boxes2, 2, all_pairs);
  auto wh = (torch::maximum(br1, br2) - torch::minimum(tl1, tl2)).clamp_min(0.0);
  auto enclosing = wh.select(-1, 0) * wh.select(-1, 1);
  return iou - (enclosing - union_area) / (enclosing + eps);
}

}  // namespace scenic::model
