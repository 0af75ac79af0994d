// Geometric ops: a rectangle drawn in the image, the mask and a box must stay together
// through flip, resize, crops and pads (known coordinates), inception_crop's area and
// aspect ranges, and seeded determinism.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/transform_test_util.h"
#include "scenic/dataset_lib/transforms.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::box_of;
using testing::expect_near_box;
using testing::image_bbox;
using testing::mask_bbox;
using testing::rectangle_example;

std::array<float, 4> as_float(const std::array<int, 4>& a) {
  return {float(a[0]), float(a[1]), float(a[2]), float(a[3])};
}

void run(const std::string& spec, Example& ex, uint64_t seed = 0) {
  Rng rng(seed);
  PreprocessChain::parse(spec)(ex, rng);
}

// 40 x 60 image, rectangle columns [10, 30), rows [5, 25).
Example rect() { return rectangle_example(40, 60, 10, 5, 30, 25); }

TEST(GeometricTransforms, FlipMovesBoxAndMaskExactly) {
  Example ex = rect();
  flip_example_lr(ex);
  // x -> W - x: (10, 5, 30, 25) -> (60 - 30, 5, 60 - 10, 25) = (30, 5, 50, 25).
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{30, 5, 50, 25}));
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{30, 5, 50, 25}));
  EXPECT_EQ(image_bbox(ex), (std::array<int, 4>{30, 5, 50, 25}));
  EXPECT_EQ(ex.image.at<cv::Vec3b>(10, 30), cv::Vec3b(200, 100, 50));  // colour unchanged
}

TEST(GeometricTransforms, FlipLrProbabilityZeroAndOne) {
  Example ex = rect();
  run("flip_lr(0)", ex, 3);
  EXPECT_EQ(box_of(ex)[0], 10);
  run("flip_lr(p=1)", ex, 3);
  EXPECT_EQ(box_of(ex)[0], 30);
}

TEST(GeometricTransforms, ResizeScalesBoxesAndMask) {
  // Up 2x: box (20, 10, 60, 50). Nearest (pixel centres) keeps the mask exact; the
  // bilinear edge column 19 reads source x 9.25 -> 0.25 * 200 = 50 (<= 100, off) and
  // column 20 reads 9.75 -> 150 (on), so the image's box is exact too.
  Example ex = rect();
  run("resize((80, 120))", ex);
  ASSERT_EQ(ex.image.rows, 80);
  ASSERT_EQ(ex.image.cols, 120);
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{20, 10, 60, 50}));
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{20, 10, 60, 50}));
  EXPECT_EQ(image_bbox(ex), (std::array<int, 4>{20, 10, 60, 50}));
  EXPECT_EQ(ex.mask.type(), CV_32S);

  // Down 0.75: box (7.5, 3.75, 22.5, 18.75); pixels land within a pixel.
  Example small = rect();
  run("resize((30, 45), method='bicubic')", small);
  EXPECT_EQ(box_of(small), (std::array<float, 4>{7.5f, 3.75f, 22.5f, 18.75f}));
  expect_near_box(mask_bbox(small), box_of(small), 1.0, "mask");
  expect_near_box(image_bbox(small), box_of(small), 1.0, "image");
}

TEST(GeometricTransforms, ResizeSmallKeepsAspect) {
  Example ex = rect();
  // min side 40 -> 20: ratio 0.5, 60 -> round(30) = 30.
  run("resize_small(20)", ex);
  EXPECT_EQ(ex.image.rows, 20);
  EXPECT_EQ(ex.image.cols, 30);
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{5, 2.5f, 15, 12.5f}));
  // 3 x 7 -> shorter side 4: ratio 4/3, 7 * 4/3 = 9.33 -> 9.
  Example odd;
  odd.image = cv::Mat(3, 7, CV_8UC3, cv::Scalar::all(9));
  run("resize_small(4)", odd);
  EXPECT_EQ(odd.image.rows, 4);
  EXPECT_EQ(odd.image.cols, 9);
}

