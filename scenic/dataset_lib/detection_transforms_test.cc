// Detection ops: DETR's resize rule, multi-scale resize with a max size, random size
// crop, and pad_to with its padding mask, all moving boxes and masks with the image.
#include <gtest/gtest.h>

#include <set>

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

TEST(DetectionTransforms, DetrResizeShape) {
  // 480 x 640 to 800: 640 / 480 * 800 = 1066.7 <= 1333, so h = 800, w = int(1066.67).
  EXPECT_EQ(detr_resize_shape(480, 640, 800, 1333), (std::array<int, 2>{800, 1066}));
  // 500 x 1500: 3 * 800 > 1333 -> size round(1333 * 500 / 1500) = 444, w = 3 * 444.
  EXPECT_EQ(detr_resize_shape(500, 1500, 800, 1333), (std::array<int, 2>{444, 1332}));
  // Portrait, no cap: w = 800, h = int(800 * 800 / 600) = 1066.
  EXPECT_EQ(detr_resize_shape(800, 600, 800, 0), (std::array<int, 2>{1066, 800}));
  // Already the right size: unchanged.
  EXPECT_EQ(detr_resize_shape(600, 800, 600, 1333), (std::array<int, 2>{600, 800}));
}

TEST(DetectionTransforms, MultiscaleResizeWithMaxSize) {
  Example ex = rectangle_example(40, 60, 10, 5, 30, 25);
  // 60 / 40 * 20 = 30 > 25 -> size round(25 * 40 / 60) = 17, w = int(17 * 1.5) = 25.
  run("random_resize_multiscale(20, max_size=25)", ex);
  ASSERT_EQ(ex.image.rows, 17);
  ASSERT_EQ(ex.image.cols, 25);
  auto b = box_of(ex);  // scaled by (25 / 60, 17 / 40)
  EXPECT_FLOAT_EQ(b[0], 10 * 25.f / 60);
  EXPECT_FLOAT_EQ(b[1], 5 * 17.f / 40);
  EXPECT_FLOAT_EQ(b[2], 30 * 25.f / 60);
  EXPECT_FLOAT_EQ(b[3], 25 * 17.f / 40);
  testing::expect_near_box(mask_bbox(ex), b, 1.0, "mask");

  // Several sizes: the shorter side is always one of them.
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    Example e = rectangle_example(40, 60, 10, 5, 30, 25);
    run("random_resize_multiscale((16, 24, 32))", e, seed);
    const int short_side = std::min(e.image.rows, e.image.cols);
    EXPECT_TRUE(short_side == 16 || short_side == 24 || short_side == 32) << short_side;
    seen.insert(short_side);
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST(DetectionTransforms, RandomSizeCropBounds) {
  for (uint64_t seed = 0; seed < 30; ++seed) {
    Example ex = rectangle_example(40, 60, 10, 5, 30, 25);
    run("random_size_crop(12, 30)", ex, seed);
    EXPECT_GE(ex.image.rows, 12);
    EXPECT_LE(ex.image.rows, 30);
    EXPECT_GE(ex.image.cols, 12);
    EXPECT_LE(ex.image.cols, 30);
    if (ex.num_boxes() == 1) {
      auto b = box_of(ex);
      EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{int(b[0]), int(b[1]), int(b[2]), int(b[3])}));
    } else {
      EXPECT_EQ(ex.num_boxes(), 0);
      EXPECT_EQ(ex.box_labels.size(0), 0);
      EXPECT_EQ(mask_bbox(ex)[0], -1);
    }
  }
}

TEST(DetectionTransforms, PadToRecordsPaddingAndMovesWithFlip) {
  Example ex = rectangle_example(40, 60, 10, 5, 30, 25);
  run("pad_to((50, 64))", ex);
  ASSERT_EQ(ex.image.rows, 50);
  ASSERT_EQ(ex.image.cols, 64);
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{10, 5, 30, 25}));  // padding is bottom/right
  ASSERT_EQ(ex.pad_mask.type(), CV_8U);
  EXPECT_EQ(cv::countNonZero(ex.pad_mask), 40 * 60);
  EXPECT_EQ(testing::pixel_bbox(ex.pad_mask), (std::array<int, 4>{0, 0, 60, 40}));
  EXPECT_EQ(ex.mask.at<int32_t>(45, 62), kIgnoreLabel);
  EXPECT_EQ(ex.mask.at<int32_t>(39, 59), 0);
  EXPECT_EQ(ex.image.at<cv::Vec3b>(45, 62), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{10, 5, 30, 25}));

  // Flipping the padded example flips the padding mask: real columns 0..59 -> 4..63.
  flip_example_lr(ex);
  EXPECT_EQ(testing::pixel_bbox(ex.pad_mask), (std::array<int, 4>{4, 0, 64, 40}));
  EXPECT_EQ(box_of(ex), (std::array<float, 4>{34, 5, 54, 25}));
  EXPECT_EQ(mask_bbox(ex), (std::array<int, 4>{34, 5, 54, 25}));

  // An exact fit still records an all-real pad_mask (so batches are uniform).
  Example fit = rectangle_example(40, 60, 10, 5, 30, 25);
  run("pad_to((40, 60))", fit);
  EXPECT_EQ(cv::countNonZero(fit.pad_mask), 40 * 60);

  Example big = rectangle_example(40, 60, 10, 5, 30, 25);
  big.source = "img_7.jpg";
  EXPECT_CONTAINS(error_of([&] { run("pad_to(50)", big); }),
                  "the 40x60 image is larger than the padded size 50x50 (img_7.jpg)");
}

TEST(DetectionTransforms, DetrTrainChainKeepsBoxesInsideAndPads) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Example ex = rectangle_example(60, 80, 10, 10, 50, 40);
    run("flip_lr|detr_train_resize(sizes=(32, 40, 48), max_size=64, crop_sizes=(50,), "
        "crop_min=20, crop_max=40)|pad_to(64)",
        ex, seed);
    ASSERT_EQ(ex.image.rows, 64);
    ASSERT_EQ(ex.image.cols, 64);
    const int real_h = testing::pixel_bbox(ex.pad_mask)[3];
    const int real_w = testing::pixel_bbox(ex.pad_mask)[2];
    // Shorter side from `sizes`, unless the cap moved it so the longer is ~max_size (the
    // int() truncation of the longer side can lose one pixel).
    const int lo = std::min(real_h, real_w), hi = std::max(real_h, real_w);
    EXPECT_LE(hi, 64);
    EXPECT_TRUE(lo == 32 || lo == 40 || lo == 48 || hi >= 62) << real_h << "x" << real_w;
    for (int64_t i = 0; i < ex.num_boxes(); ++i) {
      auto b = box_of(ex, int(i));
      EXPECT_GE(b[0], 0);
      EXPECT_LE(b[2], real_w + 1e-4);
      EXPECT_LE(b[3], real_h + 1e-4);
    }
  }
}

}  // namespace
}  // namespace scenic::dataset
