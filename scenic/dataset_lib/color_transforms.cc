// Colour / value preprocessing ops: value_range, standardize (alias normalize),
// vgg_value_range, color_jitter, random_erasing.
//
// value_range / standardize / vgg_value_range follow big_vision's ops of those names;
// color_jitter and random_erasing follow torchvision's ColorJitter and RandomErasing
// (factor ranges, random order of the four jitters, erase-box sampling), since Scenic
// has them only as TF video ops. None of them moves pixels, so masks and boxes stay.
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {

namespace {

// A per-channel constant from one number or a C-tuple.
cv::Scalar channel_arg(const PpArgs& a, size_t i, const std::string& key) {
  std::vector<double> v = a.numbers(i, key);
  if (v.size() != 1 && v.size() != 3) {
    throw Error(a.where + ": '" + key + "' must be one number or 3 (one per channel)");
  }
  if (v.size() == 1) return cv::Scalar::all(v[0]);
  return cv::Scalar(v[0], v[1], v[2]);
}

void standardize_image(Example& ex, const cv::Scalar& mean, const cv::Scalar& std_,
                       double prescale) {
  cv::Mat f;
  ex.image.convertTo(f, CV_32F, prescale);
  cv::subtract(f, mean, f);
  cv::divide(f, std_, f);
  ex.image = f;
}

PreprocessOp make_value_range(const PpArgs& a) {
  a.check(5, {"vmin", "vmax", "in_min", "in_max", "clip_values"});
  const double vmin = a.number(0, "vmin", -1), vmax = a.number(1, "vmax", 1);
  const double in_min = a.number(2, "in_min", 0), in_max = a.number(3, "in_max", 255);
  const bool clip = a.number(4, "clip_values", 0) != 0;
  if (in_max == in_min) throw Error(a.where + ": in_min and in_max must differ");
  return [=](Example& ex, Rng&) {
    // big_vision: x = (x - in_min) / (in_max - in_min); x = vmin + x * (vmax - vmin).
    const double scale = (vmax - vmin) / (in_max - in_min);
    cv::Mat out;
    ex.image.convertTo(out, CV_32F, scale, vmin - in_min * scale);
    if (clip) {
      cv::min(out, std::max(vmin, vmax), out);
      cv::max(out, std::min(vmin, vmax), out);
    }
    ex.image = out;
  };
}

// standardize(mean, std): (x - mean) / std in the image's current units (so for a uint8
// image give them x255, as Scenic's CIFAR-10 builder does).
PreprocessOp make_standardize(const PpArgs& a) {
  a.check(2, {"mean", "std"});
  const cv::Scalar mean = channel_arg(a, 0, "mean"), std_ = channel_arg(a, 1, "std");
  for (int c = 0; c < 3; ++c) {
    if (std_[c] == 0) throw Error(a.where + ": std must not be 0");
  }
  return [=](Example& ex, Rng&) { standardize_image(ex, mean, std_, 1.0); };
}

// big_vision vgg_value_range: x / 255, then ImageNet mean/std.
PreprocessOp make_vgg_value_range(const PpArgs& a) {
  a.check(0, {});
  return [](Example& ex, Rng&) {
    standardize_image(ex, cv::Scalar(0.485, 0.456, 0.406), cv::Scalar(0.229, 0.224, 0.225),
                      1.0 / 255);
  };
}

// torchvision's rgb_to_grayscale weights.
cv::Mat gray_of(const cv::Mat& rgb) {
  cv::Mat g;
  cv::transform(rgb, g, cv::Matx13f(0.2989f, 0.587f, 0.114f));
  return g;
}

// out = f * img + (1 - f) * other, clamped to [0, 255] (torchvision's _blend).
void blend(cv::Mat& img, const cv::Mat& other, double f) {
  cv::addWeighted(img, f, other, 1 - f, 0, img);
  cv::min(img, 255.0, img);
  cv::max(img, 0.0, img);
}

PreprocessOp make_color_jitter(const PpArgs& a) {
  a.check(4, {"brightness", "contrast", "saturation", "hue"});
  const double b = a.number(0, "brightness", 0), c = a.number(1, "contrast", 0);
  const double s = a.number(2, "saturation", 0), h = a.number(3, "hue", 0);
  if (b < 0 || c < 0 || s < 0) throw Error(a.where + ": jitter amounts must be >= 0");
  if (h < 0 || h > 0.5) throw Error(a.where + ": hue must be in [0, 0.5]");
  std::string where = a.where;
  return [=](Example& ex, Rng& rng) {
    require_uint8(ex, where);
    // torchvision: factors uniform in [max(0, 1 - x), 1 + x], hue shift in [-h, h] of a
    // turn, applied in a random order.
    std::array<int, 4> order{0, 1, 2, 3};
    std::shuffle(order.begin(), order.end(), rng);
    auto factor = [&rng](double x) {
      return std::uniform_real_distribution<double>(std::max(0.0, 1 - x), 1 + x)(rng);
    };
    const double fb = factor(b), fc = factor(c), fs = factor(s);
    const double fh = std::uniform_real_distribution<double>(-h, h)(rng);
    const bool rgb = ex.image.channels() == 3;
    cv::Mat img;
    ex.image.convertTo(img, CV_32F);
    for (int op : order) {
      if (op == 0 && b > 0) {
        blend(img, cv::Mat::zeros(img.size(), img.type()), fb);
      } else if (op == 1 && c > 0) {
        const double mean = cv::mean(rgb ? gray_of(img) : img)[0];
        blend(img, cv::Mat(img.size(), img.type(), cv::Scalar::all(mean)), fc);
      } else if (op == 2 && s > 0 && rgb) {
        cv::Mat g3;
        cv::cvtColor(gray_of(img), g3, cv::COLOR_GRAY2RGB);
        blend(img, g3, fs);
      } else if (op == 3 && h > 0 && rgb) {
        cv::Mat hsv, unit;
        img.convertTo(unit, CV_32F, 1.0 / 255);
        cv::cvtColor(unit, hsv, cv::COLOR_RGB2HSV);  // H in degrees [0, 360)
        std::vector<cv::Mat> ch;
        cv::split(hsv, ch);
        ch[0] += fh * 360.0;
        ch[0].forEach<float>([](float& v, const int*) { v = std::fmod(v + 360.f, 360.f); });
        cv::merge(ch, hsv);
        cv::cvtColor(hsv, unit, cv::COLOR_HSV2RGB);
        unit.convertTo(img, CV_32F, 255.0);
      }
    }
    cv::Mat out;
    img.convertTo(out, CV_8U);  // rounds and saturates
    ex.image = out;
  };
}

PreprocessOp make_random_erasing(const PpArgs& a) {
  a.check(4, {"p", "scale", "ratio", "value"});
  const double p = a.number(0, "p", 0.5);
  std::vector<double> scale{0.02, 0.33}, ratio{0.3, 3.3};
  if (a.size() > 1 || a.named.count("scale")) scale = a.numbers(1, "scale");
  if (a.size() > 2 || a.named.count("ratio")) ratio = a.numbers(2, "ratio");
  if (scale.size() != 2 || ratio.size() != 2 || !(0 < scale[0] && scale[0] <= scale[1]) ||
      !(0 < ratio[0] && ratio[0] <= ratio[1])) {
    throw Error(a.where + ": scale and ratio must be (min, max) with 0 < min <= max");
  }
  if (p < 0 || p > 1) throw Error(a.where + ": p must be in [0, 1]");
  // value: a number (every channel) or 'random' (uniform 0..255 on uint8, N(0, 1) on
  // float images, as torchvision erases normalized tensors with normal noise).
  bool random_value = false;
  double value = 0;
  auto it = a.named.find("value");
  if ((a.size() > 3 && std::holds_alternative<std::string>(a.positional[3])) ||
      (it != a.named.end() && std::holds_alternative<std::string>(it->second))) {
    if (a.string(3, "value", "") != "random") {
      throw Error(a.where + ": value must be a number or 'random'");
    }
    random_value = true;
  } else {
    value = a.number(3, "value", 0);
  }
  return [=](Example& ex, Rng& rng) {
    std::uniform_real_distribution<double> u01(0, 1);
    if (u01(rng) >= p) return;
    const int H = ex.image.rows, W = ex.image.cols;
    const double area = static_cast<double>(H) * W;
    std::uniform_real_distribution<double> scale_d(scale[0], scale[1]);
    std::uniform_real_distribution<double> log_ratio_d(std::log(ratio[0]), std::log(ratio[1]));
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double erase_area = area * scale_d(rng);
      const double r = std::exp(log_ratio_d(rng));
      const int h = static_cast<int>(std::lround(std::sqrt(erase_area * r)));
      const int w = static_cast<int>(std::lround(std::sqrt(erase_area / r)));
      if (!(h < H && w < W) || h < 1 || w < 1) continue;
      const int y = std::uniform_int_distribution<int>(0, H - h)(rng);
      const int x = std::uniform_int_distribution<int>(0, W - w)(rng);
      // Write into a copy: the input may share pixels with a cached decoded example.
      ex.image = ex.image.clone();
      cv::Mat roi = ex.image(cv::Rect(x, y, w, h));
      if (random_value) {
        // Noise from the example's rng (never cv::theRNG, which is shared per thread).
        cv::Mat noise(roi.size(), CV_MAKETYPE(CV_32F, roi.channels()));
        cv::Mat flat = noise.reshape(1);
        const bool u8 = ex.image.depth() == CV_8U;
        std::uniform_real_distribution<float> uniform(0, 256);
        std::normal_distribution<float> normal(0, 1);
        for (auto pit = flat.begin<float>(); pit != flat.end<float>(); ++pit) {
          *pit = u8 ? uniform(rng) : normal(rng);
        }
        noise.convertTo(roi, roi.type());  // uint8: rounds, saturates at 255
      } else {
        roi.setTo(cv::Scalar::all(value));
      }
      return;
    }
  };
}

}  // namespace

void register_color_ops(PreprocessRegistry& registry) {
  registry.add("value_range", make_value_range);
  registry.add("standardize", make_standardize);
  registry.add("normalize", make_standardize);
  registry.add("vgg_value_range", make_vgg_value_range);
  registry.add("color_jitter", make_color_jitter);
  registry.add("random_erasing", make_random_erasing);
}

}  // namespace scenic::dataset
