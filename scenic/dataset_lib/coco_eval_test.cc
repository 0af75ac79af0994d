#include "scenic/dataset_lib/coco_eval.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/coco_detection.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using nlohmann::json;
using scenic::testing::error_of;
using testing::TempDir;

// Fixtures from tools/fixtures/coco_eval_reference.py (pycocotools 2.0.11).
std::string fixture(const std::string& name) {
  return std::string(SCENIC_SOURCE_DIR) + "/scenic/dataset_lib/testdata/coco_eval/" + name;
}

json expected_cases() {
  std::ifstream in(fixture("expected.json"));
  EXPECT_TRUE(in.good()) << fixture("expected.json");
  return json::parse(in);
}

void expect_matches(const CocoMetrics& got, const json& want, const std::string& name) {
  for (size_t i = 0; i < 12; ++i)
    EXPECT_NEAR(got.stats[i], want["stats"][i].get<double>(), 1e-12)
        << name << " " << CocoMetrics::kNames[i];
  ASSERT_EQ(got.per_category_ap.size(), want["per_category_ap"].size()) << name;
  for (size_t k = 0; k < got.per_category_ap.size(); ++k)
    EXPECT_NEAR(got.per_category_ap[k], want["per_category_ap"][k].get<double>(), 1e-12)
        << name << " category " << got.category_ids[k];
}

TEST(CocoEvalTest, MatchesPycocotoolsOnEveryCase) {
  const json cases = expected_cases();
  // random_a/b, ties, crowd, many_dets, edge, no_small, tiny, detr.
  ASSERT_GE(cases.size(), 9u);
  for (const auto& [name, want] : cases.items()) {
    const CocoGroundTruth gt = read_coco_ground_truth(fixture(name + "_gt.json"));
    const std::vector<CocoDetection> dets = read_coco_detections(fixture(name + "_dt.json"));
    ASSERT_EQ(static_cast<int64_t>(gt.objects.size()), want["num_gt"].get<int64_t>()) << name;
    ASSERT_EQ(static_cast<int64_t>(dets.size()), want["num_detections"].get<int64_t>()) << name;
    expect_matches(evaluate_coco(gt, dets), want, name);
  }
}

TEST(CocoEvalTest, FixtureCasesCoverTheRules) {
  // Guards the fixtures themselves: -1 summaries, an image over 100 detections, crowd GT.
  const json cases = expected_cases();
  EXPECT_EQ(cases["no_small"]["stats"][3].get<double>(), -1.0);  // AP_small
  EXPECT_EQ(cases["no_small"]["stats"][9].get<double>(), -1.0);  // AR_small
  EXPECT_EQ(cases["edge"]["per_category_ap"][1].get<double>(), -1.0);  // detections, no GT
  EXPECT_EQ(cases["edge"]["per_category_ap"][2].get<double>(), -1.0);  // crowd GT only
  const auto dets = read_coco_detections(fixture("many_dets_dt.json"));
  std::map<int64_t, int> per_image;
  for (const auto& d : dets) per_image[d.image_id]++;
  EXPECT_GT(std::max_element(per_image.begin(), per_image.end(),
                             [](auto& a, auto& b) { return a.second < b.second; })->second, 100);
  const auto crowd = read_coco_ground_truth(fixture("crowd_gt.json"));
  EXPECT_GE(std::count_if(crowd.objects.begin(), crowd.objects.end(),
                          [](const CocoGtObject& o) { return o.iscrowd; }), 3);
}

