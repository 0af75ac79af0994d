// Axis-aligned box utilities (Scenic's model_lib/base_models/box_utils.py, after DETR's
// box_ops): format conversions over the last axis of size 4, IoU and generalized IoU.
//
// Formats: xyxy = [x0, y0, x1, y1] (top-left, bottom-right), cxcywh = [cx, cy, w, h],
// yxyx = [y0, x0, y1, x1], xywh = [x0, y0, w, h]. Everything is built from
// differentiable torch ops, so DETR-style losses backpropagate through it. Scenic's
// rotated-box helpers (cxcywha_to_corners, ...) are not ported yet.
#pragma once

#include <torch/types.h>

#include <utility>

namespace scenic::model {

torch::Tensor box_cxcywh_to_xyxy(const torch::Tensor& boxes);  // [..., 4] -> [..., 4]
torch::Tensor box_cxcywh_to_yxyx(const torch::Tensor& boxes);
torch::Tensor box_xyxy_to_cxcywh(const torch::Tensor& boxes);
torch::Tensor box_yxyx_to_cxcywh(const torch::Tensor& boxes);
torch::Tensor box_xywh_to_xyxy(const torch::Tensor& boxes);
torch::Tensor box_xyxy_to_xywh(const torch::Tensor& boxes);

// IoU of xyxy boxes1 [B, N, 4] and boxes2 [B, M, 4] (any equal leading dims in place of
// B): (iou, union), each [B, N, M] with all_pairs, else (N == M) between corresponding
// boxes, [B, N].
// iou = intersection / (union + eps).
std::pair<torch::Tensor, torch::Tensor> box_iou(const torch::Tensor& boxes1,
                                                const torch::Tensor& boxes2, bool all_pairs = true,
                                                double eps = 1e-6);
// Generalized IoU (giou.stanford.edu): iou - (area_c - union) / (area_c + eps), area_c
// the area of the smallest box enclosing both. Shapes as box_iou.
torch::Tensor generalized_box_iou(const torch::Tensor& boxes1, const torch::Tensor& boxes2,
                                  bool all_pairs = true, double eps = 1e-6);

}  // namespace scenic::model
