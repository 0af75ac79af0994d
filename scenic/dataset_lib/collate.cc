#include "scenic/dataset_lib/collate.h"

#include <torch/torch.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {
namespace {

std::string size_str(const cv::Mat& m) {
  std::ostringstream os;
  os << m.rows << "x" << m.cols << "x" << m.channels();
  return os.str();
}

std::string who(const CollateOptions& opt, const Example& ex) {
  return opt.name + ": " + (ex.source.empty() ? std::string("example") : ex.source) + ": ";
}

// Copies `image` (H x W x C) into dst [C, h, w] (h, w <= dst's) at the top-left corner.
void copy_image(const cv::Mat& image, torch::Tensor dst, const std::string& source) {
  dst.narrow(1, 0, image.rows).narrow(2, 0, image.cols).copy_(image_to_chw(image, source));
}

void check_same_geometry(const std::vector<Example>& examples, const CollateOptions& opt) {
  const cv::Mat& first = examples.front().image;
  for (const Example& ex : examples) {
    if (ex.image.rows != first.rows || ex.image.cols != first.cols ||
        ex.image.channels() != first.channels()) {
      throw Error(who(opt, ex) + "image is " + size_str(ex.image) + " but " +
                  (examples.front().source.empty() ? "the first example"
                                                   : examples.front().source) +
                  " in the same batch is " + size_str(first) +
                  "; examples of a batch must have one size (resize or crop in pp)");
    }
  }
}

}  // namespace

torch::Tensor image_to_chw(const cv::Mat& image, const std::string& source) {
  if (image.empty()) throw Error(source + ": empty image (was it decoded?)");
  cv::Mat m = image.isContinuous() ? image : image.clone();
  torch::Dtype dtype;
  switch (m.depth()) {
    case CV_8U: dtype = torch::kUInt8; break;
    case CV_32F: dtype = torch::kFloat32; break;
    default:
      throw Error(source + ": image depth must be uint8 or float32 (OpenCV depth " +
                  std::to_string(m.depth()) + ")");
  }
  // [H, W, C] view of the pixels -> [C, H, W] float copy.
  torch::Tensor hwc = torch::from_blob(m.data, {m.rows, m.cols, m.channels()}, dtype);
  torch::Tensor chw = hwc.permute({2, 0, 1}).to(torch::kFloat32, /*non_blocking=*/false,
                                                /*copy=*/true);
  if (dtype == torch::kUInt8) chw.div_(255.0);
  return chw;
}

