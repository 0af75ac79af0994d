// `shapes`: a procedurally generated image dataset of coloured shapes, for
// classification, multi-label classification, detection and segmentation on any machine.
//
// Scenic has no counterpart: it is the stand-in for the TFDS datasets its classification
// (mnist/cifar), segmentation (cityscapes/oxford_pets) and detection (coco, DETR) configs
// read, small and self-contained so that every task runs end to end without downloads.
//
// Example i of a split depends only on (seed, split, i), so the dataset has any size and
// needs no storage. Each image (image_size x image_size RGB, uint8) has a background
// ("noise": a dark base colour plus per-pixel noise; "plain": one dark colour; every
// channel < 128 either way) and 1..max_shapes filled shapes drawn with OpenCV
// (cv::rectangle, cv::ellipse, cv::fillPoly; 8-connected, no anti-aliasing) in one of six
// saturated colours (each has a channel >= 200, so no shape pixel looks like
// background). Later shapes paint over earlier ones.
//
// Occlusion policy: a new shape is only placed where every earlier shape keeps at least
// half of the pixels it was drawn with (up to 20 placements are tried; when all fail the
// image gets fewer shapes). So every shape in an image is clearly visible, and each one
// has a box and a class in every task: there is never a visible shape without a box.
//
// Classes (`dataset_configs.classes`):
//   "shape" (default): 3 classes, rectangle 0, ellipse 1, triangle 2;
//   "shape_color":     18 classes, shape * 6 + colour (red, green, blue, yellow,
//                      magenta, cyan).
// Targets per task (`dataset_configs.task`):
//   classification: label = class of the shape with the most visible pixels (ties: the
//                   earliest drawn); meta num_classes = C.
//   multilabel:     multi_hot [C], 1 for each class present; num_classes = C.
//   detection:      boxes = tight bounds of each shape's visible pixels, in pixel-edge
//                   coordinates (a shape covering columns 3..7 has x0 = 3, x1 = 8);
//                   box_labels = class (0-based; the pipeline shifts them by one);
//                   is_crowd 0; num_classes = C + 1 (DETR's: 0 is padding).
//   segmentation:   mask = class + 1 on shape pixels, 0 on background (a real class, not
//                   void); num_classes = C + 1.
#pragma once

#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"
#include "scenic/dataset_lib/pipeline.h"

namespace scenic::dataset {

enum class ShapeClasses { kShape, kShapeColor };

struct ShapesOptions {
  int64_t image_size = 64;  // >= 16
  int64_t min_shapes = 1;   // >= 1; an image may get fewer (occlusion policy above)
  int64_t max_shapes = 3;   // >= min_shapes
  uint64_t seed = 0;
  bool noise_background = true;
  ShapeClasses classes = ShapeClasses::kShape;
};

constexpr int kNumShapeTypes = 3;    // rectangle, ellipse, triangle
constexpr int kNumShapeColors = 6;   // see kShapeColors in shapes.cc
int64_t num_shape_classes(ShapeClasses classes);  // C: 3 or 18
std::vector<std::string> shape_class_names(ShapeClasses classes);  // [C]
std::array<uint8_t, 3> shape_color_rgb(int color);                  // color in [0, 6)

// One drawn shape and where it ended up.
struct ShapeInstance {
  int type = 0;   // 0 rectangle, 1 ellipse, 2 triangle
  int color = 0;  // index into the palette
  int64_t class_id = 0;
  int64_t drawn_pixels = 0;    // pixels it covered when drawn
  int64_t visible_pixels = 0;  // pixels still showing it in the final image
  std::array<float, 4> box{};  // x0, y0, x1, y1 of the visible pixels (pixel edges)
};

// Everything about one generated image. `example` has every target filled in (label,
// multi_hot, mask, boxes); `instances` is H x W CV_32S: 0 background, j + 1 where shape
// j shows.
struct ShapesRendering {
  Example example;
  cv::Mat instances;
  std::vector<ShapeInstance> shapes;
};

// Renders example `index` of split `split` (0 train, 1 eval) from scratch.
ShapesRendering render_shapes(const ShapesOptions& options, int split, int64_t index);

// The examples [0, size) of one split, with only the task's target kept.
class ShapesSource : public ExampleSource {
 public:
  ShapesSource(ShapesOptions options, int split, int64_t size, Task task);
  int64_t size() const override { return size_; }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override;

 private:
  ShapesOptions options_;
  int split_;
  int64_t size_;
  Task task_;
};

// The builder registered as `shapes`. dataset_configs: task (classification |
// multilabel | detection | segmentation; default classification), num_train_examples
// (10000), num_eval_examples (1000), image_size (64), min_shapes (1), max_shapes (3),
// seed (0; fixes the content, independent of the shuffle seed), background (noise |
// plain), classes (shape | shape_color), and the pipeline keys of
// PipelineConfig::from_options. Eval splits "valid" and "test" are the same examples.
std::unique_ptr<Dataset> build_shapes(const DatasetOptions& options);

}  // namespace scenic::dataset
