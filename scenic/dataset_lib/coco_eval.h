// COCO bounding-box evaluation (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l), computed
// in C++ with the rules of pycocotools' COCOeval(iouType='bbox').
//
// Mirrors Scenic's `dataset_lib/coco_dataset/coco_eval.DetectionEvaluator` (which calls
// pycocotools) and the DETR side of it, `projects/baselines/detr/train_utils.
// DetrGlobalEvaluator` (add_predictions below). The numbers agree with pycocotools 2.0
// to rounding: coco_eval_test.cc checks every summary number and the per-category AP on
// generated and hand-made cases to 1e-12 (the differences seen are ~1e-14, from the
// order of summation), fixtures from tools/fixtures/coco_eval_reference.py. The rules,
// as pycocotools codes them:
// - Per (image, category): detections sorted by score (stable: ties keep input order),
//   the best 100 kept; IoU of boxes in xywh, against a crowd GT with the detection's own
//   area as denominator; GT ignored when crowd or its `area` field (not the box area) is
//   outside the area range; GT sorted non-ignored first; for each IoU threshold
//   .50:.05:.95 greedy matching in score order to the unmatched (crowd: any) GT of the
//   highest IoU >= threshold (ties: the later GT), never leaving a regular GT for an
//   ignored one; a match to an ignored GT, or an unmatched detection whose area w*h is
//   outside the range, is ignored (neither TP nor FP).
// - Per (category, area range, max detections 1/10/100): the first maxDet detections of
//   every image, merged over images in id order and stably sorted by score; recall =
//   TP / #non-ignored GT, precision made monotone from the right and read at the 101
//   recall points 0:.01:1 (first index with recall >= r; 0 past the last). Settings with
//   no non-ignored GT are -1 and left out of the means; a summary with nothing left is -1.
// Implemented: bbox only (no segm masks, no keypoint OKS), the default parameters
// (thresholds, area ranges all/small/medium/large = [0, 1e10] / [0, 32^2] / [32^2, 96^2]
// / [96^2, 1e10], inclusive at both ends, max detections 1/10/100), useCats = 1.
// Known differences from pycocotools, all on input it mishandles:
// - An empty detection list gives 0 (or -1 without GT) where pycocotools raises.
// - A GT annotation with id 0 counts as matched here; pycocotools stores matches by id
//   and so takes a match to id 0 for a false positive. GT ids are not needed here.
// - A GT without `area` uses its box area w*h (pycocotools raises KeyError); a GT without
//   `iscrowd` is not crowd.
// - A detection whose category is not a GT category is an error (pycocotools drops it
//   silently: almost always a label-mapping bug); one on an image not in the GT is an
//   error in both. GT annotations on unlisted images or categories are errors too (as
//   coco_detection.h's reader).
// - Means are summed left to right; numpy sums pairwise (differences ~1e-16).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"  // Batch

namespace scenic::dataset {

// One ground-truth object, bbox (x, y, w, h) in pixels of the original image.
struct CocoGtObject {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};
  double area = 0;  // COCO's `area` (the segment's for COCO), decides the area range
  bool iscrowd = false;
};

struct CocoGroundTruth {
  std::vector<int64_t> image_ids;     // every image of the set; images without objects count
  std::vector<int64_t> category_ids;  // sorted ascending; index i = contiguous label i
  std::vector<CocoGtObject> objects;  // in file order (it breaks IoU ties, as pycocotools)

  // Adds the real examples (batch_mask 1) of a detection batch (pipeline.h layout):
  // `boxes` [B, M, 4] normalized cxcywh scaled by `orig_size` [B, 2] (h, w) to pixels,
  // `labels` [B, M] (category index + 1, 0 = padding), `is_crowd` [B, M] (optional),
  // `image_id` [B]. area = w * h of the box (COCO's JSON area is the segment's, so use
  // read_coco_ground_truth when the JSON exists). Exact only if the eval chain does not
  // crop, since boxes clipped by a crop are not the original boxes. category_ids must be
  // set first. Throws scenic::Error on a repeated image id or a label out of range.
  void add_batch(const Batch& batch);
};

