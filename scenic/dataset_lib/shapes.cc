#include "scenic/dataset_lib/shapes.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

// Saturated RGB colours: each has a channel >= 200, and the background stays below 128
// in every channel, so shape and background pixels never look alike.
constexpr std::array<std::array<uint8_t, 3>, kNumShapeColors> kShapeColors = {{
    {230, 25, 25},    // red
    {25, 200, 25},    // green
    {40, 80, 240},    // blue
    {240, 220, 30},   // yellow
    {220, 40, 220},   // magenta
    {30, 220, 220},   // cyan
}};
constexpr const char* kTypeNames[kNumShapeTypes] = {"rectangle", "ellipse", "triangle"};
constexpr const char* kColorNames[kNumShapeColors] = {"red",    "green",   "blue",
                                                      "yellow", "magenta", "cyan"};
constexpr int kMaxPlacementTries = 20;
constexpr int64_t kMinShapePixels = 9;

// The generator of one example. std::seed_seq and mt19937_64 are fully specified by the
// standard and the draws below use only raw 64-bit outputs (the std distributions are
// implementation-defined), so an example is the same on every platform and compiler.
class ShapeRng {
 public:
  ShapeRng(uint64_t seed, int split, int64_t index) {
    const auto idx = static_cast<uint64_t>(index);
    std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                      static_cast<uint32_t>(split), static_cast<uint32_t>(idx),
                      static_cast<uint32_t>(idx >> 32), 0x5ca9e5u};
    gen_.seed(seq);
  }
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * (static_cast<double>(gen_() >> 11) * 0x1.0p-53);
  }
  int64_t integer(int64_t lo, int64_t hi) {  // inclusive
    const auto v = lo + static_cast<int64_t>(uniform(0.0, 1.0) * static_cast<double>(hi - lo + 1));
    return std::min(v, hi);
  }

 private:
  std::mt19937_64 gen_;
};

// Draws one random shape of `type` as 255 on a zeroed CV_8U `scratch` (S x S).
void draw_candidate(cv::Mat& scratch, int type, ShapeRng& rng) {
  const double S = scratch.rows;
  const double s = rng.uniform(std::max(S / 6.0, 6.0), S / 2.5);  // extent of the shape
  const double cx = rng.uniform(s / 2, S - s / 2), cy = rng.uniform(s / 2, S - s / 2);
  const double w = s * rng.uniform(0.6, 1.0), h = s * rng.uniform(0.6, 1.0);
  const cv::Scalar on(255);
  if (type == 0) {
    // Inclusive corners: the rectangle covers columns p0.x..p1.x.
    cv::Point p0(static_cast<int>(std::lround(cx - w / 2)), static_cast<int>(std::lround(cy - h / 2)));
    cv::Point p1(static_cast<int>(std::lround(cx + w / 2)) - 1,
                 static_cast<int>(std::lround(cy + h / 2)) - 1);
    cv::rectangle(scratch, p0, p1, on, cv::FILLED, cv::LINE_8);
  } else if (type == 1) {
    const double angle = rng.uniform(0.0, 180.0);
    cv::ellipse(scratch, cv::Point(static_cast<int>(std::lround(cx)), static_cast<int>(std::lround(cy))),
                cv::Size(static_cast<int>(std::lround(w / 2)), static_cast<int>(std::lround(h / 2))),
                angle, 0, 360, on, cv::FILLED, cv::LINE_8);
  } else {
    // Vertices spread around the centre (roughly equilateral, never degenerate).
    const double two_pi = 2 * std::numbers::pi, jitter = std::numbers::pi / 9;
    const double a0 = rng.uniform(0.0, two_pi);
    const double angles[3] = {a0, a0 + two_pi / 3 + rng.uniform(-jitter, jitter),
                              a0 + 2 * two_pi / 3 + rng.uniform(-jitter, jitter)};
    std::vector<cv::Point> pts;
    for (double a : angles) {
      const double r = s / 2 * rng.uniform(0.75, 1.0);
      pts.emplace_back(static_cast<int>(std::lround(cx + r * std::cos(a))),
                       static_cast<int>(std::lround(cy + r * std::sin(a))));
    }
    cv::fillPoly(scratch, std::vector<std::vector<cv::Point>>{pts}, on, cv::LINE_8);
  }
}

Task parse_task(const std::string& name) {
  if (name == "classification") return Task::kClassification;
  if (name == "multilabel") return Task::kMultiLabel;
  if (name == "detection") return Task::kDetection;
  if (name == "segmentation") return Task::kSegmentation;
  throw Error("dataset_configs.task: unknown task '" + name +
              "' for shapes (classification | multilabel | detection | segmentation)");
}

}  // namespace

int64_t num_shape_classes(ShapeClasses classes) {
  return classes == ShapeClasses::kShape ? kNumShapeTypes : kNumShapeTypes * kNumShapeColors;
}

