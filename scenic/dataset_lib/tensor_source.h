// TensorImageSource: an ExampleSource over images already held in memory.
//
// For datasets small enough to read whole at start-up (CIFAR; Scenic's builders get them
// from TFDS, which also holds CIFAR in memory after `cache()`). The pixels are kept
// once as uint8 [N, H, W, C] (HWC, RGB, like a decoded image) and load() copies one
// example into a cv::Mat, so the shared pipeline (pipeline.h) can augment it.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>

#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {

class TensorImageSource : public ExampleSource {
 public:
  // images: uint8 [N, H, W, C] with C 1 or 3; labels: int64 [N]. `describe` names where
  // example i came from (file and record), for error messages.
  TensorImageSource(torch::Tensor images, torch::Tensor labels,
                    std::function<std::string(int64_t)> describe);
  int64_t size() const override { return labels_.size(0); }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override { return describe_(index); }
  const torch::Tensor& images() const { return images_; }
  const torch::Tensor& labels() const { return labels_; }

 private:
  torch::Tensor images_, labels_;
  std::function<std::string(int64_t)> describe_;
};

}  // namespace scenic::dataset
