// Collate: turns the preprocessed Examples of one batch into a Batch, per task.
//
// The counterpart of tf.data's `batch()` / `padded_batch()` plus Scenic's
// `dataset_utils.maybe_pad_batch` (batch_mask, zero padding of the last eval batch,
// pixel-level masks for segmentation) and the DETR pipeline's box layout. The layout of
// each task's Batch is documented in pipeline.h; images become NCHW float32 (uint8
// images divided by 255, as Scenic's `normalize`; float images are taken as they are).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example.h"

namespace scenic::dataset {

enum class Task { kClassification, kMultiLabel, kSegmentation, kDetection };

struct CollateOptions {
  Task task = Task::kClassification;
  int64_t batch_size = 0;   // rows of the batch; examples.size() <= batch_size, the rest is padding
  int64_t max_boxes = 100;  // detection: box rows per example
  std::string name;         // dataset name, prefixes messages
};

// Throws scenic::Error naming the example's source for inconsistent examples (image
// sizes or channels that differ within a batch for classification / segmentation, a
// segmentation example without a mask of the image's size, a multi-label example
// without multi_hot), and DataError when a detection example has more than max_boxes
// boxes. Detection images of different sizes are zero-padded at the bottom and right
// to the largest height and width of the batch; `padding_mask` is 1 on real pixels
// (the example's pad_mask where a pp op such as pad_to padded it) and boxes are
// normalized by each example's real size (the extent of pad_mask's ones, else the
// image), which is also its `size`, as DETR normalizes before padding.
Batch collate(const std::vector<Example>& examples, const CollateOptions& options);

// H x W x C uint8 or float32 image -> float32 [C, H, W] (uint8 / 255).
torch::Tensor image_to_chw(const cv::Mat& image, const std::string& source);

}  // namespace scenic::dataset