std::vector<std::string> shape_class_names(ShapeClasses classes) {
  std::vector<std::string> names;
  for (int t = 0; t < kNumShapeTypes; ++t) {
    if (classes == ShapeClasses::kShape) {
      names.emplace_back(kTypeNames[t]);
    } else {
      for (int c = 0; c < kNumShapeColors; ++c)
        names.push_back(std::string(kColorNames[c]) + "_" + kTypeNames[t]);
    }
  }
  return names;
}

std::array<uint8_t, 3> shape_color_rgb(int color) { return kShapeColors.at(color); }

ShapesRendering render_shapes(const ShapesOptions& options, int split, int64_t index) {
  const int S = static_cast<int>(options.image_size);
  ShapeRng rng(options.seed, split, index);
  ShapesRendering out;
  cv::Mat image(S, S, CV_8UC3);
  std::array<int64_t, 3> base;
  for (auto& b : base) b = options.noise_background ? rng.integer(0, 63) : rng.integer(0, 96);
  for (int r = 0; r < S; ++r) {
    auto* row = image.ptr<cv::Vec3b>(r);
    for (int c = 0; c < S; ++c)
      for (int ch = 0; ch < 3; ++ch)
        row[c][ch] = static_cast<uint8_t>(base[ch] + (options.noise_background ? rng.integer(0, 63) : 0));
  }

  cv::Mat instances = cv::Mat::zeros(S, S, CV_32S);
  cv::Mat scratch(S, S, CV_8U);
  std::vector<ShapeInstance>& shapes = out.shapes;
  const int64_t wanted = rng.integer(options.min_shapes, options.max_shapes);
  for (int64_t k = 0; k < wanted; ++k) {
    bool placed = false;
    // The first shape always fits (nothing to occlude); only tiny draws are redrawn.
    const int tries = k == 0 ? 1000 : kMaxPlacementTries;
    for (int attempt = 0; attempt < tries && !placed; ++attempt) {
      ShapeInstance shape;
      shape.type = static_cast<int>(rng.integer(0, kNumShapeTypes - 1));
      shape.color = static_cast<int>(rng.integer(0, kNumShapeColors - 1));
      scratch.setTo(0);
      draw_candidate(scratch, shape.type, rng);
      shape.drawn_pixels = cv::countNonZero(scratch);
      if (shape.drawn_pixels < kMinShapePixels) continue;
      // Pixels of each earlier shape this candidate would cover.
      std::vector<int64_t> covered(shapes.size(), 0);
      for (int r = 0; r < S; ++r) {
        const auto* s_row = scratch.ptr<uint8_t>(r);
        const auto* i_row = instances.ptr<int32_t>(r);
        for (int c = 0; c < S; ++c)
          if (s_row[c] && i_row[c] > 0) ++covered[i_row[c] - 1];
      }
      bool ok = true;
      for (size_t j = 0; j < shapes.size(); ++j)
        if (2 * (shapes[j].visible_pixels - covered[j]) < shapes[j].drawn_pixels) ok = false;
      if (!ok) continue;
      for (size_t j = 0; j < shapes.size(); ++j) shapes[j].visible_pixels -= covered[j];
      shape.visible_pixels = shape.drawn_pixels;
      shape.class_id = options.classes == ShapeClasses::kShape
                           ? shape.type
                           : shape.type * kNumShapeColors + shape.color;
      const auto& rgb = kShapeColors[shape.color];
      image.setTo(cv::Scalar(rgb[0], rgb[1], rgb[2]), scratch);  // channel 0 is R
      instances.setTo(static_cast<int>(shapes.size() + 1), scratch);
      shapes.push_back(shape);
      placed = true;
    }
    if (!placed) break;  // crowded: keep the shapes placed so far
  }

  // Tight boxes of the visible pixels, in pixel-edge coordinates.
  const int n = static_cast<int>(shapes.size());
  std::vector<std::array<int, 4>> bounds(n, {S, S, -1, -1});
  for (int r = 0; r < S; ++r) {
    const auto* i_row = instances.ptr<int32_t>(r);
    for (int c = 0; c < S; ++c) {
      if (i_row[c] == 0) continue;
      auto& b = bounds[i_row[c] - 1];
      b = {std::min(b[0], c), std::min(b[1], r), std::max(b[2], c), std::max(b[3], r)};
    }
  }
  const int64_t num_classes = num_shape_classes(options.classes);
  Example& ex = out.example;
  ex.boxes = torch::empty({n, 4}, torch::kFloat32);
  ex.box_labels = torch::empty({n}, torch::kInt64);
  ex.is_crowd = torch::zeros({n}, torch::kInt64);
  ex.multi_hot = torch::zeros({num_classes}, torch::kFloat32);
  auto boxes = ex.boxes.accessor<float, 2>();
  int64_t largest = -1;
  for (int j = 0; j < n; ++j) {
    ShapeInstance& shape = shapes[j];
    shape.box = {static_cast<float>(bounds[j][0]), static_cast<float>(bounds[j][1]),
                 static_cast<float>(bounds[j][2] + 1), static_cast<float>(bounds[j][3] + 1)};
    for (int d = 0; d < 4; ++d) boxes[j][d] = shape.box[d];
    ex.box_labels[j] = shape.class_id;
    ex.multi_hot[shape.class_id] = 1.0f;
    if (largest < 0 || shape.visible_pixels > shapes[largest].visible_pixels) largest = j;
  }
  ex.label = shapes.at(largest).class_id;  // the first shape is always placed
  ex.mask = cv::Mat::zeros(S, S, CV_32S);
  for (int r = 0; r < S; ++r) {
    const auto* i_row = instances.ptr<int32_t>(r);
    auto* m_row = ex.mask.ptr<int32_t>(r);
    for (int c = 0; c < S; ++c)
      if (i_row[c] > 0) m_row[c] = static_cast<int32_t>(shapes[i_row[c] - 1].class_id + 1);
  }
  ex.image = image;
  ex.orig_size = {S, S};
  ex.image_id = index;
  ex.source = "shapes(seed=" + std::to_string(options.seed) +
              (split == 0 ? ", train" : ", eval") + ") example " + std::to_string(index);
  out.instances = instances;
  return out;
}

