#include "scenic/dataset_lib/segmentation_folder.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <sys/stat.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::TempDir;

constexpr int kH = 2, kW = 4;

void mkdirs(const std::string& root, const std::vector<std::string>& rel) {
  for (const auto& r : rel) ASSERT_EQ(::mkdir((root + "/" + r).c_str(), 0755), 0) << r;
}

// Image whose pixel (y, x) has RGB (10 * y, 10 * x, seed), written as PNG (BGR order on
// disk).
void write_image(const std::string& path, int seed, int h = kH, int w = kW) {
  cv::Mat bgr(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(seed, 10 * x, 10 * y);
  ASSERT_TRUE(cv::imwrite(path, bgr)) << path;
}

void write_label(const std::string& path, const std::vector<int>& raw, int depth = CV_8U) {
  cv::Mat m(kH, kW, depth == CV_8U ? CV_8UC1 : CV_16UC1);
  for (int i = 0; i < kH * kW; ++i) {
    if (depth == CV_8U)
      m.at<uint8_t>(i / kW, i % kW) = static_cast<uint8_t>(raw[i]);
    else
      m.at<uint16_t>(i / kW, i % kW) = static_cast<uint16_t>(raw[i]);
  }
  ASSERT_TRUE(cv::imwrite(path, m)) << path;
}

std::vector<int32_t> mask_values(const cv::Mat& m) {
  std::vector<int32_t> out;
  for (int y = 0; y < m.rows; ++y)
    for (int x = 0; x < m.cols; ++x) out.push_back(m.at<int32_t>(y, x));
  return out;
}

// Cityscapes-style tree:
//   leftImg8bit/train/aachen/a_000001_leftImg8bit.png   labels: 7 8 11 0 / 99 255 300 8 (16-bit)
//   leftImg8bit/train/bremen/b_000002_leftImg8bit.png   labels: 8 8 7 7 / 11 11 0 0
//   leftImg8bit/val/c_000003_leftImg8bit.png            labels: 7 11 8 0 / 7 7 7 7
struct CityTree {
  TempDir dir;
  CityTree() {
    const std::string& r = dir.path();
    mkdirs(r, {"leftImg8bit", "leftImg8bit/train", "leftImg8bit/train/aachen",
               "leftImg8bit/train/bremen", "leftImg8bit/val", "gtFine", "gtFine/train",
               "gtFine/train/aachen", "gtFine/train/bremen", "gtFine/val"});
    write_image(r + "/leftImg8bit/train/aachen/a_000001_leftImg8bit.png", 1);
    write_image(r + "/leftImg8bit/train/bremen/b_000002_leftImg8bit.png", 2);
    write_image(r + "/leftImg8bit/val/c_000003_leftImg8bit.png", 3);
    write_label(r + "/gtFine/train/aachen/a_000001_gtFine_labelIds.png",
                {7, 8, 11, 0, 99, 255, 300, 8}, CV_16U);
    write_label(r + "/gtFine/train/bremen/b_000002_gtFine_labelIds.png", {8, 8, 7, 7, 11, 11, 0, 0});
    write_label(r + "/gtFine/val/c_000003_gtFine_labelIds.png", {7, 11, 8, 0, 7, 7, 7, 7});
  }
  SegmentationFolderOptions options() const {
    SegmentationFolderOptions o;
    o.data_dir = dir.path();
    o.images_dir = "leftImg8bit";
    o.labels_dir = "gtFine";
    o.image_suffix = "_leftImg8bit";
    o.label_suffix = "_gtFine_labelIds";
    o.num_classes = 3;
    o.label_map = std::map<int64_t, int64_t>{{7, 0}, {8, 1}, {11, 2}, {99, 255}};
    return o;
  }
};

TEST(SegmentationFolderTest, LabelMapToTrainIdsAndVoid) {
  CityTree tree;
  SegmentationFolderSource source(tree.options(), "train");
  ASSERT_EQ(source.size(), 2);
  EXPECT_EQ(source.label_path(0),
            tree.dir.path() + "/gtFine/train/aachen/a_000001_gtFine_labelIds.png");
  Example a = source.load(0);
  // 7 -> 0, 8 -> 1, 11 -> 2; 0 and 300 are not in the map and 99 maps to the void 255.
  const int32_t V = kIgnoreLabel;
  EXPECT_EQ(mask_values(a.mask), (std::vector<int32_t>{0, 1, 2, V, V, V, V, 1}));
  ASSERT_EQ(a.image.type(), CV_8UC3);
  EXPECT_EQ(a.image.at<cv::Vec3b>(1, 3), cv::Vec3b(10, 30, 1));  // RGB (10 y, 10 x, seed)
  EXPECT_EQ(a.orig_size, (std::array<int64_t, 2>{kH, kW}));
  EXPECT_CONTAINS(a.source, "a_000001_leftImg8bit.png");
  EXPECT_EQ(mask_values(source.load(1).mask), (std::vector<int32_t>{1, 1, 0, 0, 2, 2, V, V}));
  EXPECT_EQ(source.map_label(11), 2);
  EXPECT_EQ(source.map_label(12), kIgnoreLabel);

  SegmentationFolderSource val(tree.options(), "val");
  ASSERT_EQ(val.size(), 1);
  EXPECT_EQ(mask_values(val.load(0).mask), (std::vector<int32_t>{0, 2, 1, V, 0, 0, 0, 0}));
}

TEST(SegmentationFolderTest, WithoutLabelMapIdsAreClassesOrVoid) {
  TempDir dir;
  mkdirs(dir.path(), {"images", "images/train", "labels", "labels/train"});
  write_image(dir.file("images/train/x.jpg"), 5);
  write_label(dir.file("labels/train/x.png"), {0, 1, 2, 255, 2, 1, 0, 254});
  write_image(dir.file("images/train/y.png"), 6);
  write_label(dir.file("labels/train/y.png"), {0, 1, 2, 5, 0, 0, 0, 0});
  SegmentationFolderOptions o;
  o.data_dir = dir.path();
  o.num_classes = 3;
  o.void_labels = {254, 255};
  SegmentationFolderSource source(o, "train");
  ASSERT_EQ(source.size(), 2);
  const int32_t V = kIgnoreLabel;
  EXPECT_EQ(mask_values(source.load(0).mask), (std::vector<int32_t>{0, 1, 2, V, 2, 1, 0, V}));
  // 5 is neither a class in [0, 3) nor void.
  std::string m = error_of([&] { source.load(1); });
  EXPECT_CONTAINS(m, dir.file("labels/train/y.png"));
  EXPECT_CONTAINS(m, "label 5 at (row 0, col 3)");
}

TEST(SegmentationFolderTest, BadFilesAreDataErrorsNamingThem) {
  CityTree tree;
  SegmentationFolderSource source(tree.options(), "train");
  const std::string label = tree.dir.path() + "/gtFine/train/bremen/b_000002_gtFine_labelIds.png";
  testing::remove_file(label);
  try {
    source.load(1);
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_CONTAINS(e.what(), label + ": missing label file");
    EXPECT_CONTAINS(e.what(), "b_000002_leftImg8bit.png");
  }
  // A colour label image.
  write_image(label, 0);
  EXPECT_CONTAINS(error_of([&] { source.load(1); }), "single-channel");
  // A label of another size than its image.
  cv::Mat small(1, kW, CV_8UC1, cv::Scalar(7));
  ASSERT_TRUE(cv::imwrite(label, small));
  EXPECT_CONTAINS(error_of([&] { source.load(1); }), "label size 1x4 differs from image");
}

TEST(SegmentationFolderTest, BadLayoutOrOptions) {
  CityTree tree;
  auto o = tree.options();
  EXPECT_CONTAINS(error_of([&] { SegmentationFolderSource(o, "test"); }),
                  "no image directory " + tree.dir.path() + "/leftImg8bit/test");
  o.label_map = std::map<int64_t, int64_t>{{7, 3}};
  EXPECT_CONTAINS(error_of([&] { SegmentationFolderSource(o, "train"); }),
                  "7 -> 3 is neither a class");
  mkdirs(tree.dir.path(), {"leftImg8bit/empty"});
  EXPECT_CONTAINS(error_of([&] { SegmentationFolderSource(tree.options(), "empty"); }),
                  "no .png/.jpg images");
}

DatasetOptions city_options(const CityTree& tree, const std::string& extra) {
  DatasetOptions o;
  o.batch_size = 2;
  o.eval_batch_size = 2;
  o.dataset_configs = common::ConfigDict::from_yaml_string(
      "data_dir: " + tree.dir.path() +
      "\nimages_dir: leftImg8bit\nlabels_dir: gtFine\nimage_suffix: _leftImg8bit\n"
      "label_suffix: _gtFine_labelIds\nclasses: [road, car, sky]\n" + extra);
  return o;
}

TEST(SegmentationFolderTest, BuiltDatasetMasksVoidPixels) {
  CityTree tree;
  // label_map as a list indexed by raw id: 7 -> 0, 8 -> 1, 11 -> 2, others void (null
  // or 255).
  DatasetOptions o = city_options(
      tree, "label_map: [null, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2]\n"
            "pp_eval: ''\ninput_size: [6, 8]\n");
  std::unique_ptr<Dataset> ds = build_segmentation_folder(o);
  EXPECT_EQ(ds->meta_data.num_classes, 3);
  EXPECT_EQ(ds->meta_data.class_names, (std::vector<std::string>{"road", "car", "sky"}));
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 6, 8}));
  EXPECT_EQ(ds->meta_data.num_train_examples, 2);
  auto b = ds->eval_iter("test")->next();
  ASSERT_TRUE(b.has_value());
  // val labels 7 11 8 0 / 7 7 7 7 -> 0 2 1 void / 0 0 0 0; void pixels get label 0 and
  // batch_mask 0; the second row of the batch is padding.
  torch::Tensor label = b->at("label"), mask = b->at("batch_mask");
  ASSERT_EQ(label.sizes(), (std::vector<int64_t>{2, kH, kW}));
  EXPECT_TRUE(torch::equal(label[0], torch::tensor({{0, 2, 1, 0}, {0, 0, 0, 0}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(mask[0], torch::tensor({{1.f, 1.f, 1.f, 0.f}, {1.f, 1.f, 1.f, 1.f}})));
  EXPECT_EQ(mask[1].sum().item<float>(), 0.0f);
  // inputs are the RGB pixels / 255: pixel (1, 3) of image seed 3 is (10, 30, 3).
  torch::Tensor inputs = b->at("inputs");
  EXPECT_FLOAT_EQ(inputs[0][1][1][3].item<float>(), 30 / 255.0f);
  EXPECT_FLOAT_EQ(inputs[0][2][1][3].item<float>(), 3 / 255.0f);

  // The default train chain crops and resizes to input_size.
  auto t = ds->train_iter(0)->next();
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->at("inputs").sizes(), (std::vector<int64_t>{2, 3, 6, 8}));
  EXPECT_EQ(t->at("label").sizes(), (std::vector<int64_t>{2, 6, 8}));
  EXPECT_LE(t->at("label").max().item<int64_t>(), 2);
}

TEST(SegmentationFolderTest, ConfigErrors) {
  CityTree tree;
  DatasetOptions o = city_options(tree, "num_classes: 4\n");
  EXPECT_CONTAINS(error_of([&] { build_segmentation_folder(o); }), "dataset_configs.num_classes (4)");
  o = city_options(tree, "label_map: {seven: 0}\n");
  EXPECT_CONTAINS(error_of([&] { build_segmentation_folder(o); }), "key 'seven'");
  DatasetOptions none;
  none.batch_size = 1;
  none.dataset_configs.set<std::string>("data_dir", tree.dir.path());
  EXPECT_CONTAINS(error_of([&] { build_segmentation_folder(none); }), "dataset_configs.classes");
}

}  // namespace
}  // namespace scenic::dataset