TEST(CocoEvalTest, TinyCaseByHand) {
  // Category 1: GT a [10,10,50,50], b [0,0,100,100]. Detections by score: 0.95 on a far
  // away (FP), 0.9 on a (IoU 48*50 / (2500+2500-2400) = 0.923), 0.8 on b (IoU 0.9).
  //   At the 9 thresholds <= 0.9 (the 9th is 0.8999999999999999): tp 0,1,2 / fp 1,1,1,
  //   recall 0, .5, 1, precision 0, .5, 2/3 -> envelope 2/3 everywhere -> AP 2/3,
  //   recall 1. At 0.95: AP 0, recall 0. Category AP = 0.9 * 2/3 = 0.6.
  // Category 2: GT a [100,100,20,20] (area 400, small); 0.7 on b (FP), 0.6 on a (IoU
  //   360/400 = 0.9): precision 0, .5 -> envelope .5 -> AP .5 at 9 thresholds = 0.45.
  // AP = (0.6 + 0.45) / 2 = 0.525; AP50 = AP75 = (2/3 + 1/2) / 2 = 0.58333.
  // AR100 = (0.9 + 0.9) / 2 = 0.9. AR1 (first detection per image): category 1 keeps
  //   0.95 (FP) on a and 0.8 (TP) on b -> recall .5 at 9 thresholds = 0.45; category 2
  //   keeps 0.6 (TP) on a -> 0.9; AR1 = 0.675.
  // Sizes: category 1 has a medium (2500) and a large (10000) GT, category 2 a small
  //   one; each area range has one category, whose recall is 0.9 and AP as computed
  //   with the other sizes' detections ignored: small AP = 0.9 (0.6 on a alone),
  //   medium 0.9 (the large-GT detection on b is unmatched but large: ignored).
  const CocoGroundTruth gt = read_coco_ground_truth(fixture("tiny_gt.json"));
  const CocoMetrics m = evaluate_coco(gt, read_coco_detections(fixture("tiny_dt.json")));
  EXPECT_NEAR(m.stats[0], 0.525, 1e-12);
  EXPECT_NEAR(m.stats[1], 7.0 / 12.0, 1e-12);
  EXPECT_NEAR(m.stats[2], 7.0 / 12.0, 1e-12);
  EXPECT_NEAR(m.stats[3], 0.9, 1e-12);
  EXPECT_NEAR(m.stats[6], 0.675, 1e-12);
  EXPECT_NEAR(m.stats[8], 0.9, 1e-12);
  EXPECT_NEAR(m.per_category_ap[0], 0.6, 1e-12);
  EXPECT_NEAR(m.per_category_ap[1], 0.45, 1e-12);
  EXPECT_EQ(m.to_map().at("AR_max_1"), m.stats[6]);
}

TEST(CocoEvalTest, CrowdAndIgnoredDetectionsAreNotFalsePositives) {
  // One regular GT and one crowd region. A detection inside the crowd region, scored
  // above the true positive, is ignored (IoU with the crowd = inter / det area = 1), so
  // precision stays 1: AP = 1. Without the crowd flag it would be a false positive.
  CocoGroundTruth gt;
  gt.image_ids = {1};
  gt.category_ids = {1};
  gt.objects.push_back({1, 1, {0, 0, 50, 50}, 2500, false});
  gt.objects.push_back({1, 1, {100, 100, 200, 200}, 40000, true});
  std::vector<CocoDetection> dets = {{1, 1, {120, 120, 30, 30}, 0.9}, {1, 1, {0, 0, 50, 50}, 0.8}};
  EXPECT_DOUBLE_EQ(evaluate_coco(gt, dets).stats[0], 1.0);
  gt.objects[1].iscrowd = false;
  // Now: FP (0.9) then TP (0.8): precision envelope 0.5 at all recalls; the second GT is
  // missed, so recall tops at 0.5 and the points above it are 0: AP = 51 * 0.5 / 101.
  EXPECT_NEAR(evaluate_coco(gt, dets).stats[0], 51 * 0.5 / 101, 1e-12);
}

TEST(CocoEvalTest, NoDetectionsGiveZeroAndMinusOneWithoutGt) {
  // pycocotools raises on an empty result list; here: 0 where GT exists, -1 elsewhere.
  CocoGroundTruth gt;
  gt.image_ids = {1, 2};
  gt.category_ids = {3};
  gt.objects.push_back({1, 3, {0, 0, 50, 50}, 2500, false});  // medium only
  const CocoMetrics m = evaluate_coco(gt, {});
  EXPECT_EQ(m.stats[0], 0.0);
  EXPECT_EQ(m.stats[3], -1.0);  // AP_small: no small GT
  EXPECT_EQ(m.stats[4], 0.0);
  EXPECT_EQ(m.stats[8], 0.0);
  EXPECT_EQ(m.stats[11], -1.0);
}

