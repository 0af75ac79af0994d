// Geometry helpers shared by every geometric op (transforms.h) and the registration of
// all built-in preprocessing ops.
#include "scenic/dataset_lib/transforms.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

void register_builtin_preprocess_ops(PreprocessRegistry& registry) {
  register_geometric_ops(registry);
  register_color_ops(registry);
  register_randaugment_ops(registry);
  register_detection_ops(registry);
}

int interpolation_from_name(const std::string& method, const std::string& where) {
  if (method == "bilinear") return cv::INTER_LINEAR;
  if (method == "bicubic") return cv::INTER_CUBIC;
  // Pixel-centre nearest (as TF/PIL), not OpenCV's legacy top-left INTER_NEAREST, so that
  // a mask stays aligned with an image resized by the other methods.
  if (method == "nearest") return cv::INTER_NEAREST_EXACT;
  if (method == "area") return cv::INTER_AREA;
  if (method == "lanczos3" || method == "lanczos") return cv::INTER_LANCZOS4;
  throw Error(where + ": unknown resize method '" + method +
              "' (expected 'bilinear', 'bicubic', 'nearest', 'area' or 'lanczos3')");
}

void require_uint8(const Example& ex, const std::string& where) {
  if (ex.image.depth() != CV_8U) {
    throw Error(where + ": needs a uint8 image (put it before value_range / normalize)");
  }
}

void clip_and_filter_boxes(Example& ex) {
  if (!ex.boxes.defined() || ex.boxes.size(0) == 0) return;
  // [N, 4] (x0, y0, x1, y1)
  auto b = ex.boxes.to(torch::kFloat32).clone();
  const double w = ex.width(), h = ex.height();
  b.select(1, 0).clamp_(0, w);
  b.select(1, 2).clamp_(0, w);
  b.select(1, 1).clamp_(0, h);
  b.select(1, 3).clamp_(0, h);
  auto keep = (b.select(1, 2) > b.select(1, 0)) & (b.select(1, 3) > b.select(1, 1));
  if (keep.all().item<bool>()) {
    ex.boxes = b;
    return;
  }
  auto idx = keep.nonzero().squeeze(1);
  ex.boxes = b.index_select(0, idx);
  if (ex.box_labels.defined()) ex.box_labels = ex.box_labels.index_select(0, idx);
  if (ex.is_crowd.defined()) ex.is_crowd = ex.is_crowd.index_select(0, idx);
}

void resize_example(Example& ex, int height, int width, int interpolation) {
  if (height <= 0 || width <= 0) {
    throw Error("resize to a non-positive size " + std::to_string(height) + "x" +
                std::to_string(width));
  }
  const double sx = static_cast<double>(width) / ex.width();
  const double sy = static_cast<double>(height) / ex.height();
  if (height == ex.height() && width == ex.width()) return;
  cv::Mat out;
  cv::resize(ex.image, out, cv::Size(width, height), 0, 0, interpolation);
  ex.image = out;
  if (!ex.mask.empty()) {
    cv::Mat m;
    cv::resize(ex.mask, m, cv::Size(width, height), 0, 0, cv::INTER_NEAREST_EXACT);
    ex.mask = m;
  }
  if (!ex.pad_mask.empty()) {
    cv::Mat m;
    cv::resize(ex.pad_mask, m, cv::Size(width, height), 0, 0, cv::INTER_NEAREST_EXACT);
    ex.pad_mask = m;
  }
  if (ex.num_boxes() > 0) {
    auto scale = torch::tensor({sx, sy, sx, sy}, torch::kFloat32);
    ex.boxes = ex.boxes.to(torch::kFloat32) * scale;
  }
}

void crop_example(Example& ex, const cv::Rect& roi) {
  if (roi.width <= 0 || roi.height <= 0 || roi.x < 0 || roi.y < 0 ||
      roi.x + roi.width > ex.width() || roi.y + roi.height > ex.height()) {
    throw Error("crop (x=" + std::to_string(roi.x) + ", y=" + std::to_string(roi.y) +
                ", w=" + std::to_string(roi.width) + ", h=" + std::to_string(roi.height) +
                ") outside the " + std::to_string(ex.height()) + "x" +
                std::to_string(ex.width()) + " image");
  }
  ex.image = ex.image(roi).clone();
  if (!ex.mask.empty()) ex.mask = ex.mask(roi).clone();
  if (!ex.pad_mask.empty()) ex.pad_mask = ex.pad_mask(roi).clone();
  if (ex.num_boxes() > 0) {
    auto shift = torch::tensor({roi.x, roi.y, roi.x, roi.y}, torch::kFloat32);
    ex.boxes = ex.boxes.to(torch::kFloat32) - shift;
    clip_and_filter_boxes(ex);
  }
}

