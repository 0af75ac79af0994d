// randaug(num_layers=2, magnitude=10): RandAugment (Cubuk et al. 2019) as big_vision's
// `randaug` op runs it (autoaugment.distort_image_with_randaugment).
//
// Each of num_layers layers picks one of 16 ops uniformly and always applies it at the
// shared magnitude M (level = M / 10):
//   AutoContrast, Equalize, Invert                      (no magnitude)
//   Rotate      +-30*level degrees about the centre, fill 128
//   Posterize   keep int(4*level) high bits
//   Solarize    invert pixels >= int(256*level)
//   SolarizeAdd add int(110*level) to pixels < 128
//   Color, Contrast, Brightness, Sharpness   blend with a degenerate image, factor
//               1.8*level + 0.1 (grey / mean grey / black / 3x3 smoothed)
//   ShearX/Y    shear +-0.3*level, fill 128
//   TranslateX/Y +-100*level pixels, fill 128
//   Cutout      a (2*int(40*level))^2 square of 128 at a random centre
// Signs are random (50%) as in the TF code. Geometric ops (Rotate, Shear*, Translate*)
// warp mask, pad_mask and boxes too (warp_affine_example); Equalize uses OpenCV's
// equalizeHist per channel (TF's equalize differs by rounding). Needs a uint8 image.
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {

namespace {

constexpr double kPi = 3.14159265358979323846;
const cv::Scalar kReplace = cv::Scalar::all(128);

// Applies a per-pixel function to every byte of a uint8 image.
template <typename F>
void map_bytes(Example& ex, F f) {
  cv::Mat lut(1, 256, CV_8U);
  for (int v = 0; v < 256; ++v) lut.at<uint8_t>(v) = static_cast<uint8_t>(f(v));
  cv::Mat out;
  cv::LUT(ex.image, lut, out);
  ex.image = out;
}

// degenerate + factor * (image - degenerate), clipped to [0, 255] (TF autoaugment blend).
void blend_with(Example& ex, const cv::Mat& degenerate, double factor) {
  cv::Mat a, d, out;
  ex.image.convertTo(a, CV_32F);
  degenerate.convertTo(d, CV_32F);
  cv::addWeighted(a, factor, d, 1 - factor, 0, out);
  cv::Mat result;
  out.convertTo(result, CV_8U);  // rounds and saturates to [0, 255]
  ex.image = result;
}

cv::Mat grey3(const cv::Mat& img) {
  if (img.channels() == 1) return img.clone();
  cv::Mat g, g3;
  cv::cvtColor(img, g, cv::COLOR_RGB2GRAY);
  cv::cvtColor(g, g3, cv::COLOR_GRAY2RGB);
  return g3;
}

// Warps with `inv`, the TF-style output -> input map, as the forward map ex needs.
void warp_inverse(Example& ex, const cv::Matx23d& inv) {
  cv::Mat fwd;
  cv::invertAffineTransform(cv::Mat(inv), fwd);
  warp_affine_example(ex, fwd, kReplace, cv::INTER_NEAREST);
}

void apply_op(int op, double level, Example& ex, Rng& rng) {
  auto sign = [&rng]() { return std::uniform_int_distribution<int>(0, 1)(rng) ? 1.0 : -1.0; };
  const double factor = level * 1.8 + 0.1;
  const double W = ex.image.cols, H = ex.image.rows;
  switch (op) {
    case 0: {  // AutoContrast: stretch each channel's [min, max] to [0, 255]
      std::vector<cv::Mat> ch;
      cv::split(ex.image, ch);
      for (auto& c : ch) {
        double lo, hi;
        cv::minMaxLoc(c, &lo, &hi);
        if (hi > lo) c.convertTo(c, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
      }
      cv::Mat merged;
      cv::merge(ch, merged);
      ex.image = merged;
      break;
    }
    case 1: {  // Equalize
      std::vector<cv::Mat> ch;
      cv::split(ex.image, ch);
      for (auto& c : ch) cv::equalizeHist(c, c);
      cv::Mat merged;
      cv::merge(ch, merged);
      ex.image = merged;
      break;
    }
    case 2:
      map_bytes(ex, [](int v) { return 255 - v; });
      break;
    case 3: {  // Rotate: counter-clockwise by the angle (TF contrib rotate)
      const double deg = sign() * level * 30.0;
      cv::Mat fwd = cv::getRotationMatrix2D(cv::Point2f((W - 1) / 2, (H - 1) / 2), deg, 1.0);
      warp_affine_example(ex, fwd, kReplace, cv::INTER_NEAREST);
      break;
    }
    case 4: {  // Posterize
      const int shift = 8 - static_cast<int>(level * 4);
      map_bytes(ex, [shift](int v) { return shift >= 8 ? 0 : (v >> shift) << shift; });
      break;
    }
    case 5: {  // Solarize
      const int threshold = static_cast<int>(level * 256);
      map_bytes(ex, [threshold](int v) { return v < threshold ? v : 255 - v; });
      break;
    }
    case 6:
      blend_with(ex, grey3(ex.image), factor);
      break;
    case 7: {  // Contrast: against the mean grey level
      cv::Mat g = grey3(ex.image);
      const double mean = cv::mean(g)[0];
      blend_with(ex, cv::Mat(ex.image.size(), ex.image.type(), cv::Scalar::all(mean)), factor);
      break;
    }
    case 8:
      blend_with(ex, cv::Mat::zeros(ex.image.size(), ex.image.type()), factor);
      break;
    case 9: {  // Sharpness: smoothed interior, border pixels kept
      cv::Mat k = (cv::Mat_<float>(3, 3) << 1, 1, 1, 1, 5, 1, 1, 1, 1) / 13.0;
      cv::Mat smooth = ex.image.clone();
      if (ex.image.rows > 2 && ex.image.cols > 2) {
        cv::Mat f;
        cv::filter2D(ex.image, f, -1, k);
        cv::Rect inner(1, 1, ex.image.cols - 2, ex.image.rows - 2);
        f(inner).copyTo(smooth(inner));
      }
      blend_with(ex, smooth, factor);
      break;
    }
    case 10:  // ShearX: output (x, y) reads input (x + s*y, y)
      warp_inverse(ex, cv::Matx23d(1, sign() * level * 0.3, 0, 0, 1, 0));
      break;
    case 11:
      warp_inverse(ex, cv::Matx23d(1, 0, 0, sign() * level * 0.3, 1, 0));
      break;
    case 12:  // TranslateX: output x reads input x + t
      warp_inverse(ex, cv::Matx23d(1, 0, sign() * level * 100, 0, 1, 0));
      break;
    case 13:
      warp_inverse(ex, cv::Matx23d(1, 0, 0, 0, 1, sign() * level * 100));
      break;
    case 14: {  // Cutout
      const int pad = static_cast<int>(level * 40);
      const int cy = std::uniform_int_distribution<int>(0, static_cast<int>(H) - 1)(rng);
      const int cx = std::uniform_int_distribution<int>(0, static_cast<int>(W) - 1)(rng);
      cv::Rect box = cv::Rect(cx - pad, cy - pad, 2 * pad, 2 * pad) &
                     cv::Rect(0, 0, static_cast<int>(W), static_cast<int>(H));
      ex.image = ex.image.clone();  // may share pixels with a cached example
      if (box.area() > 0) ex.image(box).setTo(kReplace);
      break;
    }
    case 15: {  // SolarizeAdd
      const int add = static_cast<int>(level * 110);
      map_bytes(ex, [add](int v) { return v < 128 ? std::min(v + add, 255) : v; });
      break;
    }
    default:
      throw Error("randaug: no op " + std::to_string(op));
  }
}

PreprocessOp make_randaug(const PpArgs& a) {
  a.check(2, {"num_layers", "magnitude"});
  const double n = a.number(0, "num_layers", 2), m = a.number(1, "magnitude", 10);
  if (n < 0 || n != std::floor(n)) throw Error(a.where + ": num_layers must be an integer >= 0");
  if (m < 0) throw Error(a.where + ": magnitude must be >= 0");
  std::string where = a.where;
  return [=, layers = static_cast<int>(n)](Example& ex, Rng& rng) {
    require_uint8(ex, where);
    for (int i = 0; i < layers; ++i) {
      const int op = std::uniform_int_distribution<int>(0, kNumRandaugOps - 1)(rng);
      apply_op(op, m / 10.0, ex, rng);
    }
  };
}

}  // namespace

void apply_randaug_op(int op, double magnitude, Example& ex, Rng& rng) {
  require_uint8(ex, "randaug");
  apply_op(op, magnitude / 10.0, ex, rng);
}

void register_randaugment_ops(PreprocessRegistry& registry) {
  registry.add("randaug", make_randaug);
}

}  // namespace scenic::dataset
