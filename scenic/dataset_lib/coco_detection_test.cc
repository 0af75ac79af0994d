#include "scenic/dataset_lib/coco_detection.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sys/stat.h>
#include <torch/torch.h>

#include <fstream>
#include <string>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using nlohmann::json;
using scenic::testing::error_of;
using testing::TempDir;

// A solid RGB image written as PNG (OpenCV writes BGR, hence the reversal).
void write_png(const std::string& path, int h, int w, cv::Vec3b rgb) {
  cv::Mat img(h, w, CV_8UC3, cv::Scalar(rgb[2], rgb[1], rgb[0]));
  ASSERT_TRUE(cv::imwrite(path, img)) << path;
}

// Categories listed out of id order; image 30 has no annotations.
json small_coco() {
  return json::parse(R"({
    "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"},
                   {"id": 44, "name": "bottle"}],
    "images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
               {"id": 20, "file_name": "sub/b.png", "width": 20, "height": 20},
               {"id": 30, "file_name": "c.png", "width": 16, "height": 8}],
    "annotations": [
      {"id": 1, "image_id": 10, "category_id": 18, "bbox": [2, 3, 10, 5], "iscrowd": 0, "area": 50},
      {"id": 2, "image_id": 20, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400},
      {"id": 3, "image_id": 10, "category_id": 44, "bbox": [30.5, 20, 15, 20], "iscrowd": 1},
      {"id": 4, "image_id": 20, "category_id": 1, "bbox": [25, 5, 3, 3]},
      {"id": 5, "image_id": 20, "category_id": 18, "bbox": [5, 5, 0, 4]}
    ]})");
}

struct CocoFiles {
  TempDir dir;
  std::string json_path;
  CocoFiles(const json& j = small_coco()) {
    ::mkdir(dir.file("img").c_str(), 0755);
    ::mkdir(dir.file("img/sub").c_str(), 0755);
    write_png(dir.file("img/a.png"), 30, 40, {200, 100, 50});
    write_png(dir.file("img/sub/b.png"), 20, 20, {10, 20, 30});
    write_png(dir.file("img/c.png"), 8, 16, {0, 255, 0});
    json_path = write_json(j, "ann.json");
  }
  std::string write_json(const json& j, const std::string& name) {
    std::ofstream(dir.file(name)) << j.dump();
    return dir.file(name);
  }
};

