#include "scenic/dataset_lib/tensor_source.h"

#include <torch/torch.h>

#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

TensorImageSource::TensorImageSource(torch::Tensor images, torch::Tensor labels,
                                     std::function<std::string(int64_t)> describe)
    : images_(images.contiguous()), labels_(labels.contiguous()), describe_(std::move(describe)) {
  if (images_.scalar_type() != torch::kUInt8 || images_.dim() != 4 ||
      (images_.size(3) != 1 && images_.size(3) != 3)) {
    std::ostringstream os;
    os << "TensorImageSource: images must be uint8 [N, H, W, C] with C 1 or 3, got "
       << images_.scalar_type() << " " << images_.sizes();
    throw Error(os.str());
  }
  if (labels_.scalar_type() != torch::kInt64 || labels_.dim() != 1 ||
      labels_.size(0) != images_.size(0)) {
    std::ostringstream os;
    os << "TensorImageSource: labels must be int64 [" << images_.size(0) << "], got "
       << labels_.scalar_type() << " " << labels_.sizes();
    throw Error(os.str());
  }
}

Example TensorImageSource::load(int64_t index) const {
  if (index < 0 || index >= size()) {
    throw Error("TensorImageSource: index " + std::to_string(index) + " out of range [0, " +
                std::to_string(size()) + ")");
  }
  const int h = static_cast<int>(images_.size(1)), w = static_cast<int>(images_.size(2));
  const int c = static_cast<int>(images_.size(3));
  const uint8_t* p = images_.data_ptr<uint8_t>() + index * images_.stride(0);
  Example ex;
  // A view on the tensor, then a copy the caller owns (ops edit images in place).
  ex.image = cv::Mat(h, w, CV_8UC(c), const_cast<uint8_t*>(p)).clone();
  ex.label = labels_.data_ptr<int64_t>()[index];
  ex.orig_size = {h, w};
  ex.image_id = index;
  return ex;
}

}  // namespace scenic::dataset
