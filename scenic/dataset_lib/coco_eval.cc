#include "scenic/dataset_lib/coco_eval.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <unordered_map>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

namespace {

using Json = nlohmann::json;

// pycocotools' Params.setDetParams. The IoU thresholds are np.linspace(.5, .95, 10)
// written out (0.8999999999999999 is what linspace makes, not 0.9); recall thresholds
// are linspace(0, 1, 101) = r * 0.01 for r < 100, then exactly 1.
constexpr int kT = 10, kR = 101, kA = 4, kM = 3;
constexpr double kIouThresholds[kT] = {0.5, 0.55, 0.6, 0.65, 0.7, 0.75,
                                       0.8, 0.85, 0.8999999999999999, 0.95};
constexpr double kAreaRanges[kA][2] = {{0, 1e10}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e10}};
constexpr int kMaxDets[kM] = {1, 10, 100};
constexpr double kEps = 2.220446049250313e-16;  // np.spacing(1)

double recall_threshold(int r) { return r == kR - 1 ? 1.0 : static_cast<double>(r) * 0.01; }

// ---------------------------------------------------------------- JSON reading helpers

std::string where(const std::string& file, const std::string& entry) {
  return "coco_eval: " + file + (entry.empty() ? "" : ": " + entry);
}

Json parse_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw Error(where(path, "") + ": cannot open the " + what + " file");
  try {
    return Json::parse(in);
  } catch (const Json::exception& e) {
    throw Error(where(path, "") + ": invalid JSON: " + e.what());
  }
}

const Json& field(const Json& obj, const char* key, const std::string& w) {
  if (!obj.is_object()) throw Error(w + ": expected a JSON object");
  auto it = obj.find(key);
  if (it == obj.end()) throw Error(w + ": missing key '" + key + "'");
  return *it;
}

int64_t int_field(const Json& obj, const char* key, const std::string& w) {
  const Json& v = field(obj, key, w);
  if (!v.is_number_integer()) throw Error(w + ": key '" + key + "' must be an integer, got " + v.dump());
  return v.get<int64_t>();
}

double number_field(const Json& obj, const char* key, const std::string& w) {
  const Json& v = field(obj, key, w);
  if (!v.is_number()) throw Error(w + ": key '" + key + "' must be a number, got " + v.dump());
  return v.get<double>();
}

std::array<double, 4> bbox_field(const Json& obj, const std::string& w) {
  const Json& b = field(obj, "bbox", w);
  if (!b.is_array() || b.size() != 4 ||
      !std::all_of(b.begin(), b.end(), [](const Json& v) { return v.is_number(); }))
    throw Error(w + ": 'bbox' must be 4 numbers [x, y, width, height], got " + b.dump());
  std::array<double, 4> out{b[0].get<double>(), b[1].get<double>(), b[2].get<double>(), b[3].get<double>()};
  if (out[2] < 0 || out[3] < 0) throw Error(w + ": 'bbox' has a negative width or height: " + b.dump());
  return out;
}

const Json& list_field(const Json& root, const char* key, const std::string& w) {
  const Json& v = field(root, key, w);
  if (!v.is_array()) throw Error(w + ": key '" + key + "' must be a list");
  return v;
}