Batch collate(const std::vector<Example>& examples, const CollateOptions& opt) {
  const int64_t B = opt.batch_size;
  const int64_t n = static_cast<int64_t>(examples.size());
  if (n == 0) throw Error(opt.name + ": collate needs at least one example");
  if (n > B) {
    throw Error(opt.name + ": " + std::to_string(n) + " examples for a batch of " +
                std::to_string(B));
  }
  for (const Example& ex : examples) {
    if (ex.image.empty()) throw Error(who(opt, ex) + "example has no image");
  }
  Batch batch;
  torch::Tensor real = torch::zeros({B}, torch::kFloat32);  // [B]
  real.narrow(0, 0, n).fill_(1.0);

  if (opt.task != Task::kDetection) check_same_geometry(examples, opt);
  int64_t H = 0, W = 0;
  for (const Example& ex : examples) {
    H = std::max<int64_t>(H, ex.image.rows);
    W = std::max<int64_t>(W, ex.image.cols);
  }
  const int64_t C = examples.front().image.channels();
  torch::Tensor inputs = torch::zeros({B, C, H, W}, torch::kFloat32);  // [B, C, H, W]
  for (int64_t i = 0; i < n; ++i) {
    const Example& ex = examples[i];
    if (ex.image.channels() != C) {
      throw Error(who(opt, ex) + "image has " + std::to_string(ex.image.channels()) +
                  " channels but the batch's first has " + std::to_string(C));
    }
    copy_image(ex.image, inputs[i], ex.source);
  }
  batch["inputs"] = inputs;

  switch (opt.task) {
    case Task::kClassification: {
      torch::Tensor label = torch::zeros({B}, torch::kInt64);  // [B]
      auto a = label.accessor<int64_t, 1>();
      for (int64_t i = 0; i < n; ++i) a[i] = examples[i].label;
      batch["label"] = label;
      batch["batch_mask"] = real;
      break;
    }
    case Task::kMultiLabel: {
      const auto& first = examples.front().multi_hot;
      if (!first.defined() || first.dim() != 1) {
        throw Error(who(opt, examples.front()) + "multi-label example needs multi_hot [K]");
      }
      const int64_t K = first.size(0);
      torch::Tensor label = torch::zeros({B, K}, torch::kFloat32);  // [B, K]
      for (int64_t i = 0; i < n; ++i) {
        const auto& mh = examples[i].multi_hot;
        if (!mh.defined() || mh.dim() != 1 || mh.size(0) != K) {
          throw Error(who(opt, examples[i]) + "multi_hot must be [" + std::to_string(K) + "]");
        }
        label[i].copy_(mh);
      }
      batch["label"] = label;
      batch["batch_mask"] = real;
      break;
    }
    case Task::kSegmentation: {
      torch::Tensor label = torch::zeros({B, H, W}, torch::kInt64);        // [B, H, W]
      torch::Tensor mask = torch::zeros({B, H, W}, torch::kFloat32);       // [B, H, W]
      for (int64_t i = 0; i < n; ++i) {
        const Example& ex = examples[i];
        if (ex.mask.empty() || ex.mask.type() != CV_32SC1 || ex.mask.rows != ex.image.rows ||
            ex.mask.cols != ex.image.cols) {
          throw Error(who(opt, ex) + "segmentation example needs an int32 mask of the image's size " +
                      std::to_string(ex.image.rows) + "x" + std::to_string(ex.image.cols) +
                      (ex.mask.empty() ? std::string(", got none")
                                       : ", got " + std::to_string(ex.mask.rows) + "x" +
                                             std::to_string(ex.mask.cols)));
        }
        cv::Mat m = ex.mask.isContinuous() ? ex.mask : ex.mask.clone();
        torch::Tensor classes =
            torch::from_blob(m.data, {m.rows, m.cols}, torch::kInt32).to(torch::kInt64);
        torch::Tensor valid = classes.ge(0);  // void pixels (kIgnoreLabel) count nowhere
        label[i].copy_(classes.clamp_min(0));
        mask[i].copy_(valid);
      }
      batch["label"] = label;
      batch["batch_mask"] = mask;
      break;
    }
    case Task::kDetection: {
      const int64_t M = opt.max_boxes;
      torch::Tensor boxes = torch::zeros({B, M, 4}, torch::kFloat32);      // [B, M, 4] cxcywh
      torch::Tensor labels = torch::zeros({B, M}, torch::kInt64);          // [B, M], 0 = pad
      torch::Tensor box_mask = torch::zeros({B, M}, torch::kFloat32);      // [B, M]
      torch::Tensor is_crowd = torch::zeros({B, M}, torch::kInt64);        // [B, M]
      torch::Tensor orig_size = torch::zeros({B, 2}, torch::kInt64);       // [B, 2] (h, w)
      torch::Tensor size = torch::zeros({B, 2}, torch::kInt64);            // [B, 2] (h, w)
      torch::Tensor image_id = torch::zeros({B}, torch::kInt64);           // [B]
      torch::Tensor padding_mask = torch::zeros({B, H, W}, torch::kFloat32);  // [B, H, W]
      for (int64_t i = 0; i < n; ++i) {
        const Example& ex = examples[i];
        const int64_t nb = ex.num_boxes();
        if (nb > M) {
          throw DataError(who(opt, ex) + std::to_string(nb) + " boxes, more than max_boxes " +
                          std::to_string(M) + " (raise dataset_configs.max_boxes)");
        }
        // Real (unpadded) size: the image, or the extent of pad_mask's ones when a pp op
        // padded it (pad_to pads at the bottom and right).
        int64_t h = ex.image.rows, w = ex.image.cols;
        if (!ex.pad_mask.empty()) {
          if (ex.pad_mask.type() != CV_8UC1 || ex.pad_mask.rows != h || ex.pad_mask.cols != w) {
            throw Error(who(opt, ex) + "pad_mask must be uint8 of the image's size");
          }
          cv::Mat pm = ex.pad_mask.isContinuous() ? ex.pad_mask : ex.pad_mask.clone();
          padding_mask[i].narrow(0, 0, pm.rows).narrow(1, 0, pm.cols).copy_(
              torch::from_blob(pm.data, {pm.rows, pm.cols}, torch::kUInt8).ne(0));
          const cv::Rect real = cv::boundingRect(pm);
          h = real.y + real.height;
          w = real.x + real.width;
          if (h == 0 || w == 0) throw Error(who(opt, ex) + "pad_mask has no real pixel");
        } else {
          padding_mask[i].narrow(0, 0, h).narrow(1, 0, w).fill_(1.0);
        }
        orig_size[i][0] = ex.orig_size[0];
        orig_size[i][1] = ex.orig_size[1];
        size[i][0] = h;
        size[i][1] = w;
        image_id[i] = ex.image_id;
        if (nb == 0) continue;
        if (ex.boxes.dim() != 2 || ex.boxes.size(1) != 4 || !ex.box_labels.defined() ||
            ex.box_labels.numel() != nb) {
          throw Error(who(opt, ex) + "detection example needs boxes [N, 4] and box_labels [N]");
        }
        // (x0, y0, x1, y1) pixels -> (cx, cy, w, h) / image size.
        torch::Tensor b = ex.boxes.to(torch::kFloat32);
        torch::Tensor x0 = b.select(1, 0), y0 = b.select(1, 1), x1 = b.select(1, 2),
                      y1 = b.select(1, 3);
        torch::Tensor cxcywh = torch::stack({(x0 + x1) / 2.0 / static_cast<double>(w),
                                             (y0 + y1) / 2.0 / static_cast<double>(h),
                                             (x1 - x0) / static_cast<double>(w),
                                             (y1 - y0) / static_cast<double>(h)},
                                            1);  // [N, 4]
        boxes[i].narrow(0, 0, nb).copy_(cxcywh);
        labels[i].narrow(0, 0, nb).copy_(ex.box_labels.to(torch::kInt64).reshape({nb}) + 1);
        box_mask[i].narrow(0, 0, nb).fill_(1.0);
        if (ex.is_crowd.defined()) {
          is_crowd[i].narrow(0, 0, nb).copy_(ex.is_crowd.to(torch::kInt64).reshape({nb}));
        }
      }
      batch["boxes"] = boxes;
      batch["labels"] = labels;
      batch["box_mask"] = box_mask;
      batch["is_crowd"] = is_crowd;
      batch["orig_size"] = orig_size;
      batch["size"] = size;
      batch["image_id"] = image_id;
      batch["padding_mask"] = padding_mask;
      batch["batch_mask"] = real;
      break;
    }
  }
  return batch;
}

}  // namespace scenic::dataset
