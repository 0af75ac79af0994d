#include "scenic/dataset_lib/shapes.h"

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <set>
#include <string>

#include "scenic/common_lib/testing.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

bool same_mat(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type()) return false;
  cv::Mat diff;
  cv::compare(a.reshape(1), b.reshape(1), diff, cv::CMP_NE);
  return cv::countNonZero(diff) == 0;
}

TEST(ShapesTest, SameSeedAndIndexGiveTheSameExample) {
  ShapesOptions o;
  o.seed = 7;
  // Render 5, then other indices, then 5 again: example 5 depends only on (seed, 5).
  ShapesRendering a = render_shapes(o, 0, 5);
  render_shapes(o, 0, 4);
  render_shapes(o, 1, 5);
  ShapesRendering b = render_shapes(o, 0, 5);
  EXPECT_TRUE(same_mat(a.example.image, b.example.image));
  EXPECT_TRUE(same_mat(a.example.mask, b.example.mask));
  EXPECT_TRUE(torch::equal(a.example.boxes, b.example.boxes));
  EXPECT_EQ(a.example.label, b.example.label);

  // Another index, split or seed gives another image.
  EXPECT_FALSE(same_mat(a.example.image, render_shapes(o, 0, 6).example.image));
  EXPECT_FALSE(same_mat(a.example.image, render_shapes(o, 1, 5).example.image));
  ShapesOptions other = o;
  other.seed = 8;
  EXPECT_FALSE(same_mat(a.example.image, render_shapes(other, 0, 5).example.image));

  // The source returns the rendered example.
  ShapesSource source(o, 0, 10, Task::kClassification);
  Example c = source.load(5);
  EXPECT_TRUE(same_mat(a.example.image, c.image));
  EXPECT_EQ(c.label, a.example.label);
}