TEST(GeometricTransforms, CropClipsBoxesAndDropsDegenerateOnes) {
  Example ex = rect();
  // A second box far right (label 7, crowd) that the crop removes entirely.
  ex.boxes = torch::tensor({{10.f, 5.f, 30.f, 25.f}, {50.f, 30.f, 58.f, 38.f}});
  ex.box_labels = torch::tensor({3, 7}, torch::kInt64);
  ex.is_crowd = torch::tensor({0, 1}, torch::kInt64);
  crop_example(ex, cv::Rect(15, 0, 30, 20));
  // Box 1 shifted by (-15, 0): (-5, 5, 15, 25), clipped to the 30 x 20 crop:
  // (0, 5, 15, 20). Box 2 shifted: (35, 30, 43, 38) -> x clipped to 30 = width 0: dropped.
  ASSERT_EQ(ex.num_boxes(), 1);
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{0, 5, 15, 20}));
  EXPECT_EQ(ex.box_labels[0].item<int64_t>(), 3);
  EXPECT_EQ(ex.is_crowd[0].item<int64_t>(), 0);
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{0, 5, 15, 20}));
  EXPECT_EQ(image_bbox(ex), (std::array<int, 4>{0, 5, 15, 20}));

  // Keeping the crowd box instead keeps its label and flag.
  Example ex2 = rect();
  ex2.boxes = torch::tensor({{10.f, 5.f, 30.f, 25.f}, {50.f, 30.f, 58.f, 38.f}});
  ex2.box_labels = torch::tensor({3, 7}, torch::kInt64);
  ex2.is_crowd = torch::tensor({0, 1}, torch::kInt64);
  crop_example(ex2, cv::Rect(35, 26, 25, 14));
  ASSERT_EQ(ex2.num_boxes(), 1);
  EXPECT_EQ(box_of(ex2), (std::array<float, 4>{15, 4, 23, 12}));
  EXPECT_EQ(ex2.box_labels[0].item<int64_t>(), 7);
  EXPECT_EQ(ex2.is_crowd[0].item<int64_t>(), 1);
}

TEST(GeometricTransforms, CentralCropOffsets) {
  Example ex = rect();
  // dy = (40 - 20) // 2 = 10, dx = (60 - 21) // 2 = 19: box (10-19, 5-10, 30-19, 25-10)
  // = (-9, -5, 11, 15) clipped to the 21 x 20 crop -> (0, 0, 11, 15).
  run("central_crop((20, 21))", ex);
  EXPECT_EQ(ex.image.rows, 20);
  EXPECT_EQ(ex.image.cols, 21);
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{0, 0, 11, 15}));
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{0, 0, 11, 15}));
  Example small = rect();
  EXPECT_CONTAINS(error_of([&] { run("central_crop(50)", small); }),
                  "crop 50x50 is larger than the 40x60 image");
}

TEST(GeometricTransforms, ReflectPadCropKeepsSizeAndGeometry) {
  // Pad 4 on each side (48 x 68), crop 40 x 60 back: the box moves by (4 - x, 4 - y) for
  // an offset (x, y) in [0, 8]^2, so its size stays 20 x 20 unless clipped at the border.
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Example ex = rect();
    run("random_crop_with_pad((40, 60), 4)", ex, seed);
    ASSERT_EQ(ex.image.rows, 40);
    ASSERT_EQ(ex.image.cols, 60);
    auto b = box_of(ex);
    EXPECT_EQ(b[2] - b[0], 20);
    EXPECT_EQ(b[3] - b[1], 20);
    EXPECT_GE(b[0], 6);   // 10 + 4 - 8
    EXPECT_LE(b[0], 14);  // 10 + 4 - 0
    EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{int(b[0]), int(b[1]), int(b[2]), int(b[3])}));
    EXPECT_TRUE(ex.pad_mask.empty());  // reflected pixels are real, not padding
  }
  // The reflected border is tf.pad REFLECT (edge not repeated): pixel row -1 = row 1.
  Example ex;
  ex.image = cv::Mat(3, 3, CV_8UC1);
  for (int k = 0; k < 9; ++k) ex.image.at<uint8_t>(k / 3, k % 3) = uint8_t(k);
  pad_example(ex, 1, 1, 1, 1, cv::BORDER_REFLECT_101);
  EXPECT_EQ(ex.image.at<uint8_t>(0, 1), 3);  // above (0, 0) sits row 1, col 0 = 3
  EXPECT_EQ(ex.image.at<uint8_t>(1, 0), 1);  // left of (0, 0) sits col 1 = 1
}

// Random geometric chains: the box bounds the rectangle's mask pixels, and the image
// pixels agree with the mask, whatever the seed.
TEST(GeometricTransforms, BoxAndMaskFollowImageThroughRandomChains) {
  const std::vector<std::pair<std::string, double>> chains = {
      {"flip_lr", 0},
      {"random_crop(24)", 0},
      {"central_crop(30)|flip_lr", 0},
      {"inception_crop((32, 48))", 1.5},
      {"inception_crop(area_min=10, area_max=50)|flip_lr", 0},
      {"resize((37, 53), 'bicubic')|flip_lr", 1.5},
      {"random_crop_with_pad((40, 60), 4)|flip_lr", 0},
      {"random_resize_multiscale((20, 30, 50), max_size=80)", 1.5},
      {"random_size_crop(10, 30)|flip_lr", 0},
      {"detr_train_resize(sizes=(30, 40), max_size=70, crop_sizes=(40,), crop_min=15, "
       "crop_max=30)",
       1.5},
  };
  for (const auto& [spec, tol] : chains) {
    for (uint64_t seed = 0; seed < 25; ++seed) {
      Example ex = rect();
      run(spec, ex, seed);
      const std::string what = spec + " seed " + std::to_string(seed);
      auto m = mask_bbox(ex);
      if (ex.num_boxes() == 0) {
        EXPECT_EQ(m[0], -1) << what << ": box dropped but mask pixels remain";
        continue;
      }
      ASSERT_EQ(ex.box_labels.size(0), 1) << what;
      auto b = box_of(ex);
      EXPECT_GT(b[2], b[0]) << what;
      EXPECT_GT(b[3], b[1]) << what;
      EXPECT_GE(b[0], 0) << what;
      EXPECT_LE(b[2], ex.width()) << what;
      EXPECT_LE(b[3], ex.height()) << what;
      if (b[2] - b[0] < 2 || b[3] - b[1] < 2) continue;  // thinner than pixel rounding
      expect_near_box(m, b, tol, what + " mask");
      expect_near_box(image_bbox(ex), as_float(m), 1.0, what + " image");
      EXPECT_EQ(ex.mask.rows, ex.image.rows) << what;
      EXPECT_EQ(ex.mask.cols, ex.image.cols) << what;
    }
  }
}