std::string entry(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// ------------------------------------------------------------------- evaluation core

// One (image, category) pair at one area range: pycocotools' evaluateImg result.
struct ImageEval {
  std::vector<double> scores;             // [D] sorted descending, at most 100
  std::vector<uint8_t> matched, ignored;  // [T * D], t-major
  int64_t num_gt = 0;                     // non-ignored GT
};

// maskApi.c bbIou: IoU of xywh boxes; for a crowd GT the union is the detection's area.
double box_iou(const std::array<double, 4>& d, const std::array<double, 4>& g, bool crowd) {
  const double w = std::min(d[2] + d[0], g[2] + g[0]) - std::max(d[0], g[0]);
  if (w <= 0) return 0;
  const double h = std::min(d[3] + d[1], g[3] + g[1]) - std::max(d[1], g[1]);
  if (h <= 0) return 0;
  const double da = d[2] * d[3], ga = g[2] * g[3];
  const double inter = w * h;
  const double uni = crowd ? da : da + ga - inter;
  return inter / uni;
}

// Matches the (score-sorted, truncated) detections `dt` of one (image, category) to
// its GT `gt` at every IoU threshold for area range `a`; iou is [D][G] in gt's order.
ImageEval evaluate_image(const std::vector<const CocoGtObject*>& gt,
                         const std::vector<const CocoDetection*>& dt,
                         const std::vector<double>& iou, int a) {
  const double lo = kAreaRanges[a][0], hi = kAreaRanges[a][1];
  const size_t G = gt.size(), D = dt.size();
  std::vector<uint8_t> gt_ignore(G);
  for (size_t g = 0; g < G; ++g) gt_ignore[g] = gt[g]->iscrowd || gt[g]->area < lo || gt[g]->area > hi;
  // Non-ignored GT first, keeping the file order within each group (a stable argsort).
  std::vector<size_t> order(G);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return gt_ignore[x] < gt_ignore[y]; });

  ImageEval e;
  e.scores.resize(D);
  for (size_t d = 0; d < D; ++d) e.scores[d] = dt[d]->score;
  e.matched.assign(kT * D, 0);
  e.ignored.assign(kT * D, 0);
  for (size_t g = 0; g < G; ++g) e.num_gt += gt_ignore[g] ? 0 : 1;

  if (G > 0 && D > 0) {
    std::vector<uint8_t> gt_taken(G);
    for (int t = 0; t < kT; ++t) {
      std::fill(gt_taken.begin(), gt_taken.end(), 0);
      for (size_t d = 0; d < D; ++d) {
        double best = std::min(kIouThresholds[t], 1 - 1e-10);
        int m = -1;
        for (size_t j = 0; j < G; ++j) {
          const size_t g = order[j];
          if (gt_taken[j] && !gt[g]->iscrowd) continue;  // crowd GT can match many times
          // Matched a regular GT and only ignored ones are left: stop.
          if (m > -1 && !gt_ignore[order[m]] && gt_ignore[g]) break;
          const double v = iou[d * G + g];
          if (v < best) continue;  // ties go to the later GT, as pycocotools
          best = v;
          m = static_cast<int>(j);
        }
        if (m == -1) continue;
        e.ignored[t * D + d] = gt_ignore[order[m]];
        e.matched[t * D + d] = 1;
        gt_taken[m] = 1;
      }
    }
  }
  // Unmatched detections outside the area range are ignored, not false positives.
  for (size_t d = 0; d < D; ++d) {
    const double area = dt[d]->bbox[2] * dt[d]->bbox[3];
    if (area < lo || area > hi)
      for (int t = 0; t < kT; ++t)
        if (!e.matched[t * D + d]) e.ignored[t * D + d] = 1;
  }
  return e;
}

