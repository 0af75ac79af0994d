// Detection preprocessing ops, after Scenic's DETR input pipeline
// (projects/baselines/detr/transforms.py, a port of DETR's PyTorch transforms):
//   random_resize_multiscale(sizes, max_size=0)  RandomResize: shorter side to a random
//       choice of `sizes`, longer side capped at max_size (one size: deterministic, the
//       eval Resize(800, max_size=1333)).
//   random_size_crop(min_size, max_size)         RandomSizeCrop: crop h, w uniform in
//       [min_size, min(side, max_size)] at a random place; boxes clipped, empty dropped.
//   detr_train_resize(sizes=(480..800 step 32), max_size=1333, crop_sizes=(400, 500, 600),
//       crop_min=384, crop_max=600)            DETR's RandomSelect(p=0.5) between
//       RandomResize(sizes, max_size) and RandomResize(crop_sizes) -> RandomSizeCrop ->
//       RandomResize(sizes, max_size).
//   pad_to(size)                                 zero-pad bottom/right to a fixed (h, w),
//       recording the padding in pad_mask (the batch's padding_mask), mask void there.
//       Put it last in the chain: collate takes the real (h, w) that normalizes boxes
//       from the extent of pad_mask's ones, which a later flip or crop would move.
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {

std::array<int, 2> detr_resize_shape(int height, int width, int size, int max_size) {
  const double h = height, w = width;
  if (max_size > 0) {
    const double min_orig = std::min(h, w), max_orig = std::max(h, w);
    if (max_orig / min_orig * size > max_size) {
      size = static_cast<int>(std::lround(max_size * min_orig / max_orig));
    }
  }
  if ((w <= h && width == size) || (h <= w && height == size)) return {height, width};
  if (w < h) return {static_cast<int>(size * h / w), size};  // int() truncates, as DETR
  return {size, static_cast<int>(size * w / h)};
}

namespace {

std::vector<int> int_list(const PpArgs& a, size_t i, const std::string& key,
                          std::vector<double> fallback) {
  std::vector<double> v =
      (i < a.size() || a.named.count(key)) ? a.numbers(i, key) : std::move(fallback);
  if (v.empty()) throw Error(a.where + ": '" + key + "' must not be empty");
  std::vector<int> out;
  for (double x : v) {
    if (x < 1 || x != std::floor(x)) {
      throw Error(a.where + ": '" + key + "' must hold positive integers");
    }
    out.push_back(static_cast<int>(x));
  }
  return out;
}

void random_resize(Example& ex, const std::vector<int>& sizes, int max_size, Rng& rng) {
  const int size =
      sizes[std::uniform_int_distribution<size_t>(0, sizes.size() - 1)(rng)];
  auto [h, w] = detr_resize_shape(static_cast<int>(ex.height()), static_cast<int>(ex.width()),
                                  size, max_size);
  resize_example(ex, h, w, cv::INTER_LINEAR);
}

void random_size_crop(Example& ex, int min_size, int max_size, Rng& rng) {
  const int H = static_cast<int>(ex.height()), W = static_cast<int>(ex.width());
  // torchvision RandomSizeCrop: w ~ randint(min, min(W, max)), h likewise; an image
  // smaller than min_size is cropped whole along that side.
  auto pick = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(std::min(lo, hi), hi)(rng);
  };
  const int w = pick(min_size, std::min(W, max_size));
  const int h = pick(min_size, std::min(H, max_size));
  const int y = std::uniform_int_distribution<int>(0, H - h)(rng);
  const int x = std::uniform_int_distribution<int>(0, W - w)(rng);
  crop_example(ex, cv::Rect(x, y, w, h));
}

PreprocessOp make_random_resize_multiscale(const PpArgs& a) {
  a.check(2, {"sizes", "max_size"});
  std::vector<int> sizes = int_list(a, 0, "sizes", {});
  const int max_size = static_cast<int>(a.number(1, "max_size", 0));
  return [=](Example& ex, Rng& rng) { random_resize(ex, sizes, max_size, rng); };
}

PreprocessOp make_random_size_crop(const PpArgs& a) {
  a.check(2, {"min_size", "max_size"});
  const int lo = static_cast<int>(a.number(0, "min_size"));
  const int hi = static_cast<int>(a.number(1, "max_size"));
  if (lo < 1 || hi < lo) throw Error(a.where + ": need 1 <= min_size <= max_size");
  return [=](Example& ex, Rng& rng) { random_size_crop(ex, lo, hi, rng); };
}

PreprocessOp make_detr_train_resize(const PpArgs& a) {
  a.check(0, {"sizes", "max_size", "crop_sizes", "crop_min", "crop_max"});
  std::vector<double> default_sizes;
  for (int s = 480; s <= 800; s += 32) default_sizes.push_back(s);
  std::vector<int> sizes = int_list(a, 99, "sizes", default_sizes);
  std::vector<int> crop_sizes = int_list(a, 99, "crop_sizes", {400, 500, 600});
  const int max_size = static_cast<int>(a.number(99, "max_size", 1333));
  const int lo = static_cast<int>(a.number(99, "crop_min", 384));
  const int hi = static_cast<int>(a.number(99, "crop_max", 600));
  if (lo < 1 || hi < lo) throw Error(a.where + ": need 1 <= crop_min <= crop_max");
  return [=](Example& ex, Rng& rng) {
    if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.5) {
      random_resize(ex, sizes, max_size, rng);
    } else {
      random_resize(ex, crop_sizes, 0, rng);
      random_size_crop(ex, lo, hi, rng);
      random_resize(ex, sizes, max_size, rng);
    }
  };
}

PreprocessOp make_pad_to(const PpArgs& a) {
  a.check(1, {"size"});
  std::vector<double> v = a.numbers(0, "size");
  if (v.size() == 1) v.push_back(v[0]);
  if (v.size() != 2 || v[0] < 1 || v[1] < 1) {
    throw Error(a.where + ": size must be a positive size or (height, width)");
  }
  const int h = static_cast<int>(v[0]), w = static_cast<int>(v[1]);
  std::string where = a.where;
  return [=](Example& ex, Rng&) {
    if (ex.height() > h || ex.width() > w) {
      throw Error(where + ": the " + std::to_string(ex.height()) + "x" +
                  std::to_string(ex.width()) + " image is larger than the padded size " +
                  std::to_string(h) + "x" + std::to_string(w) +
                  (ex.source.empty() ? "" : " (" + ex.source + ")"));
    }
    pad_example(ex, 0, h - static_cast<int>(ex.height()), 0, w - static_cast<int>(ex.width()),
                cv::BORDER_CONSTANT);
    if (ex.pad_mask.empty()) ex.pad_mask = cv::Mat(h, w, CV_8U, cv::Scalar(1));
  };
}

}  // namespace

void register_detection_ops(PreprocessRegistry& registry) {
  registry.add("random_resize_multiscale", make_random_resize_multiscale);
  registry.add("random_size_crop", make_random_size_crop);
  registry.add("detr_train_resize", make_detr_train_resize);
  registry.add("pad_to", make_pad_to);
}

}  // namespace scenic::dataset
