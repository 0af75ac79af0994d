// Value / colour ops and RandAugment: hand-computed pixel values, invariants of the
// jitters, and the geometry of RandAugment's warps on masks and boxes.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/transform_test_util.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::box_of;
using testing::mask_bbox;
using testing::rectangle_example;

void run(const std::string& spec, Example& ex, uint64_t seed = 0) {
  Rng rng(seed);
  PreprocessChain::parse(spec)(ex, rng);
}

// A 1 x 3 RGB image with pixels (r, g, b) given row-major.
Example pixels(std::vector<cv::Vec3b> px) {
  Example ex;
  ex.image = cv::Mat(1, static_cast<int>(px.size()), CV_8UC3);
  for (size_t i = 0; i < px.size(); ++i) ex.image.at<cv::Vec3b>(0, int(i)) = px[i];
  return ex;
}

TEST(ColorTransforms, ValueRangeNumbers) {
  Example ex = pixels({{0, 51, 255}});
  run("value_range(-1, 1)", ex);
  ASSERT_EQ(ex.image.type(), CV_32FC3);
  auto v = ex.image.at<cv::Vec3f>(0, 0);
  EXPECT_FLOAT_EQ(v[0], -1.f);
  EXPECT_FLOAT_EQ(v[1], -0.6f);  // 51 / 255 * 2 - 1
  EXPECT_FLOAT_EQ(v[2], 1.f);

  Example unit = pixels({{0, 51, 255}});
  run("value_range(0, 1)", unit);
  EXPECT_FLOAT_EQ(unit.image.at<cv::Vec3f>(0, 0)[1], 0.2f);  // 51 / 255

  // in range [50, 100] -> [0, 1]: 0 -> -1 clipped to 0, 51 -> 0.02, 255 -> 4.1 -> 1.
  Example clipped = pixels({{0, 51, 255}});
  run("value_range(0, 1, in_min=50, in_max=100, clip_values=True)", clipped);
  auto c = clipped.image.at<cv::Vec3f>(0, 0);
  EXPECT_FLOAT_EQ(c[0], 0.f);
  EXPECT_NEAR(c[1], 0.02f, 1e-6);
  EXPECT_FLOAT_EQ(c[2], 1.f);
}

TEST(ColorTransforms, NormalizeAndVgg) {
  Example ex = pixels({{30, 40, 55}});
  // (30 - 10) / 2 = 10, (40 - 20) / 4 = 5, (55 - 30) / 5 = 5.
  run("normalize((10, 20, 30), (2, 4, 5))", ex);
  EXPECT_EQ(ex.image.at<cv::Vec3f>(0, 0), cv::Vec3f(10, 5, 5));

  Example s = pixels({{30, 40, 55}});
  run("standardize(mean=10, std=2)", s);  // one number for every channel
  EXPECT_EQ(s.image.at<cv::Vec3f>(0, 0), cv::Vec3f(10, 15, 22.5f));

  Example vgg = pixels({{255, 0, 128}});
  run("vgg_value_range", vgg);
  auto v = vgg.image.at<cv::Vec3f>(0, 0);
  EXPECT_NEAR(v[0], (1.0 - 0.485) / 0.229, 1e-5);
  EXPECT_NEAR(v[1], (0.0 - 0.456) / 0.224, 1e-5);
  EXPECT_NEAR(v[2], (128.0 / 255 - 0.406) / 0.225, 1e-5);
}