// pycocotools' accumulate for one (category, area range, max detections): fills
// precision [T * R] and recall [T], or leaves them at -1 without non-ignored GT.
void accumulate(const std::vector<const ImageEval*>& evals, int max_det, double* precision,
                double* recall) {
  if (evals.empty()) return;
  std::vector<double> scores;
  std::vector<std::array<size_t, 2>> source;  // (eval, detection) of each merged entry
  int64_t num_gt = 0;
  for (size_t i = 0; i < evals.size(); ++i) {
    const size_t n = std::min(evals[i]->scores.size(), static_cast<size_t>(max_det));
    for (size_t d = 0; d < n; ++d) {
      scores.push_back(evals[i]->scores[d]);
      source.push_back({i, d});
    }
    num_gt += evals[i]->num_gt;
  }
  if (num_gt == 0) return;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  // np.argsort(-scores, kind='mergesort'): stable, highest first.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return -scores[x] < -scores[y]; });
  const size_t nd = order.size();
  std::vector<double> rc(nd), pr(nd);
  for (int t = 0; t < kT; ++t) {
    double tp = 0, fp = 0;
    for (size_t k = 0; k < nd; ++k) {
      const ImageEval& e = *evals[source[order[k]][0]];
      const size_t idx = t * e.scores.size() + source[order[k]][1];
      if (!e.ignored[idx]) (e.matched[idx] ? tp : fp) += 1;
      rc[k] = tp / static_cast<double>(num_gt);
      pr[k] = tp / (fp + tp + kEps);
    }
    recall[t] = nd ? rc[nd - 1] : 0;
    for (size_t k = nd; k-- > 1;)  // monotone envelope from the right
      if (pr[k] > pr[k - 1]) pr[k - 1] = pr[k];
    double* q = precision + t * kR;
    for (int r = 0; r < kR; ++r) {
      const size_t k = std::lower_bound(rc.begin(), rc.end(), recall_threshold(r)) - rc.begin();
      q[r] = k < nd ? pr[k] : 0;  // np.searchsorted(side='left'); 0 past the last recall
    }
  }
}

double mean_of_valid(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values)
    if (v > -1) sum += v, ++n;
  return n ? sum / static_cast<double>(n) : -1;
}

}  // namespace

// ------------------------------------------------------------------------ ground truth

CocoGroundTruth read_coco_ground_truth(const std::string& json_path) {
  const Json root = parse_file(json_path, "annotation");
  const std::string top = where(json_path, "");
  if (!root.is_object()) throw Error(top + ": expected a JSON object at the top level");
  CocoGroundTruth gt;
  const Json& cats = list_field(root, "categories", top);
  for (size_t i = 0; i < cats.size(); ++i)
    gt.category_ids.push_back(int_field(cats[i], "id", where(json_path, entry("categories", i))));
  std::sort(gt.category_ids.begin(), gt.category_ids.end());
  if (std::adjacent_find(gt.category_ids.begin(), gt.category_ids.end()) != gt.category_ids.end())
    throw Error(top + ": a category id is listed twice in 'categories'");
  std::set<int64_t> cat_set(gt.category_ids.begin(), gt.category_ids.end());

  const Json& images = list_field(root, "images", top);
  std::set<int64_t> image_set;
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string w = where(json_path, entry("images", i));
    const int64_t id = int_field(images[i], "id", w);
    if (!image_set.insert(id).second)
      throw Error(w + ": image id " + std::to_string(id) + " is listed twice in 'images'");
    gt.image_ids.push_back(id);
  }

  const Json& anns = list_field(root, "annotations", top);
  for (size_t i = 0; i < anns.size(); ++i) {
    const Json& a = anns[i];
    const std::string w = where(json_path, entry("annotations", i));
    CocoGtObject o;
    o.image_id = int_field(a, "image_id", w);
    o.category_id = int_field(a, "category_id", w);
    if (!image_set.count(o.image_id))
      throw Error(w + ": image_id " + std::to_string(o.image_id) + " is not in 'images'");
    if (!cat_set.count(o.category_id))
      throw Error(w + ": category_id " + std::to_string(o.category_id) + " is not in 'categories'");
    o.bbox = bbox_field(a, w);
    o.area = a.contains("area") ? number_field(a, "area", w) : o.bbox[2] * o.bbox[3];
    if (a.contains("iscrowd") && !a["iscrowd"].is_null()) {
      const int64_t crowd = int_field(a, "iscrowd", w);
      if (crowd != 0 && crowd != 1) throw Error(w + ": 'iscrowd' must be 0 or 1, got " + std::to_string(crowd));
      o.iscrowd = crowd == 1;
    }
    gt.objects.push_back(o);
  }
  return gt;
}