TEST(CocoEvalTest, ImageSubsetLeavesOtherImagesOut) {
  // Scenic evaluates only the images it saw: the GT on image 2 is then not missed.
  CocoGroundTruth gt;
  gt.image_ids = {1, 2};
  gt.category_ids = {1};
  gt.objects.push_back({1, 1, {0, 0, 50, 50}, 2500, false});
  gt.objects.push_back({2, 1, {0, 0, 50, 50}, 2500, false});
  CocoEvaluator ev(gt);
  ev.add_detections({{1, 1, {0, 0, 50, 50}, 0.5}});
  EXPECT_EQ(ev.image_ids_seen(), std::vector<int64_t>({1}));
  EXPECT_NEAR(ev.evaluate().stats[8], 0.5, 1e-12);  // AR100: 1 of 2 GT found
  EXPECT_NEAR(ev.evaluate(ev.image_ids_seen()).stats[8], 1.0, 1e-12);
  EXPECT_CONTAINS(error_of([&] { ev.evaluate({7}); }), "image id 7");
}

TEST(CocoEvalTest, BadInputNamesTheProblem) {
  CocoGroundTruth gt;
  gt.image_ids = {1};
  gt.category_ids = {1};
  EXPECT_CONTAINS(error_of([&] { evaluate_coco(gt, {{5, 1, {0, 0, 1, 1}, 1}}); }), "image id 5");
  EXPECT_CONTAINS(error_of([&] { evaluate_coco(gt, {{1, 2, {0, 0, 1, 1}, 1}}); }), "category id 2");
  TempDir dir;
  std::ofstream(dir.file("gt.json")) << R"({"images": [{"id": 1}], "categories": [{"id": 1}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1}]})";
  EXPECT_CONTAINS(error_of([&] { read_coco_ground_truth(dir.file("gt.json")); }),
                  "annotations[0]: missing key 'bbox'");
  std::ofstream(dir.file("dt.json")) << R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])";
  EXPECT_CONTAINS(error_of([&] { read_coco_detections(dir.file("dt.json")); }),
                  "detections[0]: missing key 'score'");
  CocoEvaluator ev(gt);
  Batch batch{{"orig_size", torch::tensor({{10, 10}})}, {"image_id", torch::tensor({1})}};
  EXPECT_CONTAINS(error_of([&] { ev.add_predictions(torch::zeros({1, 2, 5}), torch::zeros({1, 2, 4}), batch); }),
                  "pred_logits has 5 classes but the ground truth lists 1 categories");
}

TEST(CocoEvalTest, GroundTruthCategoryOrderMatchesCocoDetectionLabels) {
  // Label index i of the pipeline (coco_detection.h) must be category_ids[i] here.
  const std::string path = fixture("random_a_gt.json");  // categories listed out of order
  EXPECT_EQ(read_coco_ground_truth(path).category_ids, read_coco_annotations(path).category_ids());
  EXPECT_EQ(read_coco_ground_truth(path).category_ids, std::vector<int64_t>({1, 3, 7, 12}));
}

TEST(CocoEvalTest, DetectionsJsonRoundTripsExactly) {
  TempDir dir;
  const auto dets = read_coco_detections(fixture("random_b_dt.json"));
  CocoEvaluator ev(read_coco_ground_truth(fixture("random_b_gt.json")));
  ev.add_detections(dets);
  ev.write_detections_json(dir.file("pred.json"));
  const auto back = read_coco_detections(dir.file("pred.json"));
  ASSERT_EQ(back.size(), dets.size());
  for (size_t i = 0; i < dets.size(); ++i) {
    EXPECT_EQ(back[i].image_id, dets[i].image_id);
    EXPECT_EQ(back[i].category_id, dets[i].category_id);
    EXPECT_EQ(back[i].bbox, dets[i].bbox);
    EXPECT_EQ(back[i].score, dets[i].score);
  }
}

