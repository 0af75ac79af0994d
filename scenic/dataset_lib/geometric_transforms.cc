// Geometric preprocessing ops: decode, resize, resize_small, central_crop, random_crop,
// inception_crop, flip_lr, random_crop_with_pad (alias reflect_pad_crop).
//
// Mirror big_vision's preprocess_ops of the same names (argument names and defaults
// included) and Scenic's CIFAR `augment_random_crop_flip` reflect-pad crop. All of them
// move mask, pad_mask and boxes with the image (transforms.h).
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {

namespace {

// (height, width) from a number or a 2-tuple of positive integers.
std::array<int, 2> size_arg(const PpArgs& a, size_t i, const std::string& key) {
  std::vector<double> v = a.numbers(i, key);
  if (v.size() == 1) v.push_back(v[0]);
  if (v.size() != 2) throw Error(a.where + ": '" + key + "' must be a size or (height, width)");
  for (double x : v) {
    if (x < 1 || x != std::floor(x)) {
      throw Error(a.where + ": '" + key + "' must hold positive integers");
    }
  }
  return {static_cast<int>(v[0]), static_cast<int>(v[1])};
}

void require_image(const Example& ex, const std::string& where) {
  if (ex.image.empty()) throw Error(where + ": example has no image");
}

void require_fits(const Example& ex, int h, int w, const std::string& where) {
  if (h > ex.height() || w > ex.width()) {
    throw Error(where + ": crop " + std::to_string(h) + "x" + std::to_string(w) +
                " is larger than the " + std::to_string(ex.height()) + "x" +
                std::to_string(ex.width()) + " image" +
                (ex.source.empty() ? "" : " (" + ex.source + ")"));
  }
}

int uniform_int(Rng& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

PreprocessOp make_decode(const PpArgs& a) {
  a.check(1, {"channels"});
  const int channels = static_cast<int>(a.number(0, "channels", 3));
  if (channels != 1 && channels != 3) throw Error(a.where + ": channels must be 1 or 3");
  std::string where = a.where;
  // Sources decode already (cv::imdecode to RGB); decode only fixes the channel count,
  // as tf.io.decode_image(channels=c) would.
  return [channels, where](Example& ex, Rng&) {
    require_image(ex, where);
    const int c = ex.image.channels();
    if (c == channels) return;
    cv::Mat out;
    if (channels == 3) {
      cv::cvtColor(ex.image, out, c == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_RGBA2RGB);
    } else {
      cv::cvtColor(ex.image, out, c == 4 ? cv::COLOR_RGBA2GRAY : cv::COLOR_RGB2GRAY);
    }
    ex.image = out;
  };
}

PreprocessOp make_resize(const PpArgs& a) {
  a.check(3, {"size", "method", "antialias"});
  auto [h, w] = size_arg(a, 0, "size");
  const int interp = interpolation_from_name(a.string(1, "method", "bilinear"), a.where);
  const bool antialias = a.number(2, "antialias", 0) != 0;
  std::string where = a.where;
  return [=](Example& ex, Rng&) {
    require_image(ex, where);
    // tf.image.resize(antialias=True) low-pass filters when shrinking; INTER_AREA does.
    const bool shrink = h < ex.height() && w < ex.width();
    const bool filter = antialias && shrink && interp != cv::INTER_NEAREST_EXACT;
    resize_example(ex, h, w, filter ? cv::INTER_AREA : interp);
  };
}

PreprocessOp make_resize_small(const PpArgs& a) {
  a.check(3, {"smaller_size", "method", "antialias"});
  const double s = a.number(0, "smaller_size");
  if (s < 1) throw Error(a.where + ": smaller_size must be positive");
  const int interp = interpolation_from_name(a.string(1, "method", "area"), a.where);
  std::string where = a.where;
  return [=](Example& ex, Rng&) {
    require_image(ex, where);
    // big_vision: ratio = s / min(h, w); new side = round(side * ratio).
    const double ratio = s / static_cast<double>(std::min(ex.height(), ex.width()));
    const int h = static_cast<int>(std::lround(ex.height() * ratio));
    const int w = static_cast<int>(std::lround(ex.width() * ratio));
    resize_example(ex, h, w, interp);
  };
}

PreprocessOp make_central_crop(const PpArgs& a) {
  a.check(1, {"crop_size"});
  auto [h, w] = size_arg(a, 0, "crop_size");
  std::string where = a.where;
  return [=](Example& ex, Rng&) {
    require_image(ex, where);
    require_fits(ex, h, w, where);
    // big_vision: dy = (H - h) // 2, dx = (W - w) // 2.
    crop_example(ex, cv::Rect(static_cast<int>(ex.width() - w) / 2,
                              static_cast<int>(ex.height() - h) / 2, w, h));
  };
}

PreprocessOp make_random_crop(const PpArgs& a) {
  a.check(1, {"crop_size"});
  auto [h, w] = size_arg(a, 0, "crop_size");
  std::string where = a.where;
  return [=](Example& ex, Rng& rng) {
    require_image(ex, where);
    require_fits(ex, h, w, where);
    const int y = uniform_int(rng, 0, static_cast<int>(ex.height()) - h);
    const int x = uniform_int(rng, 0, static_cast<int>(ex.width()) - w);
    crop_example(ex, cv::Rect(x, y, w, h));
  };
}

PreprocessOp make_inception_crop(const PpArgs& a) {
  a.check(4, {"size", "area_min", "area_max", "method", "aspect_min", "aspect_max"});
  bool has_size = a.size() > 0 || a.named.count("size");
  std::array<int, 2> size{0, 0};
  if (has_size) size = size_arg(a, 0, "size");
  const double area_min = a.number(1, "area_min", 5) / 100.0;
  const double area_max = a.number(2, "area_max", 100) / 100.0;
  const int interp = interpolation_from_name(a.string(3, "method", "bilinear"), a.where);
  const double aspect_min = a.number(99, "aspect_min", 3.0 / 4.0);
  const double aspect_max = a.number(99, "aspect_max", 4.0 / 3.0);
  if (!(0 < area_min && area_min <= area_max && area_max <= 1)) {
    throw Error(a.where + ": need 0 < area_min <= area_max <= 100 (percent of the image)");
  }
  if (!(0 < aspect_min && aspect_min <= aspect_max)) {
    throw Error(a.where + ": need 0 < aspect_min <= aspect_max");
  }
  std::string where = a.where;
  return [=](Example& ex, Rng& rng) {
    require_image(ex, where);
    // tf.image.sample_distorted_bounding_box as big_vision calls it (no object boxes,
    // min_object_covered 0, 100 attempts): area fraction and aspect ratio w/h uniform in
    // their ranges; the whole image when no attempt fits.
    const int H = static_cast<int>(ex.height()), W = static_cast<int>(ex.width());
    cv::Rect roi(0, 0, W, H);
    std::uniform_real_distribution<double> area_d(area_min, area_max);
    std::uniform_real_distribution<double> aspect_d(aspect_min, aspect_max);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const double area = area_d(rng) * H * W;
      const double aspect = aspect_d(rng);
      const int w = static_cast<int>(std::lround(std::sqrt(area * aspect)));
      const int h = static_cast<int>(std::lround(std::sqrt(area / aspect)));
      if (w < 1 || h < 1 || w > W || h > H) continue;
      roi = cv::Rect(uniform_int(rng, 0, W - w), uniform_int(rng, 0, H - h), w, h);
      break;
    }
    crop_example(ex, roi);
    if (size[0] > 0) resize_example(ex, size[0], size[1], interp);
  };
}

PreprocessOp make_flip_lr(const PpArgs& a) {
  a.check(1, {"p"});
  const double p = a.number(0, "p", 0.5);
  if (p < 0 || p > 1) throw Error(a.where + ": p must be in [0, 1]");
  std::string where = a.where;
  return [=](Example& ex, Rng& rng) {
    require_image(ex, where);
    // Always draw, so the random stream does not depend on p's value.
    if (std::uniform_real_distribution<double>(0, 1)(rng) < p) flip_example_lr(ex);
  };
}

PreprocessOp make_random_crop_with_pad(const PpArgs& a) {
  a.check(2, {"size", "pad"});
  auto [h, w] = size_arg(a, 0, "size");
  const double pad = a.number(1, "pad", 4);
  if (pad < 0 || pad != std::floor(pad)) throw Error(a.where + ": pad must be an integer >= 0");
  std::string where = a.where;
  return [=, p = static_cast<int>(pad)](Example& ex, Rng& rng) {
    require_image(ex, where);
    if (p >= ex.height() || p >= ex.width()) {
      throw Error(where + ": reflect padding " + std::to_string(p) +
                  " needs an image larger than the padding");
    }
    // Scenic's augment_random_crop_flip: tf.pad(mode='REFLECT') = BORDER_REFLECT_101.
    pad_example(ex, p, p, p, p, cv::BORDER_REFLECT_101);
    require_fits(ex, h, w, where);
    const int y = uniform_int(rng, 0, static_cast<int>(ex.height()) - h);
    const int x = uniform_int(rng, 0, static_cast<int>(ex.width()) - w);
    crop_example(ex, cv::Rect(x, y, w, h));
  };
}

}  // namespace

void register_geometric_ops(PreprocessRegistry& registry) {
  registry.add("decode", make_decode);
  registry.add("resize", make_resize);
  registry.add("resize_small", make_resize_small);
  registry.add("central_crop", make_central_crop);
  registry.add("random_crop", make_random_crop);
  registry.add("inception_crop", make_inception_crop);
  registry.add("flip_lr", make_flip_lr);
  registry.add("random_crop_with_pad", make_random_crop_with_pad);
  registry.add("reflect_pad_crop", make_random_crop_with_pad);
}

}  // namespace scenic::dataset