namespace {

// Normalized cxcywh [4] -> xywh pixels of a (height, width) image, as Scenic's
// DetrGlobalEvaluator: box_cxcywh_to_xyxy, w = x1 - x0, then * (W, H, W, H).
std::array<double, 4> to_pixels_xywh(const double* b, double height, double width) {
  const double x0 = b[0] - b[2] / 2, y0 = b[1] - b[3] / 2;
  const double x1 = b[0] + b[2] / 2, y1 = b[1] + b[3] / 2;
  return {x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height};
}

// The real rows of a detection batch: (row, image_id, height, width).
struct BatchRow {
  int64_t row, image_id;
  double height, width;
};

std::vector<BatchRow> real_rows(const Batch& batch, int64_t B, const char* who) {
  auto need = [&](const char* key) -> torch::Tensor {
    auto it = batch.find(key);
    if (it == batch.end() || !it->second.defined())
      throw Error(std::string("coco_eval: ") + who + ": the batch has no '" + key + "'");
    return it->second.detach().to(torch::kCPU);
  };
  const torch::Tensor orig = need("orig_size").to(torch::kInt64);
  const torch::Tensor ids = need("image_id").to(torch::kInt64).reshape({-1});
  if (orig.dim() != 2 || orig.size(0) != B || orig.size(1) != 2 || ids.size(0) != B)
    throw Error(std::string("coco_eval: ") + who + ": expected orig_size [" + std::to_string(B) +
                ", 2] and image_id [" + std::to_string(B) + "], got " + std::to_string(orig.dim()) +
                "-d orig_size and " + std::to_string(ids.size(0)) + " image ids");
  torch::Tensor mask;
  if (auto it = batch.find("batch_mask"); it != batch.end() && it->second.defined())
    mask = it->second.detach().to(torch::kCPU).to(torch::kFloat64).reshape({-1});
  auto o = orig.accessor<int64_t, 2>();
  auto id = ids.accessor<int64_t, 1>();
  std::vector<BatchRow> rows;
  for (int64_t b = 0; b < B; ++b) {
    if (mask.defined() && mask[b].item<double>() == 0) continue;
    rows.push_back({b, id[b], static_cast<double>(o[b][0]), static_cast<double>(o[b][1])});
  }
  return rows;
}

}  // namespace

void CocoGroundTruth::add_batch(const Batch& batch) {
  auto need = [&](const char* key) -> torch::Tensor {
    auto it = batch.find(key);
    if (it == batch.end() || !it->second.defined())
      throw Error(std::string("coco_eval: add_batch: the batch has no '") + key + "'");
    return it->second.detach().to(torch::kCPU);
  };
  const torch::Tensor boxes = need("boxes").to(torch::kFloat64).contiguous();
  const torch::Tensor labels = need("labels").to(torch::kInt64).contiguous();
  if (boxes.dim() != 3 || boxes.size(2) != 4 || labels.sizes() != boxes.sizes().slice(0, 2))
    throw Error("coco_eval: add_batch: expected boxes [B, M, 4] and labels [B, M], got boxes " +
                std::to_string(boxes.dim()) + "-d and labels " + std::to_string(labels.dim()) + "-d");
  torch::Tensor crowd;
  if (auto it = batch.find("is_crowd"); it != batch.end() && it->second.defined())
    crowd = it->second.detach().to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t B = boxes.size(0), M = boxes.size(1);
  const auto K = static_cast<int64_t>(category_ids.size());
  const double* bp = boxes.data_ptr<double>();
  const int64_t* lp = labels.data_ptr<int64_t>();
  for (const BatchRow& r : real_rows(batch, B, "add_batch")) {
    if (std::find(image_ids.begin(), image_ids.end(), r.image_id) != image_ids.end())
      throw Error("coco_eval: add_batch: image id " + std::to_string(r.image_id) + " was added twice");
    image_ids.push_back(r.image_id);
    for (int64_t j = 0; j < M; ++j) {
      const int64_t label = lp[r.row * M + j];
      if (label == 0) continue;  // padding
      if (label < 0 || label > K)
        throw Error("coco_eval: add_batch: label " + std::to_string(label) + " of image " +
                    std::to_string(r.image_id) + " is outside 1.." + std::to_string(K) +
                    " (the ground truth's categories)");
      CocoGtObject o;
      o.image_id = r.image_id;
      o.category_id = category_ids[label - 1];
      o.bbox = to_pixels_xywh(bp + (r.row * M + j) * 4, r.height, r.width);
      o.area = o.bbox[2] * o.bbox[3];
      o.iscrowd = crowd.defined() && crowd.numel() == B * M && crowd.data_ptr<int64_t>()[r.row * M + j] != 0;
      objects.push_back(o);
    }
  }
}