TEST(CocoEvalTest, PredictionConversionKnownValues) {
  // Categories {5, 9, 11}: class c of the logits (c >= 1) is category_ids[c - 1].
  CocoGroundTruth gt;
  gt.image_ids = {42, 43};
  gt.category_ids = {11, 5, 9};  // the evaluator sorts them: {5, 9, 11}
  CocoEvaluator ev(gt);
  // Image 42, orig_size (h 200, w 400). Query 0: logits log(1, 2, 4, 1) -> softmax
  // (1, 2, 4, 1) / 8 = (.125, .25, .5, .125): class 2 -> category 9, score 0.5.
  //   Box cxcywh (0.5, 0.25, 0.2, 0.1): x = (0.5 - 0.1) * 400 = 160, y = (0.25 - 0.05) *
  //   200 = 40, w = 0.2 * 400 = 80, h = 0.1 * 200 = 20.
  // Query 1: logits log(8, 1, 1, 6): no-object is most likely but is excluded: classes
  //   1..3 = (1, 1, 6) / 16 -> class 3 -> category 11, score 6/16 = 0.375; box (0.1, 0.9,
  //   0.2, 0.2) -> (0, 160, 80, 40) (not clipped: x0 = 0 here by construction).
  // Query 2: all equal logits: p = 0.25 each, argmax over 1..3 takes the first -> class
  //   1, category 5, score 0.25; below threshold 0.3 it is dropped.
  // Row 1 (image 43) has batch_mask 0 and must be skipped.
  const double l2 = std::log(2.0), l4 = std::log(4.0), l6 = std::log(6.0), l8 = std::log(8.0);
  torch::Tensor logits = torch::tensor({{{0.0, l2, l4, 0.0}, {l8, 0.0, 0.0, l6}, {1.0, 1.0, 1.0, 1.0}},
                                        {{9.0, 0.0, 0.0, 0.0}, {9.0, 0.0, 0.0, 0.0}, {9.0, 0.0, 0.0, 0.0}}},
                                       torch::kFloat64);
  torch::Tensor boxes = torch::tensor({{{0.5, 0.25, 0.2, 0.1}, {0.1, 0.9, 0.2, 0.2}, {0.5, 0.5, 0.5, 0.5}},
                                       {{0.5, 0.5, 0.1, 0.1}, {0.5, 0.5, 0.1, 0.1}, {0.5, 0.5, 0.1, 0.1}}},
                                      torch::kFloat64);
  Batch batch{{"orig_size", torch::tensor({{200, 400}, {10, 10}}, torch::kInt64)},
              {"image_id", torch::tensor({42, 43}, torch::kInt64)},
              {"batch_mask", torch::tensor({1.0f, 0.0f})}};
  ev.add_predictions(logits, boxes, batch, /*score_threshold=*/0.3);
  ASSERT_EQ(ev.detections().size(), 2u);
  const CocoDetection& a = ev.detections()[0];
  EXPECT_EQ(a.image_id, 42);
  EXPECT_EQ(a.category_id, 9);
  EXPECT_NEAR(a.score, 0.5, 1e-12);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(a.bbox[i], (std::array<double, 4>{160, 40, 80, 20})[i], 1e-9);
  const CocoDetection& b = ev.detections()[1];
  EXPECT_EQ(b.category_id, 11);
  EXPECT_NEAR(b.score, 0.375, 1e-12);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(b.bbox[i], (std::array<double, 4>{0, 160, 80, 40})[i], 1e-9);
  EXPECT_EQ(ev.image_ids_seen(), std::vector<int64_t>({42}));
  // Without a threshold (Scenic's 0), every query of the real row is kept, sorted by score.
  ev.clear();
  ev.add_predictions(logits.to(torch::kFloat32), boxes.to(torch::kFloat32), batch);
  ASSERT_EQ(ev.detections().size(), 3u);
  EXPECT_EQ(ev.detections()[2].category_id, 5);
  EXPECT_NEAR(ev.detections()[2].score, 0.25, 1e-7);
}

TEST(CocoEvalTest, DetrOutputsMatchScenicConversionAndPycocotools) {
  // Raw DETR outputs from the fixture, converted here and by the fixture's Python copy
  // of DetrGlobalEvaluator; then evaluated against pycocotools' numbers.
  const json want = expected_cases()["detr"];
  const json& raw = want["raw"];
  const auto shape = raw["shape"].get<std::vector<int64_t>>();
  const int64_t B = shape[0], N = shape[1], C = shape[2];
  // One extra padding row (batch_mask 0) with garbage, which must be skipped.
  std::vector<float> lg = raw["logits"].get<std::vector<float>>(), bx = raw["boxes"].get<std::vector<float>>();
  lg.resize((B + 1) * N * C, 5.0f);
  bx.resize((B + 1) * N * 4, 0.5f);
  std::vector<int64_t> sizes, ids = raw["image_ids"].get<std::vector<int64_t>>();
  for (const auto& s : raw["orig_size"]) sizes.insert(sizes.end(), {s[0].get<int64_t>(), s[1].get<int64_t>()});
  sizes.insert(sizes.end(), {1, 1});
  ids.push_back(ids[0]);
  std::vector<float> mask(B + 1, 1.0f);
  mask[B] = 0.0f;
  Batch batch{{"orig_size", torch::tensor(sizes).reshape({B + 1, 2})},
              {"image_id", torch::tensor(ids)},
              {"batch_mask", torch::tensor(mask)}};
  CocoEvaluator ev(fixture("detr_gt.json"));
  ev.add_predictions(torch::tensor(lg).reshape({B + 1, N, C}), torch::tensor(bx).reshape({B + 1, N, 4}), batch);
  ASSERT_EQ(static_cast<int64_t>(ev.detections().size()), B * N);
  expect_matches(ev.evaluate(), want, "detr");
  // The same detections as Python's conversion (its order: by query; ours: by score).
  auto py = read_coco_detections(fixture("detr_dt.json"));
  auto ours = ev.detections();
  auto key = [](const CocoDetection& d) { return std::make_pair(d.image_id, -d.score); };
  auto by_key = [&](const CocoDetection& x, const CocoDetection& y) { return key(x) < key(y); };
  std::stable_sort(py.begin(), py.end(), by_key);
  std::stable_sort(ours.begin(), ours.end(), by_key);
  for (size_t i = 0; i < py.size(); ++i) {
    EXPECT_EQ(ours[i].image_id, py[i].image_id);
    EXPECT_EQ(ours[i].category_id, py[i].category_id);
    EXPECT_NEAR(ours[i].score, py[i].score, 1e-12);
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(ours[i].bbox[j], py[i].bbox[j], 1e-9);
  }
}

