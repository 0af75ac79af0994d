// Example: one decoded training example as it moves through a preprocessing chain.
//
// Mirrors the per-example feature dict of Scenic's tf.data pipelines (`image`, `label`,
// `objects/bbox`, `segmentation_mask`, ...), with the image held as an OpenCV matrix so
// that decode, resize and warps run on OpenCV's kernels. Transforms (transforms.h) edit
// an Example in place; collate (pipeline.h) turns a vector of them into a Batch.
//
// Conventions (every source and transform keeps them):
//   image      H x W x C, C = 1 or 3 in RGB order; CV_8U right after decode, CV_32F after
//              a value-range / normalization op. Pixel (x, y) is column x, row y.
//   label      class index, or -1 when the example has none (detection, segmentation).
//   multi_hot  float32 [K] for multi-label data, undefined otherwise.
//   mask       H x W CV_32S class map for segmentation, same geometry as image;
//              kIgnoreLabel marks void pixels (they get batch_mask 0 in the batch).
//   boxes      float32 [N, 4] absolute pixel coordinates (x0, y0, x1, y1) in the
//              current image; box_labels int64 [N] raw category ids (0-based);
//              is_crowd int64 [N] (0/1). Undefined tensors when there are no boxes.
//   orig_size  (height, width) of the image as decoded, kept for evaluation.
//   pad_mask   H x W CV_8U, 1 on real pixels and 0 on padding added by `pad_to`; empty
//              means every pixel is real. Geometric ops move it with the image; collate
//              turns it into the batch's `padding_mask`.
#pragma once

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <string>

namespace scenic::dataset {

constexpr int32_t kIgnoreLabel = -1;

struct Example {
  cv::Mat image;
  int64_t label = -1;
  torch::Tensor multi_hot;
  cv::Mat mask;
  torch::Tensor boxes;
  torch::Tensor box_labels;
  torch::Tensor is_crowd;
  std::array<int64_t, 2> orig_size{0, 0};
  cv::Mat pad_mask;
  int64_t image_id = -1;   // COCO image id (or the example index)
  std::string source;      // file (and record index) it came from, for error messages

  int64_t height() const { return image.rows; }
  int64_t width() const { return image.cols; }
  int64_t num_boxes() const { return boxes.defined() ? boxes.size(0) : 0; }
};

}  // namespace scenic::dataset