// -------------------------------------------------------------------------- detections

std::vector<CocoDetection> read_coco_detections(const std::string& json_path) {
  const Json root = parse_file(json_path, "detections");
  if (!root.is_array())
    throw Error(where(json_path, "") + ": expected a JSON list of {image_id, category_id, bbox, score}");
  std::vector<CocoDetection> dets;
  dets.reserve(root.size());
  for (size_t i = 0; i < root.size(); ++i) {
    const std::string w = where(json_path, entry("detections", i));
    CocoDetection d;
    d.image_id = int_field(root[i], "image_id", w);
    d.category_id = int_field(root[i], "category_id", w);
    d.bbox = bbox_field(root[i], w);
    d.score = number_field(root[i], "score", w);
    dets.push_back(d);
  }
  return dets;
}

void write_coco_detections(const std::string& json_path, const std::vector<CocoDetection>& dets) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const CocoDetection& d : dets)
    out.push_back({{"image_id", d.image_id},
                   {"category_id", d.category_id},
                   {"bbox", {d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3]}},
                   {"score", d.score}});
  std::ofstream f(json_path);
  if (!f) throw Error("coco_eval: cannot write detections to " + json_path);
  f << out.dump() << "\n";
  if (!f) throw Error("coco_eval: failed writing detections to " + json_path);
}

// -------------------------------------------------------------------------- evaluation

const std::array<const char*, 12> CocoMetrics::kNames = {
    "AP", "AP_50", "AP_75", "AP_small", "AP_medium", "AP_large",
    "AR_max_1", "AR_max_10", "AR_max_100", "AR_small", "AR_medium", "AR_large"};

std::map<std::string, double> CocoMetrics::to_map() const {
  std::map<std::string, double> out;
  for (size_t i = 0; i < kNames.size(); ++i) out[kNames[i]] = stats[i];
  return out;
}