TEST(CocoEvalTest, GroundTruthFromBatchAndPerfectPredictions) {
  // Batch GT: image 5 (h 100, w 200) with a box cxcywh (0.5, 0.5, 0.5, 0.2) of label 2
  // -> category_ids[1] = 20, pixels (100 - 50, 50 - 10, 100, 20) = (50, 40, 100, 20),
  // area 2000; a padding row (label 0) and a padded example (batch_mask 0).
  CocoGroundTruth gt;
  gt.category_ids = {10, 20};
  Batch batch{{"boxes", torch::tensor({0.5f, 0.5f, 0.5f, 0.2f, 0.f, 0.f, 0.f, 0.f,
                                       0.5f, 0.5f, 0.1f, 0.1f, 0.f, 0.f, 0.f, 0.f}).reshape({2, 2, 4})},
              {"labels", torch::tensor({2, 0, 1, 0}, torch::kInt64).reshape({2, 2})},
              {"is_crowd", torch::zeros({2, 2}, torch::kInt64)},
              {"orig_size", torch::tensor({100, 200, 50, 50}, torch::kInt64).reshape({2, 2})},
              {"image_id", torch::tensor({5, 6}, torch::kInt64)},
              {"batch_mask", torch::tensor({1.0f, 0.0f})}};
  gt.add_batch(batch);
  EXPECT_EQ(gt.image_ids, std::vector<int64_t>({5}));
  ASSERT_EQ(gt.objects.size(), 1u);
  EXPECT_EQ(gt.objects[0].category_id, 20);
  // float32 inputs (0.2f is not 0.2): compared to 1e-4.
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(gt.objects[0].bbox[i], (std::array<double, 4>{50, 40, 100, 20})[i], 1e-4);
  EXPECT_NEAR(gt.objects[0].area, 2000, 1e-3);
  EXPECT_CONTAINS(error_of([&] { gt.add_batch(batch); }), "image id 5 was added twice");
  // Predictions equal to the GT box with the right class: AP = AR = 1 (medium; no small
  // or large GT: -1). Precision is tp / (tp + fp + eps) as pycocotools: 1 - 2e-16.
  CocoEvaluator ev(gt);
  ev.add_predictions(torch::tensor({0.f, 0.f, 5.f}).reshape({1, 1, 3}),
                     torch::tensor({0.5f, 0.5f, 0.5f, 0.2f}).reshape({1, 1, 4}),
                     {{"orig_size", torch::tensor({100, 200}).reshape({1, 2})}, {"image_id", torch::tensor({5})}});
  const CocoMetrics m = ev.evaluate();
  EXPECT_NEAR(m.stats[0], 1.0, 1e-12);
  EXPECT_NEAR(m.stats[4], 1.0, 1e-12);
  EXPECT_EQ(m.stats[3], -1.0);
  EXPECT_NEAR(m.stats[6], 1.0, 1e-12);
  EXPECT_EQ(m.per_category_ap[0], -1.0);
  EXPECT_NEAR(m.per_category_ap[1], 1.0, 1e-12);
}

}  // namespace
}  // namespace scenic::dataset