TEST(GeometricTransforms, InceptionCropAreaAndAspectWithinBounds) {
  double min_area = 1, max_area = 0, min_aspect = 10, max_aspect = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    Example ex;
    ex.image = cv::Mat(200, 300, CV_8UC3, cv::Scalar::all(1));
    run("inception_crop(area_min=20, area_max=60)", ex, seed);
    const double area = double(ex.image.rows) * ex.image.cols / (200.0 * 300.0);
    const double aspect = double(ex.image.cols) / ex.image.rows;
    // Sides are rounded to whole pixels: about 0.5 / 110 relative error per side.
    EXPECT_GE(area, 0.20 - 0.01) << seed;
    EXPECT_LE(area, 0.60 + 0.01) << seed;
    EXPECT_GE(aspect, 0.75 - 0.01) << seed;
    EXPECT_LE(aspect, 4.0 / 3.0 + 0.01) << seed;
    min_area = std::min(min_area, area), max_area = std::max(max_area, area);
    min_aspect = std::min(min_aspect, aspect), max_aspect = std::max(max_aspect, aspect);
  }
  // The draws cover their ranges (uniform area and aspect).
  EXPECT_LT(min_area, 0.25);
  EXPECT_GT(max_area, 0.55);
  EXPECT_LT(min_aspect, 0.8);
  EXPECT_GT(max_aspect, 1.28);

  Example ex;
  ex.image = cv::Mat(50, 70, CV_8UC3, cv::Scalar::all(1));
  run("inception_crop(24)", ex, 1);
  EXPECT_EQ(ex.image.rows, 24);
  EXPECT_EQ(ex.image.cols, 24);
}

TEST(GeometricTransforms, DecodeFixesChannels) {
  Example ex;
  ex.image = cv::Mat(2, 2, CV_8UC1, cv::Scalar(77));
  run("decode", ex);
  ASSERT_EQ(ex.image.channels(), 3);
  EXPECT_EQ(ex.image.at<cv::Vec3b>(1, 1), cv::Vec3b(77, 77, 77));
  run("decode(1)", ex);
  EXPECT_EQ(ex.image.channels(), 1);
  Example empty;
  EXPECT_CONTAINS(error_of([&] { run("decode", empty); }), "example has no image");
}

TEST(GeometricTransforms, SameSeedSameOutput) {
  const std::string spec =
      "inception_crop(32)|flip_lr|randaug(2, 9)|color_jitter(0.4, 0.4, 0.4, 0.1)|"
      "random_erasing(0.5)";
  auto make = [] {
    Example ex = rectangle_example(48, 64, 8, 8, 40, 30);
    cv::Mat noise(48, 64, CV_8UC3);
    cv::randu(noise, 0, 60);  // fixed global-RNG state is irrelevant: same input twice
    ex.image += noise;
    return ex;
  };
  Example base = make();
  const cv::Mat original = base.image.clone();
  int differing = 0;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    Example a = base, b = base;  // shallow: their images share base's pixels
    run(spec, a, seed);
    run(spec, b, seed);
    ASSERT_EQ(a.image.size(), b.image.size());
    EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0) << seed;
    EXPECT_EQ(cv::norm(a.mask, b.mask, cv::NORM_INF), 0) << seed;
    EXPECT_TRUE(torch::equal(a.boxes, b.boxes)) << seed;
    Example c = base;
    run(spec, c, seed + 100);
    if (c.image.size() != a.image.size() || cv::norm(a.image, c.image, cv::NORM_INF) > 0) {
      ++differing;
    }
  }
  EXPECT_EQ(differing, 6);
  // No op wrote into the shared input pixels (they may belong to a cached example).
  EXPECT_EQ(cv::norm(base.image, original, cv::NORM_INF), 0);
}

}  // namespace
}  // namespace scenic::dataset