TEST(ColorTransforms, ColorJitterInvariants) {
  // Brightness scales every pixel by one factor in [0.5, 1.5]: 100 and 50 keep ratio 2.
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Example ex = pixels({{100, 100, 100}, {50, 50, 50}});
    run("color_jitter(brightness=0.5)", ex, seed);
    const double a = ex.image.at<cv::Vec3b>(0, 0)[0], b = ex.image.at<cv::Vec3b>(0, 1)[0];
    EXPECT_GE(a, 50);
    EXPECT_LE(a, 150);
    EXPECT_NEAR(a / b, 2.0, 0.05) << seed;
  }
  // Saturation and hue leave grey pixels grey; contrast leaves a flat image flat.
  Example grey = pixels({{90, 90, 90}, {90, 90, 90}});
  run("color_jitter(0, 0.8, 0.8, 0.5)", grey, 5);
  EXPECT_EQ(grey.image.at<cv::Vec3b>(0, 0), cv::Vec3b(90, 90, 90));
  EXPECT_EQ(grey.image.at<cv::Vec3b>(0, 1), cv::Vec3b(90, 90, 90));
  // Hue alone keeps the HSV value (max channel) and the spread (max - min).
  int changed = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    Example red = pixels({{200, 40, 40}});
    run("color_jitter(hue=0.5)", red, seed);
    auto p = red.image.at<cv::Vec3b>(0, 0);
    const int mx = std::max({p[0], p[1], p[2]}), mn = std::min({p[0], p[1], p[2]});
    EXPECT_NEAR(mx, 200, 1) << seed;
    EXPECT_NEAR(mx - mn, 160, 2) << seed;
    changed += p != cv::Vec3b(200, 40, 40);
  }
  EXPECT_GE(changed, 8);
  Example f = pixels({{1, 2, 3}});
  run("value_range(0, 1)", f);
  EXPECT_CONTAINS(error_of([&] { run("color_jitter(0.1)", f); }), "needs a uint8 image");
}

TEST(ColorTransforms, RandomErasingOneBoxInRange) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Example ex;
    ex.image = cv::Mat(40, 50, CV_8UC3, cv::Scalar::all(9));
    run("random_erasing(1.0, value=7)", ex, seed);
    cv::Mat ch;
    cv::extractChannel(ex.image, ch, 0);
    auto box = testing::pixel_bbox(ch == 7);
    ASSERT_NE(box[0], -1) << seed;  // p = 1: always erased (the first draws fit here)
    const int w = box[2] - box[0], h = box[3] - box[1];
    EXPECT_EQ(cv::countNonZero(ch == 7), w * h) << "one filled rectangle";
    EXPECT_EQ(cv::countNonZero(ch == 9), 40 * 50 - w * h);
    const double frac = double(w * h) / (40 * 50);
    // Sides are rounded: allow a pixel of slack on each.
    EXPECT_GE(frac, 0.02 * 0.5) << seed;
    EXPECT_LE(double((w - 1) * (h - 1)) / (40 * 50), 0.33) << seed;
    EXPECT_LE(double(h - 1) / (w + 1), 3.3) << seed;  // ratio h / w in [0.3, 3.3]
    EXPECT_GE(double(h + 1) / std::max(w - 1, 1), 0.3) << seed;
  }
  Example keep;
  keep.image = cv::Mat(10, 10, CV_8UC3, cv::Scalar::all(9));
  run("random_erasing(0)", keep);
  EXPECT_EQ(cv::countNonZero(keep.image.reshape(1) != 9), 0);
}

TEST(RandAugment, PixelOpsNumbers) {
  auto op = [](int k, double m, std::vector<cv::Vec3b> px) {
    Example ex = pixels(std::move(px));
    Rng rng(0);
    apply_randaug_op(k, m, ex, rng);
    return ex.image;
  };
  // Invert: 255 - x.
  EXPECT_EQ(op(2, 10, {{0, 100, 255}}).at<cv::Vec3b>(0, 0), cv::Vec3b(255, 155, 0));
  // Posterize M=10 keeps 4 bits: 0xAB = 171 -> 0xA0 = 160, 15 -> 0.
  EXPECT_EQ(op(4, 10, {{171, 15, 255}}).at<cv::Vec3b>(0, 0), cv::Vec3b(160, 0, 240));
  // Solarize M=5: threshold int(0.5 * 256) = 128: 100 stays, 200 -> 55, 128 -> 127.
  EXPECT_EQ(op(5, 5, {{100, 200, 128}}).at<cv::Vec3b>(0, 0), cv::Vec3b(100, 55, 127));
  // SolarizeAdd M=10: +110 below 128: 100 -> 210, 127 -> 237, 130 stays.
  EXPECT_EQ(op(15, 10, {{100, 127, 130}}).at<cv::Vec3b>(0, 0), cv::Vec3b(210, 237, 130));
  // Brightness M=0: factor 0.1: 100 -> 10, 57 -> 5.7 -> 6 (rounded), 254 -> 25.4 -> 25.
  EXPECT_EQ(op(8, 0, {{100, 57, 254}}).at<cv::Vec3b>(0, 0), cv::Vec3b(10, 6, 25));
  // Brightness M=10: factor 1.9: 100 -> 190, 200 -> 380 -> 255.
  EXPECT_EQ(op(8, 10, {{100, 200, 0}}).at<cv::Vec3b>(0, 0), cv::Vec3b(190, 255, 0));
  // AutoContrast stretches each channel's [min, max] to [0, 255]: red 50..150 maps 110
  // to 60 / 100 * 255 = 153; blue 7..11 maps 8 to 1 / 4 * 255 = 63.75 -> 64.
  cv::Mat ac = op(0, 10, {{50, 7, 7}, {110, 7, 8}, {150, 7, 11}});
  EXPECT_EQ(ac.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 7, 0));  // green is flat: unchanged
  EXPECT_EQ(ac.at<cv::Vec3b>(0, 1), cv::Vec3b(153, 7, 64));
  EXPECT_EQ(ac.at<cv::Vec3b>(0, 2), cv::Vec3b(255, 7, 255));
  // Color M=0 (factor 0.1) on a grey pixel: unchanged.
  EXPECT_EQ(op(6, 0, {{80, 80, 80}}).at<cv::Vec3b>(0, 0), cv::Vec3b(80, 80, 80));
}