// Checks every invariant of one rendering against the pixels, independently of how
// render_shapes computed them.
void check_rendering(const ShapesOptions& o, const ShapesRendering& r, const std::string& what) {
  SCOPED_TRACE(what);
  const Example& ex = r.example;
  const int S = static_cast<int>(o.image_size);
  ASSERT_EQ(ex.image.type(), CV_8UC3);
  ASSERT_EQ(ex.image.rows, S);
  ASSERT_EQ(ex.image.cols, S);
  ASSERT_EQ(ex.mask.type(), CV_32S);
  EXPECT_EQ(ex.orig_size[0], S);
  const int n = static_cast<int>(r.shapes.size());
  ASSERT_GE(n, o.min_shapes);
  ASSERT_LE(n, o.max_shapes);
  ASSERT_EQ(ex.boxes.size(0), n);
  ASSERT_EQ(ex.box_labels.size(0), n);
  EXPECT_EQ(ex.is_crowd.sum().item<int64_t>(), 0);

  int64_t largest = 0;
  for (int j = 0; j < n; ++j) {
    const ShapeInstance& s = r.shapes[j];
    cv::Mat pixels = r.instances == (j + 1);
    const int visible = cv::countNonZero(pixels);
    EXPECT_EQ(visible, s.visible_pixels);
    // Occlusion policy: at least half of what was drawn still shows.
    EXPECT_GE(2 * s.visible_pixels, s.drawn_pixels) << "shape " << j;
    // The box is the tight bound of the shape's pixels (pixel-edge coordinates).
    cv::Rect tight = cv::boundingRect(pixels);
    auto box = ex.boxes[j];
    EXPECT_EQ(box[0].item<float>(), tight.x) << "shape " << j;
    EXPECT_EQ(box[1].item<float>(), tight.y) << "shape " << j;
    EXPECT_EQ(box[2].item<float>(), tight.x + tight.width) << "shape " << j;
    EXPECT_EQ(box[3].item<float>(), tight.y + tight.height) << "shape " << j;
    const int64_t cls = o.classes == ShapeClasses::kShape ? s.type : s.type * kNumShapeColors + s.color;
    EXPECT_EQ(s.class_id, cls);
    EXPECT_EQ(ex.box_labels[j].item<int64_t>(), cls);
    EXPECT_EQ(ex.multi_hot[cls].item<float>(), 1.0f);
    if (s.visible_pixels > r.shapes[largest].visible_pixels) largest = j;
  }
  EXPECT_EQ(ex.label, r.shapes[largest].class_id);
  std::set<int64_t> present;
  for (const auto& s : r.shapes) present.insert(s.class_id);
  EXPECT_EQ(ex.multi_hot.sum().item<float>(), static_cast<float>(present.size()));

  // Mask and image agree pixel by pixel: background (mask 0) is dark in every channel;
  // a shape pixel has exactly its shape's colour, and in shape_color mode the class in
  // the mask alone names that colour.
  int bad = 0;
  for (int y = 0; y < S; ++y) {
    for (int x = 0; x < S; ++x) {
      const cv::Vec3b p = ex.image.at<cv::Vec3b>(y, x);
      const int32_t m = ex.mask.at<int32_t>(y, x), inst = r.instances.at<int32_t>(y, x);
      if (m == 0) {
        bad += inst != 0 || p[0] >= 128 || p[1] >= 128 || p[2] >= 128;
        continue;
      }
      const ShapeInstance& s = r.shapes.at(inst - 1);
      bad += m != s.class_id + 1;
      const auto rgb = shape_color_rgb(s.color);
      bad += p[0] != rgb[0] || p[1] != rgb[1] || p[2] != rgb[2];
      if (o.classes == ShapeClasses::kShapeColor) bad += (m - 1) % kNumShapeColors != s.color;
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(ShapesTest, BoxesMasksAndColoursAgreeWithThePixels) {
  std::set<int> types;
  std::set<int64_t> labels;
  int64_t max_seen = 0;
  for (bool noise : {true, false}) {
    for (ShapeClasses classes : {ShapeClasses::kShape, ShapeClasses::kShapeColor}) {
      ShapesOptions o;
      o.noise_background = noise;
      o.classes = classes;
      o.max_shapes = 4;
      for (int i = 0; i < 40; ++i) {
        ShapesRendering r = render_shapes(o, i % 2, i);
        check_rendering(o, r, "example " + std::to_string(i));
        for (const auto& s : r.shapes) types.insert(s.type);
        if (classes == ShapeClasses::kShape) labels.insert(r.example.label);
        max_seen = std::max<int64_t>(max_seen, static_cast<int64_t>(r.shapes.size()));
      }
    }
  }
  EXPECT_EQ(types.size(), 3u);   // rectangles, ellipses and triangles all occur
  EXPECT_EQ(labels.size(), 3u);  // and each is the largest shape somewhere
  EXPECT_GE(max_seen, 3);        // several shapes per image do get placed
}

TEST(ShapesTest, OtherSizesAndManyShapes) {
  ShapesOptions o;
  o.image_size = 16;  // the smallest allowed
  o.max_shapes = 6;
  for (int i = 0; i < 20; ++i) check_rendering(o, render_shapes(o, 0, i), "16px " + std::to_string(i));
  o.image_size = 97;
  o.min_shapes = 2;
  for (int i = 0; i < 10; ++i) check_rendering(o, render_shapes(o, 0, i), "97px " + std::to_string(i));
}

TEST(ShapesTest, SourceKeepsOnlyTheTasksTarget) {
  ShapesOptions o;
  ShapesSource cls(o, 0, 3, Task::kClassification), det(o, 0, 3, Task::kDetection),
      seg(o, 0, 3, Task::kSegmentation), multi(o, 0, 3, Task::kMultiLabel);
  EXPECT_EQ(cls.size(), 3);
  Example c = cls.load(1), d = det.load(1), s = seg.load(1), m = multi.load(1);
  EXPECT_GE(c.label, 0);
  EXPECT_TRUE(c.mask.empty());
  EXPECT_FALSE(c.boxes.defined());
  EXPECT_EQ(d.label, -1);
  EXPECT_GE(d.num_boxes(), 1);
  EXPECT_TRUE(d.mask.empty());
  EXPECT_EQ(s.label, -1);
  EXPECT_FALSE(s.mask.empty());
  EXPECT_FALSE(s.boxes.defined());
  EXPECT_EQ(m.multi_hot.size(0), 3);
  EXPECT_EQ(d.image_id, 1);
  EXPECT_CONTAINS(error_of([&] { cls.load(3); }), "example 3");
}

TEST(ShapesTest, ClassNames) {
  EXPECT_EQ(num_shape_classes(ShapeClasses::kShape), 3);
  EXPECT_EQ(num_shape_classes(ShapeClasses::kShapeColor), 18);
  auto names = shape_class_names(ShapeClasses::kShapeColor);
  ASSERT_EQ(names.size(), 18u);
  // class = type * 6 + colour: 1 * 6 + 2 = 8 is a blue ellipse.
  EXPECT_EQ(names[8], "blue_ellipse");
  EXPECT_EQ(shape_class_names(ShapeClasses::kShape)[2], "triangle");
}

DatasetOptions shapes_options(const std::string& task, int64_t batch) {
  DatasetOptions d;
  d.batch_size = batch;
  d.eval_batch_size = batch;
  d.dataset_configs.set<std::string>("task", task);
  d.dataset_configs.set<int64_t>("num_train_examples", 20);
  d.dataset_configs.set<int64_t>("num_eval_examples", 5);
  d.dataset_configs.set<int64_t>("image_size", 32);
  d.dataset_configs.set<int64_t>("seed", 3);
  return d;
}

ShapesOptions matching_options() {
  ShapesOptions o;
  o.image_size = 32;
  o.seed = 3;
  return o;
}

TEST(ShapesTest, DetectionBatchesHaveNormalizedCxcywhBoxesAndShiftedLabels) {
  std::unique_ptr<Dataset> ds = build_shapes(shapes_options("detection", 4));
  EXPECT_EQ(ds->meta_data.num_classes, 4);  // 3 shapes + padding
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 32, 32}));
  EXPECT_EQ(ds->meta_data.num_eval_examples, 5);
  auto batch = ds->eval_iter("valid")->next();  // eval examples 0..3 in order, no flip
  ASSERT_TRUE(batch.has_value());
  const Batch& b = *batch;
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    ShapesRendering r = render_shapes(matching_options(), 1, i);
    const auto n = static_cast<int64_t>(r.shapes.size());
    EXPECT_EQ(b.at("box_mask")[i].sum().item<float>(), static_cast<float>(n));
    for (int64_t j = 0; j < n; ++j) {
      const auto& box = r.shapes[j].box;  // x0, y0, x1, y1 in pixels of a 32 x 32 image
      auto expect = torch::tensor({(box[0] + box[2]) / 2 / 32, (box[1] + box[3]) / 2 / 32,
                                   (box[2] - box[0]) / 32, (box[3] - box[1]) / 32});
      EXPECT_TRUE(torch::allclose(b.at("boxes")[i][j], expect)) << b.at("boxes")[i][j];
      EXPECT_EQ(b.at("labels")[i][j].item<int64_t>(), r.shapes[j].class_id + 1);
    }
    EXPECT_EQ(b.at("labels")[i].slice(0, n).sum().item<int64_t>(), 0);  // padding rows
    // inputs are the image / 255 in CHW: channel 0 is red.
    const cv::Vec3b p = r.example.image.at<cv::Vec3b>(7, 9);
    EXPECT_FLOAT_EQ(b.at("inputs")[i][0][7][9].item<float>(), p[0] / 255.0f);
    EXPECT_FLOAT_EQ(b.at("inputs")[i][2][7][9].item<float>(), p[2] / 255.0f);
  }
  // Train batches (flipped at random) keep the layout.
  auto t = ds->train_iter(0)->next();
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->at("inputs").sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_GE(t->at("box_mask").sum(1).min().item<float>(), 1.0f);
}