ShapesSource::ShapesSource(ShapesOptions options, int split, int64_t size, Task task)
    : options_(options), split_(split), size_(size), task_(task) {
  const auto where = std::string("shapes: ");
  if (options_.image_size < 16)
    throw Error(where + "dataset_configs.image_size must be >= 16, got " +
                std::to_string(options_.image_size));
  if (options_.min_shapes < 1 || options_.max_shapes < options_.min_shapes)
    throw Error(where + "need 1 <= dataset_configs.min_shapes <= max_shapes, got " +
                std::to_string(options_.min_shapes) + " and " + std::to_string(options_.max_shapes));
  if (size_ < 0) throw Error(where + "negative split size " + std::to_string(size_));
}

Example ShapesSource::load(int64_t index) const {
  if (index < 0 || index >= size_) throw Error(describe(index) + ": index out of range");
  Example ex = std::move(render_shapes(options_, split_, index).example);
  if (task_ != Task::kClassification) ex.label = -1;
  if (task_ != Task::kMultiLabel) ex.multi_hot = torch::Tensor();
  if (task_ != Task::kSegmentation) ex.mask = cv::Mat();
  if (task_ != Task::kDetection) ex.boxes = ex.box_labels = ex.is_crowd = torch::Tensor();
  return ex;
}

std::string ShapesSource::describe(int64_t index) const {
  return "shapes(seed=" + std::to_string(options_.seed) + (split_ == 0 ? ", train" : ", eval") +
         ") example " + std::to_string(index);
}

std::unique_ptr<Dataset> build_shapes(const DatasetOptions& options) {
  const auto& cfg = options.dataset_configs;
  const Task task = parse_task(cfg.get<std::string>("task", "classification"));
  ShapesOptions o;
  o.image_size = cfg.get<int64_t>("image_size", o.image_size);
  o.min_shapes = cfg.get<int64_t>("min_shapes", o.min_shapes);
  o.max_shapes = cfg.get<int64_t>("max_shapes", o.max_shapes);
  o.seed = static_cast<uint64_t>(cfg.get<int64_t>("seed", 0));
  const auto background = cfg.get<std::string>("background", "noise");
  if (background != "noise" && background != "plain")
    throw Error("dataset_configs.background: expected 'noise' or 'plain', got '" + background + "'");
  o.noise_background = background == "noise";
  const auto classes = cfg.get<std::string>("classes", "shape");
  if (classes != "shape" && classes != "shape_color")
    throw Error("dataset_configs.classes: expected 'shape' or 'shape_color', got '" + classes + "'");
  o.classes = classes == "shape" ? ShapeClasses::kShape : ShapeClasses::kShapeColor;
  const int64_t num_train = cfg.get<int64_t>("num_train_examples", 10000);
  const int64_t num_eval = cfg.get<int64_t>("num_eval_examples", 1000);

  // Every class is symmetric under a left-right flip, so flipping is a valid augmentation
  // for every task (flip_lr moves masks and boxes with the image). Images are already the
  // same size; collate turns uint8 into [0, 1] floats.
  PipelineConfig pc = PipelineConfig::from_options("shapes", task, options, "flip_lr", "");

  MetaData meta;
  const int64_t C = num_shape_classes(o.classes);
  meta.input_shape = {-1, 3, o.image_size, o.image_size};
  meta.num_train_examples = num_train;
  meta.num_eval_examples = num_eval;
  meta.target_is_onehot = task == Task::kMultiLabel;
  meta.class_names = shape_class_names(o.classes);
  if (task == Task::kDetection || task == Task::kSegmentation) {
    meta.num_classes = C + 1;
    meta.class_names.insert(meta.class_names.begin(),
                            task == Task::kSegmentation ? "background" : "padding");
  } else {
    meta.num_classes = C;
  }
  auto train = std::make_shared<ShapesSource>(o, 0, num_train, task);
  auto eval = std::make_shared<ShapesSource>(o, 1, num_eval, task);
  return make_pipeline_dataset(std::move(pc), train, {{"valid", eval}, {"test", eval}},
                               std::move(meta));
}

}  // namespace scenic::dataset