// Reads `images` (id), `categories` (id) and `annotations` (image_id, category_id,
// bbox, area, iscrowd) of a COCO JSON file; throws scenic::Error naming the file and
// the entry. Category order = CocoAnnotations::category_ids() of coco_detection.h.
CocoGroundTruth read_coco_ground_truth(const std::string& json_path);

// One detection in pycocotools' result format.
struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in original-image pixels
  double score = 0;
};

// A JSON list of {image_id, category_id, bbox, score} (what `scenic predict` writes and
// pycocotools' loadRes reads); throws scenic::Error naming the file and the entry.
std::vector<CocoDetection> read_coco_detections(const std::string& json_path);
void write_coco_detections(const std::string& json_path, const std::vector<CocoDetection>& dets);

struct CocoMetrics {
  // AP, AP_50, AP_75, AP_small, AP_medium, AP_large, AR_max_1, AR_max_10, AR_max_100,
  // AR_small, AR_medium, AR_large: Scenic's names (DetectionEvaluator.construct_result_dict),
  // in pycocotools' stats order.
  static const std::array<const char*, 12> kNames;
  std::array<double, 12> stats{};
  std::vector<int64_t> category_ids;
  std::vector<double> per_category_ap;  // AP@[.5:.95], area all, 100 dets; -1 without GT

  std::map<std::string, double> to_map() const;  // kNames[i] -> stats[i]
};

// pycocotools' evaluate + accumulate + summarize over `image_ids` (empty: every GT
// image, pycocotools' default). Throws scenic::Error for a detection on an image or
// category the GT does not list, or an image id in `image_ids` not in the GT.
CocoMetrics evaluate_coco(const CocoGroundTruth& gt, const std::vector<CocoDetection>& dets,
                          const std::vector<int64_t>& image_ids = {});

// Collects detections over an eval pass and evaluates them against fixed ground truth.
class CocoEvaluator {
 public:
  explicit CocoEvaluator(CocoGroundTruth gt);
  explicit CocoEvaluator(const std::string& gt_json_path);

  void add_detections(const std::vector<CocoDetection>& dets);

  // DETR outputs for one batch, as DetrGlobalEvaluator.add_example: pred_logits
  // [B, N, C] (C = K + 1, class 0 = no-object/padding, as the batch labels), pred_boxes
  // [B, N, 4] normalized (cx, cy, w, h) of the unpadded image; `batch` gives orig_size
  // [B, 2] (h, w), image_id [B] and batch_mask [B] (optional; 0 rows are skipped).
  // Per query: p = softmax(logits), label = argmax over classes 1..K (first on ties),
  // score = p[label], kept when score >= score_threshold (Scenic: 0, keep all); box
  // (cx - w/2, cy - h/2, w, h) * (W, H, W, H) of orig_size, not clipped; category id =
  // gt().category_ids[label - 1]. Each image's detections are added in descending score
  // (stable), as Scenic sorts them. Computed in float64 on the CPU.
  void add_predictions(const torch::Tensor& pred_logits, const torch::Tensor& pred_boxes,
                       const Batch& batch, double score_threshold = 0.0);

  // Over every GT image (pycocotools' default). Scenic's DetrGlobalEvaluator evaluates
  // only the images it was given predictions for: evaluate(image_ids_seen()).
  CocoMetrics evaluate() const { return evaluate_coco(gt_, dets_, {}); }
  CocoMetrics evaluate(const std::vector<int64_t>& image_ids) const {
    return evaluate_coco(gt_, dets_, image_ids);
  }

  // Image ids passed to add_predictions (real rows) or present in add_detections, in
  // the order first seen.
  const std::vector<int64_t>& image_ids_seen() const { return seen_; }
  const std::vector<CocoDetection>& detections() const { return dets_; }
  const CocoGroundTruth& gt() const { return gt_; }
  void write_detections_json(const std::string& path) const { write_coco_detections(path, dets_); }
  void clear();  // drops detections and seen ids, keeps the GT

 private:
  void mark_seen(int64_t image_id);

  CocoGroundTruth gt_;
  std::vector<CocoDetection> dets_;
  std::vector<int64_t> seen_;
  std::set<int64_t> seen_set_;
};

}  // namespace scenic::dataset