TEST(ShapesTest, ClassificationAndSegmentationBatches) {
  auto cls = build_shapes(shapes_options("classification", 5));
  EXPECT_EQ(cls->meta_data.num_classes, 3);
  auto c = cls->eval_iter("test")->next();
  ASSERT_TRUE(c.has_value());
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(c->at("label")[i].item<int64_t>(), render_shapes(matching_options(), 1, i).example.label);

  auto seg = build_shapes(shapes_options("segmentation", 2));
  EXPECT_EQ(seg->meta_data.num_classes, 4);
  EXPECT_EQ(seg->meta_data.class_names[0], "background");
  auto s = seg->eval_iter("valid")->next();
  ASSERT_TRUE(s.has_value());
  for (int i = 0; i < 2; ++i) {
    const cv::Mat& m = render_shapes(matching_options(), 1, i).example.mask;
    torch::Tensor expect = torch::from_blob(m.data, {32, 32}, torch::kInt32).to(torch::kInt64);
    EXPECT_TRUE(torch::equal(s->at("label")[i], expect));
    EXPECT_EQ(s->at("batch_mask")[i].sum().item<float>(), 32.0f * 32.0f);  // no void pixels
  }

  auto multi = build_shapes(shapes_options("multilabel", 2));
  EXPECT_TRUE(multi->meta_data.target_is_onehot);
  auto ml = multi->eval_iter("valid")->next();
  ASSERT_TRUE(ml.has_value());
  EXPECT_TRUE(torch::equal(ml->at("label")[1], render_shapes(matching_options(), 1, 1).example.multi_hot));
}

TEST(ShapesTest, BadOptions) {
  ShapesOptions o;
  o.image_size = 8;
  EXPECT_CONTAINS(error_of([&] { ShapesSource(o, 0, 1, Task::kClassification); }), "image_size");
  o.image_size = 32;
  o.min_shapes = 3;
  o.max_shapes = 2;
  EXPECT_CONTAINS(error_of([&] { ShapesSource(o, 0, 1, Task::kClassification); }), "max_shapes");
  DatasetOptions d;
  d.batch_size = 2;
  d.dataset_configs.set<std::string>("task", "panoptic");
  EXPECT_CONTAINS(error_of([&] { build_shapes(d); }), "dataset_configs.task");
}

}  // namespace
}  // namespace scenic::dataset