CocoMetrics evaluate_coco(const CocoGroundTruth& gt, const std::vector<CocoDetection>& dets,
                          const std::vector<int64_t>& image_ids) {
  // Images and categories: sorted and unique (np.unique), indexed.
  std::vector<int64_t> cats = gt.category_ids;
  std::sort(cats.begin(), cats.end());
  cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
  std::set<int64_t> gt_images(gt.image_ids.begin(), gt.image_ids.end());
  std::vector<int64_t> imgs = image_ids.empty() ? gt.image_ids : image_ids;
  std::sort(imgs.begin(), imgs.end());
  imgs.erase(std::unique(imgs.begin(), imgs.end()), imgs.end());
  for (int64_t id : imgs)
    if (!gt_images.count(id))
      throw Error("coco_eval: image id " + std::to_string(id) + " to evaluate is not in the ground truth");
  std::unordered_map<int64_t, size_t> cat_index, img_index;
  for (size_t k = 0; k < cats.size(); ++k) cat_index[cats[k]] = k;
  for (size_t i = 0; i < imgs.size(); ++i) img_index[imgs[i]] = i;
  const size_t K = cats.size(), I = imgs.size();

  // Bucket GT and detections per (category, image), keeping input order.
  std::vector<std::vector<const CocoGtObject*>> gts(K * I);
  std::vector<std::vector<const CocoDetection*>> dts(K * I);
  for (const CocoGtObject& o : gt.objects) {
    auto k = cat_index.find(o.category_id);
    if (k == cat_index.end() || !gt_images.count(o.image_id))
      throw Error("coco_eval: a ground-truth object (image " + std::to_string(o.image_id) + ", category " +
                  std::to_string(o.category_id) + ") is on an image or category the ground truth does not list");
    auto i = img_index.find(o.image_id);
    if (i != img_index.end()) gts[k->second * I + i->second].push_back(&o);
  }
  for (const CocoDetection& d : dets) {
    if (!gt_images.count(d.image_id))
      throw Error("coco_eval: a detection is on image id " + std::to_string(d.image_id) +
                  ", which is not in the ground truth");
    auto k = cat_index.find(d.category_id);
    if (k == cat_index.end())
      throw Error("coco_eval: a detection (image " + std::to_string(d.image_id) + ") has category id " +
                  std::to_string(d.category_id) + ", which is not a ground-truth category");
    auto i = img_index.find(d.image_id);
    if (i != img_index.end()) dts[k->second * I + i->second].push_back(&d);
  }

  // precision [K][A][M][T][R], recall [K][A][M][T]; -1 = no GT.
  std::vector<double> precision(K * kA * kM * kT * kR, -1.0), recall(K * kA * kM * kT, -1.0);
  const int max_det = kMaxDets[kM - 1];
  std::vector<ImageEval> evals(kA * I);
  std::vector<uint8_t> present(I);
  for (size_t k = 0; k < K; ++k) {
    for (size_t i = 0; i < I; ++i) {
      const auto& g = gts[k * I + i];
      std::vector<const CocoDetection*> d = dts[k * I + i];
      present[i] = !g.empty() || !d.empty();
      if (!present[i]) continue;
      std::stable_sort(d.begin(), d.end(),
                       [](const CocoDetection* x, const CocoDetection* y) { return -x->score < -y->score; });
      if (d.size() > static_cast<size_t>(max_det)) d.resize(max_det);
      std::vector<double> iou(d.size() * g.size());
      for (size_t a = 0; a < d.size(); ++a)
        for (size_t b = 0; b < g.size(); ++b) iou[a * g.size() + b] = box_iou(d[a]->bbox, g[b]->bbox, g[b]->iscrowd);
      for (int a = 0; a < kA; ++a) evals[a * I + i] = evaluate_image(g, d, iou, a);
    }
    for (int a = 0; a < kA; ++a) {
      std::vector<const ImageEval*> e;
      for (size_t i = 0; i < I; ++i)
        if (present[i]) e.push_back(&evals[a * I + i]);
      for (int m = 0; m < kM; ++m) {
        const size_t at = (k * kA + a) * kM + m;
        accumulate(e, kMaxDets[m], &precision[at * kT * kR], &recall[at * kT]);
      }
    }
  }

  // summarize(): means over the settings that are not -1.
  auto ap = [&](int a, int t_only) {
    std::vector<double> s;
    for (size_t k = 0; k < K; ++k)
      for (int t = 0; t < kT; ++t) {
        if (t_only >= 0 && t != t_only) continue;
        const double* q = &precision[(((k * kA + a) * kM + 2) * kT + t) * kR];
        s.insert(s.end(), q, q + kR);
      }
    return mean_of_valid(s);
  };
  auto ar = [&](int a, int m) {
    std::vector<double> s;
    for (size_t k = 0; k < K; ++k)
      for (int t = 0; t < kT; ++t) s.push_back(recall[((k * kA + a) * kM + m) * kT + t]);
    return mean_of_valid(s);
  };
  CocoMetrics out;
  out.stats = {ap(0, -1), ap(0, 0), ap(0, 5), ap(1, -1), ap(2, -1), ap(3, -1),
               ar(0, 0),  ar(0, 1), ar(0, 2), ar(1, 2),  ar(2, 2),  ar(3, 2)};
  out.category_ids = cats;
  for (size_t k = 0; k < K; ++k) {
    const double* q = &precision[((k * kA + 0) * kM + 2) * kT * kR];
    out.per_category_ap.push_back(mean_of_valid(std::vector<double>(q, q + kT * kR)));
  }
  return out;
}