TEST(RandAugment, CutoutSquare) {
  Example ex;
  ex.image = cv::Mat(100, 100, CV_8UC3, cv::Scalar::all(0));
  Rng rng(4);
  apply_randaug_op(14, 5, ex, rng);  // pad int(0.5 * 40) = 20: a square of side <= 40
  cv::Mat ch;
  cv::extractChannel(ex.image, ch, 0);
  auto b = testing::pixel_bbox(ch == 128);
  ASSERT_NE(b[0], -1);
  EXPECT_LE(b[2] - b[0], 40);
  EXPECT_LE(b[3] - b[1], 40);
  EXPECT_EQ(cv::countNonZero(ch == 128), (b[2] - b[0]) * (b[3] - b[1]));
}

TEST(RandAugment, TranslateAndRotateMoveMaskAndBoxes) {
  // TranslateX at M=1: +-10 pixels; box and mask shift by the same amount.
  for (uint64_t seed = 0; seed < 4; ++seed) {
    Example ex = rectangle_example(40, 60, 20, 5, 35, 25);
    Rng rng(seed);
    apply_randaug_op(12, 1, ex, rng);
    auto b = box_of(ex);
    EXPECT_TRUE(b[0] == 10 || b[0] == 30) << b[0];
    EXPECT_EQ(b[2] - b[0], 15);
    EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{int(b[0]), 5, int(b[2]), 25}));
    cv::Mat red;
    cv::extractChannel(ex.image, red, 0);
    EXPECT_EQ(testing::pixel_bbox(red == 200), mask_bbox(ex));  // 128 is the fill
    // Pixels shifted in from outside are fill 128 in the image, void in the mask.
    const int in_col = b[0] == 10 ? 55 : 4;
    EXPECT_EQ(ex.image.at<cv::Vec3b>(0, in_col), cv::Vec3b(128, 128, 128));
    EXPECT_EQ(ex.mask.at<int32_t>(0, in_col), kIgnoreLabel);
    EXPECT_TRUE(ex.pad_mask.empty());  // fill is augmentation, not padding
  }
  // Rotate M=10 (+-30 degrees): the box bounds the rotated rectangle (within a pixel).
  for (uint64_t seed = 0; seed < 4; ++seed) {
    Example ex = rectangle_example(60, 60, 20, 25, 40, 35);
    Rng rng(seed);
    apply_randaug_op(3, 10, ex, rng);
    auto m = mask_bbox(ex);
    testing::expect_near_box(m, box_of(ex), 1.5, "rotate");
    EXPECT_GT(m[3] - m[1], 10 + 5);  // a 20 x 10 bar tilted 30 degrees is taller
  }
}

TEST(RandAugment, NeedsUint8) {
  Example ex = pixels({{1, 2, 3}});
  run("value_range", ex);
  EXPECT_CONTAINS(error_of([&] { run("randaug(2, 10)", ex); }),
                  "preprocessing op 'randaug' (op 1 of 'randaug(2, 10)'): needs a uint8");
}

}  // namespace
}  // namespace scenic::dataset