std::vector<float> floats(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
std::vector<int64_t> ints(const torch::Tensor& t) {
  auto c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(CocoDetectionTest, ParsesCategoriesAndBoxes) {
  CocoFiles files;
  CocoAnnotations ann = read_coco_annotations(files.json_path);
  // Sorted by id: person (1) -> 0, dog (18) -> 1, bottle (44) -> 2.
  EXPECT_EQ(ann.category_ids(), (std::vector<int64_t>{1, 18, 44}));
  EXPECT_EQ(ann.categories[1].name, "dog");
  EXPECT_EQ(ann.category_index.at(44), 2);
  EXPECT_EQ(ann.num_annotations, 5);
  ASSERT_EQ(ann.images.size(), 3u);
  EXPECT_EQ(ann.images[1].file_name, "sub/b.png");

  CocoDetectionSource source(ann, files.dir.file("img"));
  ASSERT_EQ(source.size(), 3);
  Example a = source.load(0);
  EXPECT_EQ(a.image_id, 10);
  EXPECT_EQ(a.orig_size, (std::array<int64_t, 2>{30, 40}));
  ASSERT_EQ(a.image.type(), CV_8UC3);
  EXPECT_EQ(a.image.at<cv::Vec3b>(5, 7), cv::Vec3b(200, 100, 50));  // RGB order
  // xywh -> xyxy: [2, 3, 2 + 10, 3 + 5]; the crowd box [30.5, 20, 45.5, 40] is clipped
  // to the 40 x 30 image.
  EXPECT_EQ(floats(a.boxes), (std::vector<float>{2, 3, 12, 8, 30.5, 20, 40, 30}));
  EXPECT_EQ(ints(a.box_labels), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ints(a.is_crowd), (std::vector<int64_t>{0, 1}));

  // Image 20: the box outside the image and the zero-width one are dropped.
  Example b = source.load(1);
  EXPECT_EQ(floats(b.boxes), (std::vector<float>{0, 0, 20, 20}));
  EXPECT_EQ(ints(b.box_labels), (std::vector<int64_t>{0}));
  EXPECT_EQ(ints(b.is_crowd), (std::vector<int64_t>{0}));

  // Image 30 has no annotations and is kept.
  Example c = source.load(2);
  EXPECT_EQ(c.image_id, 30);
  EXPECT_EQ(c.num_boxes(), 0);
  EXPECT_FALSE(c.boxes.defined());
  EXPECT_EQ(c.image.rows, 8);
  EXPECT_CONTAINS(source.describe(2), "c.png");
}

TEST(CocoDetectionTest, MissingKeysNameTheKeyAndFile) {
  CocoFiles files;
  auto message_without = [&](const std::function<void(json&)>& edit) {
    json j = small_coco();
    edit(j);
    const std::string path = files.write_json(j, "bad.json");
    return error_of([&] { read_coco_annotations(path); });
  };
  std::string m = message_without([](json& j) { j.erase("categories"); });
  EXPECT_CONTAINS(m, "bad.json");
  EXPECT_CONTAINS(m, "'categories'");
  m = message_without([](json& j) { j.erase("annotations"); });
  EXPECT_CONTAINS(m, "'annotations'");
  m = message_without([](json& j) { j["images"][1].erase("file_name"); });
  EXPECT_CONTAINS(m, "bad.json");
  EXPECT_CONTAINS(m, "images[1] (id 20)");
  EXPECT_CONTAINS(m, "'file_name'");
  m = message_without([](json& j) { j["annotations"][2].erase("bbox"); });
  EXPECT_CONTAINS(m, "annotations[2] (id 3)");
  EXPECT_CONTAINS(m, "'bbox'");
  m = message_without([](json& j) { j["annotations"][0].erase("category_id"); });
  EXPECT_CONTAINS(m, "'category_id'");
  m = message_without([](json& j) { j["categories"][0].erase("id"); });
  EXPECT_CONTAINS(m, "categories[0]");
  EXPECT_CONTAINS(m, "'id'");
  m = message_without([](json& j) { j["annotations"][0]["bbox"] = {1, 2, 3}; });
  EXPECT_CONTAINS(m, "'bbox' must be 4 numbers");
  m = message_without([](json& j) { j["annotations"][0]["iscrowd"] = 2; });
  EXPECT_CONTAINS(m, "'iscrowd'");

  EXPECT_CONTAINS(error_of([&] { read_coco_annotations(files.dir.file("nope.json")); }),
                  "nope.json");
  std::ofstream(files.dir.file("broken.json")) << "{\"images\": [";
  EXPECT_CONTAINS(error_of([&] { read_coco_annotations(files.dir.file("broken.json")); }),
                  "broken.json: invalid JSON");
}

TEST(CocoDetectionTest, UnknownImageOrCategoryIds) {
  CocoFiles files;
  json j = small_coco();
  j["annotations"][3]["image_id"] = 99;
  std::string path = files.write_json(j, "bad.json");
  std::string m = error_of([&] { read_coco_annotations(path); });
  EXPECT_CONTAINS(m, "bad.json");
  EXPECT_CONTAINS(m, "annotations[3] (id 4)");
  EXPECT_CONTAINS(m, "image_id 99 is not in 'images'");

  j = small_coco();
  j["annotations"][0]["category_id"] = 7;
  path = files.write_json(j, "bad2.json");
  EXPECT_CONTAINS(error_of([&] { read_coco_annotations(path); }), "category_id 7 is not in");
}

TEST(CocoDetectionTest, MissingOrMismatchedImageFilesAreDataErrors) {
  CocoFiles files;
  CocoDetectionSource source(read_coco_annotations(files.json_path), files.dir.file("img"));
  testing::remove_file(files.dir.file("img/sub/b.png"));
  try {
    source.load(1);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_CONTAINS(e.what(), files.dir.file("img/sub/b.png"));
    EXPECT_CONTAINS(e.what(), "no such image file");
    EXPECT_CONTAINS(e.what(), "image id 20");
  }
  // Not an image at all.
  std::ofstream(files.dir.file("img/a.png")) << "not a png";
  const std::string m = error_of([&] { source.load(0); });
  EXPECT_CONTAINS(m, files.dir.file("img/a.png") + " (image id 10");
  EXPECT_CONTAINS(m, "cannot decode");
  // A size that contradicts the JSON (8 x 16 in the file, 8 x 16 declared: fine; then
  // declare 9 x 16).
  json j = small_coco();
  j["images"][2]["height"] = 9;
  CocoDetectionSource wrong(read_coco_annotations(files.write_json(j, "size.json")),
                            files.dir.file("img"));
  EXPECT_CONTAINS(error_of([&] { wrong.load(2); }), "c.png");
  EXPECT_CONTAINS(error_of([&] { wrong.load(2); }), "decoded size 8x16");
}

DatasetOptions coco_options(const CocoFiles& f, const std::string& eval_json) {
  DatasetOptions o;
  o.batch_size = 2;
  o.eval_batch_size = 4;
  o.dataset_configs.set<std::string>("train_annotations", f.json_path);
  o.dataset_configs.set<std::string>("train_images", f.dir.file("img"));
  o.dataset_configs.set<std::string>("eval_annotations", eval_json);
  o.dataset_configs.set<std::string>("eval_images", f.dir.file("img"));
  return o;
}

TEST(CocoDetectionTest, BuiltDatasetGivesDetrBoxes) {
  CocoFiles files;
  DatasetOptions o = coco_options(files, files.json_path);
  o.dataset_configs.set<std::string>("pp_eval", "");
  std::unique_ptr<Dataset> ds = build_coco_detection(o);
  EXPECT_EQ(ds->meta_data.num_classes, 4);  // 3 categories + padding
  EXPECT_EQ(ds->meta_data.class_names,
            (std::vector<std::string>{"padding", "person", "dog", "bottle"}));
  EXPECT_EQ(ds->meta_data.num_eval_examples, 3);
  auto it = ds->eval_iter("valid");
  std::optional<Batch> batch = it->next();
  ASSERT_TRUE(batch.has_value());
  Batch& b = *batch;
  EXPECT_EQ(ints(b.at("image_id")), (std::vector<int64_t>{10, 20, 30, 0}));
  EXPECT_EQ(floats(b.at("batch_mask")), (std::vector<float>{1, 1, 1, 0}));
  EXPECT_EQ(ints(b.at("orig_size")[0]), (std::vector<int64_t>{30, 40}));
  // Image 10 (W 40, H 30): [2, 3, 12, 8] -> cx 7/40, cy 5.5/30, w 10/40, h 5/30;
  // crowd [30.5, 20, 40, 30] -> cx 35.25/40, cy 25/30, w 9.5/40, h 10/30.
  torch::Tensor boxes = b.at("boxes");  // [4, max_boxes, 4]
  ASSERT_EQ(boxes.dim(), 3);
  auto expect = torch::tensor({{7 / 40.f, 5.5f / 30, 10 / 40.f, 5 / 30.f},
                               {35.25f / 40, 25 / 30.f, 9.5f / 40, 10 / 30.f}});
  EXPECT_TRUE(torch::allclose(boxes[0].slice(0, 0, 2), expect, 1e-6, 1e-6)) << boxes[0].slice(0, 0, 2);
  // Labels are category index + 1: dog 1 + 1, bottle 2 + 1; person 0 + 1 for image 20.
  EXPECT_EQ(ints(b.at("labels")[0].slice(0, 0, 3)), (std::vector<int64_t>{2, 3, 0}));
  EXPECT_EQ(ints(b.at("labels")[1].slice(0, 0, 2)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(ints(b.at("is_crowd")[0].slice(0, 0, 2)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(b.at("box_mask")[0].sum().item<float>(), 2.0f);
  EXPECT_EQ(b.at("box_mask")[2].sum().item<float>(), 0.0f);  // image without annotations
  // Image 20 (20 x 20): [0, 0, 20, 20] -> (0.5, 0.5, 1, 1).
  EXPECT_TRUE(torch::allclose(boxes[1][0], torch::tensor({0.5f, 0.5f, 1.f, 1.f})));
}

TEST(CocoDetectionTest, DefaultChainsRunAndCategoriesMustMatch) {
  CocoFiles files;
  DatasetOptions o = coco_options(files, files.json_path);
  std::unique_ptr<Dataset> ds = build_coco_detection(o);
  auto it = ds->train_iter(0);
  std::optional<Batch> b = it->next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->at("inputs").size(0), 2);
  EXPECT_EQ(b->at("inputs").size(1), 3);
  // Normalized boxes stay inside [0, 1] after the random resize and flip.
  EXPECT_GE(b->at("boxes").min().item<float>(), 0.0f);
  EXPECT_LE(b->at("boxes").max().item<float>(), 1.0f);

  json j = small_coco();
  j["categories"].push_back({{"id", 90}, {"name", "toothbrush"}});
  DatasetOptions other = coco_options(files, files.write_json(j, "eval.json"));
  EXPECT_CONTAINS(error_of([&] { build_coco_detection(other); }), "different categories");
}

}  // namespace
}  // namespace scenic::dataset