void flip_example_lr(Example& ex) {
  cv::Mat out;
  cv::flip(ex.image, out, 1);
  ex.image = out;
  if (!ex.mask.empty()) {
    cv::Mat m;
    cv::flip(ex.mask, m, 1);
    ex.mask = m;
  }
  if (!ex.pad_mask.empty()) {
    cv::Mat m;
    cv::flip(ex.pad_mask, m, 1);
    ex.pad_mask = m;
  }
  if (ex.num_boxes() > 0) {
    auto b = ex.boxes.to(torch::kFloat32);
    const double w = ex.width();
    // (x0, y0, x1, y1) -> (W - x1, y0, W - x0, y1)
    ex.boxes = torch::stack({w - b.select(1, 2), b.select(1, 1), w - b.select(1, 0),
                             b.select(1, 3)},
                            1);
  }
}

void pad_example(Example& ex, int top, int bottom, int left, int right, int border) {
  if (top < 0 || bottom < 0 || left < 0 || right < 0) throw Error("negative padding");
  if (top + bottom + left + right == 0) return;
  const bool constant = border == cv::BORDER_CONSTANT;
  cv::Mat out;
  cv::copyMakeBorder(ex.image, out, top, bottom, left, right, border, cv::Scalar::all(0));
  if (constant && ex.pad_mask.empty()) {
    ex.pad_mask = cv::Mat(ex.image.rows, ex.image.cols, CV_8U, cv::Scalar(1));
  }
  ex.image = out;
  if (!ex.mask.empty()) {
    cv::Mat m;
    cv::copyMakeBorder(ex.mask, m, top, bottom, left, right, border,
                       cv::Scalar::all(kIgnoreLabel));
    ex.mask = m;
  }
  if (!ex.pad_mask.empty()) {
    cv::Mat m;
    cv::copyMakeBorder(ex.pad_mask, m, top, bottom, left, right, border, cv::Scalar::all(0));
    ex.pad_mask = m;
  }
  if (ex.num_boxes() > 0) {
    auto shift = torch::tensor({left, top, left, top}, torch::kFloat32);
    ex.boxes = ex.boxes.to(torch::kFloat32) + shift;
  }
}

void warp_affine_example(Example& ex, const cv::Mat& m, const cv::Scalar& fill,
                         int interpolation) {
  const cv::Size size(ex.image.cols, ex.image.rows);
  cv::Mat out;
  cv::warpAffine(ex.image, out, m, size, interpolation, cv::BORDER_CONSTANT, fill);
  ex.image = out;
  if (!ex.mask.empty()) {
    // warpAffine has no int32 path; class ids are small integers, exact in float32.
    cv::Mat f, w;
    ex.mask.convertTo(f, CV_32F);
    cv::warpAffine(f, w, m, size, cv::INTER_NEAREST, cv::BORDER_CONSTANT,
                   cv::Scalar::all(kIgnoreLabel));
    cv::Mat out;
    w.convertTo(out, CV_32S);
    ex.mask = out;
  }
  // The fill is augmentation, not padding: an empty pad_mask stays empty (collate reads
  // the real image size off pad_mask, which pad_to sets at the bottom/right).
  if (!ex.pad_mask.empty()) {
    cv::Mat w;
    cv::warpAffine(ex.pad_mask, w, m, size, cv::INTER_NEAREST, cv::BORDER_CONSTANT,
                   cv::Scalar(0));
    ex.pad_mask = w;
  }
  if (ex.num_boxes() > 0) {
    cv::Mat md;
    m.convertTo(md, CV_64F);
    auto b = ex.boxes.to(torch::kFloat32).contiguous();
    const int64_t n = b.size(0);
    auto acc = b.accessor<float, 2>();
    std::vector<float> moved(static_cast<size_t>(n) * 4);
    for (int64_t i = 0; i < n; ++i) {
      const double xs[2] = {acc[i][0], acc[i][2]}, ys[2] = {acc[i][1], acc[i][3]};
      double x0 = 1e30, y0 = 1e30, x1 = -1e30, y1 = -1e30;
      for (double x : xs) {
        for (double y : ys) {
          double u = md.at<double>(0, 0) * x + md.at<double>(0, 1) * y + md.at<double>(0, 2);
          double v = md.at<double>(1, 0) * x + md.at<double>(1, 1) * y + md.at<double>(1, 2);
          x0 = std::min(x0, u), x1 = std::max(x1, u), y0 = std::min(y0, v), y1 = std::max(y1, v);
        }
      }
      moved[i * 4 + 0] = static_cast<float>(x0), moved[i * 4 + 1] = static_cast<float>(y0);
      moved[i * 4 + 2] = static_cast<float>(x1), moved[i * 4 + 3] = static_cast<float>(y1);
    }
    ex.boxes = torch::from_blob(moved.data(), {n, 4}, torch::kFloat32).clone();
    clip_and_filter_boxes(ex);
  }
}

}  // namespace scenic::dataset
