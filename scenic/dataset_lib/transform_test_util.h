// Test helpers for the transform tests (header-only; include from *_test.cc only): an
// example holding one filled rectangle drawn identically in the image, the mask and a
// box, and bounding boxes of the pixels that show it after a transform.
#pragma once

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <array>

#include "scenic/dataset_lib/example.h"

namespace scenic::dataset::testing {

// An H x W RGB uint8 image, black except the rectangle [x0, x1) x [y0, y1) painted
// (200, 100, 50); the mask is 1 there and 0 elsewhere; one box (x0, y0, x1, y1) with
// label 3 and is_crowd 0.
inline Example rectangle_example(int H, int W, int x0, int y0, int x1, int y1) {
  Example ex;
  ex.image = cv::Mat(H, W, CV_8UC3, cv::Scalar(0, 0, 0));
  ex.image(cv::Rect(x0, y0, x1 - x0, y1 - y0)).setTo(cv::Scalar(200, 100, 50));
  ex.mask = cv::Mat(H, W, CV_32S, cv::Scalar(0));
  ex.mask(cv::Rect(x0, y0, x1 - x0, y1 - y0)).setTo(cv::Scalar(1));
  ex.boxes = torch::tensor({{float(x0), float(y0), float(x1), float(y1)}});
  ex.box_labels = torch::tensor({3}, torch::kInt64);
  ex.is_crowd = torch::tensor({0}, torch::kInt64);
  ex.orig_size = {H, W};
  return ex;
}

// (x0, y0, x1, y1) bounding the non-zero pixels of a single-channel 0/1 image, in the
// boxes' edge convention (x1 = last column + 1); {-1, -1, -1, -1} when there are none.
inline std::array<int, 4> pixel_bbox(const cv::Mat& on) {
  cv::Mat nz;
  cv::findNonZero(on, nz);
  if (nz.empty()) return {-1, -1, -1, -1};
  cv::Rect r = cv::boundingRect(nz);
  return {r.x, r.y, r.x + r.width, r.y + r.height};
}

inline std::array<int, 4> mask_bbox(const Example& ex, int label = 1) {
  return pixel_bbox(ex.mask == label);
}

// Pixels whose first channel is above half the painted 200 (uint8 or float image).
inline std::array<int, 4> image_bbox(const Example& ex) {
  cv::Mat ch;
  cv::extractChannel(ex.image, ch, 0);
  ch.convertTo(ch, CV_32F);
  return pixel_bbox(ch > 100);
}

inline std::array<float, 4> box_of(const Example& ex, int i = 0) {
  auto b = ex.boxes[i];
  return {b[0].item<float>(), b[1].item<float>(), b[2].item<float>(), b[3].item<float>()};
}

// Every coordinate within `tol` pixels.
inline void expect_near_box(const std::array<int, 4>& pixels, const std::array<float, 4>& box,
                            double tol, const std::string& what) {
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(pixels[k], box[k], tol) << what << " coord " << k;
}

}  // namespace scenic::dataset::testing