// --------------------------------------------------------------------------- evaluator

CocoEvaluator::CocoEvaluator(CocoGroundTruth gt) : gt_(std::move(gt)) {
  std::sort(gt_.category_ids.begin(), gt_.category_ids.end());
}

CocoEvaluator::CocoEvaluator(const std::string& gt_json_path)
    : gt_(read_coco_ground_truth(gt_json_path)) {}

void CocoEvaluator::mark_seen(int64_t image_id) {
  if (seen_set_.insert(image_id).second) seen_.push_back(image_id);
}

void CocoEvaluator::add_detections(const std::vector<CocoDetection>& dets) {
  for (const CocoDetection& d : dets) mark_seen(d.image_id);
  dets_.insert(dets_.end(), dets.begin(), dets.end());
}

void CocoEvaluator::add_predictions(const torch::Tensor& pred_logits, const torch::Tensor& pred_boxes,
                                    const Batch& batch, double score_threshold) {
  if (!pred_logits.defined() || !pred_boxes.defined() || pred_logits.dim() != 3 || pred_boxes.dim() != 3 ||
      pred_boxes.size(2) != 4 || pred_logits.size(0) != pred_boxes.size(0) ||
      pred_logits.size(1) != pred_boxes.size(1))
    throw Error("coco_eval: add_predictions: expected pred_logits [B, N, C] and pred_boxes [B, N, 4], got " +
                (pred_logits.defined() ? std::to_string(pred_logits.dim()) + "-d" : std::string("undefined")) +
                " and " +
                (pred_boxes.defined() ? std::to_string(pred_boxes.dim()) + "-d" : std::string("undefined")));
  const int64_t B = pred_logits.size(0), N = pred_logits.size(1), C = pred_logits.size(2);
  const auto K = static_cast<int64_t>(gt_.category_ids.size());
  if (C != K + 1)
    throw Error("coco_eval: add_predictions: pred_logits has " + std::to_string(C) +
                " classes but the ground truth lists " + std::to_string(K) +
                " categories (expected " + std::to_string(K + 1) + ": class 0 is no-object)");
  // [B, N, C] probabilities and [B, N, 4] boxes, float64 on the CPU.
  const torch::Tensor probs =
      torch::softmax(pred_logits.detach().to(torch::kCPU).to(torch::kFloat64), -1).contiguous();
  const torch::Tensor boxes = pred_boxes.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
  const double* pp = probs.data_ptr<double>();
  const double* bp = boxes.data_ptr<double>();
  for (const BatchRow& r : real_rows(batch, B, "add_predictions")) {
    mark_seen(r.image_id);
    std::vector<CocoDetection> image_dets;
    for (int64_t q = 0; q < N; ++q) {
      const double* p = pp + (r.row * N + q) * C;
      int64_t label = 1;  // argmax over 1..K, first on ties (np.argmax)
      for (int64_t c = 2; c < C; ++c)
        if (p[c] > p[label]) label = c;
      if (!(p[label] >= score_threshold)) continue;
      CocoDetection d;
      d.image_id = r.image_id;
      d.category_id = gt_.category_ids[label - 1];
      d.bbox = to_pixels_xywh(bp + (r.row * N + q) * 4, r.height, r.width);
      d.score = p[label];
      image_dets.push_back(d);
    }
    std::stable_sort(image_dets.begin(), image_dets.end(),
                     [](const CocoDetection& x, const CocoDetection& y) { return x.score > y.score; });
    dets_.insert(dets_.end(), image_dets.begin(), image_dets.end());
  }
}

void CocoEvaluator::clear() {
  dets_.clear();
  seen_.clear();
  seen_set_.clear();
}

}  // namespace scenic::dataset
