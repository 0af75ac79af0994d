#include "scenic/dataset_lib/collate.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

// h x w RGB uint8 image; pixel (x, y) channel c = base + 10 * y + 3 * x + c.
Example rgb_example(int h, int w, int base, int64_t label, const std::string& source) {
  Example ex;
  ex.image = cv::Mat(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) ex.image.at<cv::Vec3b>(y, x)[c] = static_cast<uint8_t>(base + 10 * y + 3 * x + c);
  ex.label = label;
  ex.source = source;
  ex.orig_size = {h, w};
  return ex;
}

CollateOptions opts(Task task, int64_t batch_size, int64_t max_boxes = 100) {
  return {task, batch_size, max_boxes, "toy"};
}

TEST(Collate, ClassificationNchwPaddedAndMasked) {
  Batch b = collate({rgb_example(2, 3, 0, 4, "a"), rgb_example(2, 3, 100, 1, "b")},
                    opts(Task::kClassification, 3));
  ASSERT_EQ(b.at("inputs").sizes(), (std::vector<int64_t>{3, 3, 2, 3}));  // [B, C, H, W]
  // Example 1, channel 2, row y=1, column x=2: 100 + 10 + 6 + 2 = 118 -> 118 / 255.
  EXPECT_EQ(b.at("inputs")[1][2][1][2].item<float>(), 118.0f / 255.0f);
  // Example 0, channel 0, (x=1, y=0): 3.
  EXPECT_EQ(b.at("inputs")[0][0][0][1].item<float>(), 3.0f / 255.0f);
  EXPECT_EQ(b.at("inputs")[2].abs().sum().item<float>(), 0.0f);  // padding row
  EXPECT_TRUE(torch::equal(b.at("label"), torch::tensor({4, 1, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.at("batch_mask"), torch::tensor({1.0f, 1.0f, 0.0f})));
  EXPECT_EQ(b.size(), 3u);
}

TEST(Collate, FloatImagesPassThroughAndGreyHasOneChannel) {
  Example ex;
  ex.image = cv::Mat(1, 2, CV_32FC1);
  ex.image.at<float>(0, 0) = -1.5f;
  ex.image.at<float>(0, 1) = 2.25f;
  ex.label = 0;
  Batch b = collate({ex}, opts(Task::kClassification, 1));
  EXPECT_TRUE(torch::equal(b.at("inputs"), torch::tensor({-1.5f, 2.25f}).view({1, 1, 1, 2})));
}

TEST(Collate, NonContiguousImageIsCopiedRight) {
  Example big = rgb_example(4, 4, 0, 0, "big");
  Example roi;
  roi.image = big.image(cv::Rect(1, 2, 2, 2));  // x 1..2, y 2..3: a view with a stride
  roi.label = 0;
  Batch b = collate({roi}, opts(Task::kClassification, 1));
  // (x=0, y=0) of the view = (x=1, y=2) of big, channel 1: 20 + 3 + 1 = 24.
  EXPECT_EQ(b.at("inputs")[0][1][0][0].item<float>(), 24.0f / 255.0f);
}

TEST(Collate, MultiLabelRows) {
  Example a = rgb_example(1, 1, 0, -1, "a"), c = rgb_example(1, 1, 0, -1, "c");
  a.multi_hot = torch::tensor({1.0f, 0.0f, 1.0f});
  c.multi_hot = torch::tensor({0.0f, 1.0f, 0.0f});
  Batch b = collate({a, c}, opts(Task::kMultiLabel, 3));
  EXPECT_TRUE(torch::equal(b.at("label"), torch::tensor({1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f,
                                                         0.0f, 0.0f, 0.0f}).view({3, 3})));
  EXPECT_TRUE(torch::equal(b.at("batch_mask"), torch::tensor({1.0f, 1.0f, 0.0f})));
  c.multi_hot = torch::tensor({0.0f, 1.0f});
  EXPECT_CONTAINS(error_of([&] { collate({a, c}, opts(Task::kMultiLabel, 2)); }),
                  "toy: c: multi_hot must be [3]");
}

TEST(Collate, SegmentationPixelMasks) {
  Example a = rgb_example(2, 2, 0, -1, "a"), c = rgb_example(2, 2, 50, -1, "c");
  a.mask = (cv::Mat_<int32_t>(2, 2) << 3, kIgnoreLabel, 0, 1);
  c.mask = (cv::Mat_<int32_t>(2, 2) << 2, 2, kIgnoreLabel, kIgnoreLabel);
  Batch b = collate({a, c}, opts(Task::kSegmentation, 3));
  EXPECT_TRUE(torch::equal(b.at("label"),
                           torch::tensor({3, 0, 0, 1, 2, 2, 0, 0, 0, 0, 0, 0}, torch::kInt64).view({3, 2, 2})));
  EXPECT_TRUE(torch::equal(b.at("batch_mask"),
                           torch::tensor({1.f, 0.f, 1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f})
                               .view({3, 2, 2})));
  Example no_mask = rgb_example(2, 2, 0, -1, "nomask");
  EXPECT_CONTAINS(error_of([&] { collate({a, no_mask}, opts(Task::kSegmentation, 2)); }),
                  "toy: nomask: segmentation example needs an int32 mask of the image's size 2x2, got none");
}

TEST(Collate, DetectionBoxLayoutAndPadding) {
  // Image 0: 4 x 8 (h x w) with box (x0 2, y0 1, x1 6, y1 3) of category 0 and a crowd box
  // (0, 0, 8, 4) of category 6. Image 1: 6 x 4, no boxes.
  Example a = rgb_example(4, 8, 0, -1, "a"), c = rgb_example(6, 4, 0, -1, "c");
  a.boxes = torch::tensor({2.f, 1.f, 6.f, 3.f, 0.f, 0.f, 8.f, 4.f}).view({2, 4});
  a.box_labels = torch::tensor({0, 6}, torch::kInt64);
  a.is_crowd = torch::tensor({0, 1}, torch::kInt64);
  a.orig_size = {40, 80};
  a.image_id = 17;
  c.image_id = 23;
  Batch b = collate({a, c}, opts(Task::kDetection, 3, 3));
  // Padded to the batch's largest height (6) and width (8).
  EXPECT_EQ(b.at("inputs").sizes(), (std::vector<int64_t>{3, 3, 6, 8}));
  // cx = (2 + 6) / 2 / 8 = 0.5, cy = (1 + 3) / 2 / 4 = 0.5, w = 4 / 8 = 0.5, h = 2 / 4 = 0.5;
  // crowd box: cx = 4 / 8, cy = 2 / 4, w = 8 / 8, h = 4 / 4.
  torch::Tensor want_boxes = torch::zeros({3, 3, 4});
  want_boxes[0][0] = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f});
  want_boxes[0][1] = torch::tensor({0.5f, 0.5f, 1.0f, 1.0f});
  EXPECT_TRUE(torch::equal(b.at("boxes"), want_boxes));
  EXPECT_TRUE(torch::equal(b.at("labels"), torch::tensor({1, 7, 0, 0, 0, 0, 0, 0, 0}, torch::kInt64).view({3, 3})));
  EXPECT_TRUE(torch::equal(b.at("box_mask"), torch::tensor({1.f, 1.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}).view({3, 3})));
  EXPECT_TRUE(torch::equal(b.at("is_crowd"), torch::tensor({0, 1, 0, 0, 0, 0, 0, 0, 0}, torch::kInt64).view({3, 3})));
  EXPECT_TRUE(torch::equal(b.at("size"), torch::tensor({4, 8, 6, 4, 0, 0}, torch::kInt64).view({3, 2})));
  EXPECT_TRUE(torch::equal(b.at("orig_size"), torch::tensor({40, 80, 6, 4, 0, 0}, torch::kInt64).view({3, 2})));
  EXPECT_TRUE(torch::equal(b.at("image_id"), torch::tensor({17, 23, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.at("batch_mask"), torch::tensor({1.f, 1.f, 0.f})));
  const torch::Tensor pm = b.at("padding_mask");  // [3, 6, 8]
  EXPECT_EQ(pm[0].sum().item<float>(), 32.0f);  // 4 x 8 real pixels
  EXPECT_EQ(pm[0].narrow(0, 0, 4).sum().item<float>(), 32.0f);
  EXPECT_EQ(pm[1].sum().item<float>(), 24.0f);  // 6 x 4
  EXPECT_EQ(pm[1].narrow(1, 0, 4).sum().item<float>(), 24.0f);
  EXPECT_EQ(pm[2].sum().item<float>(), 0.0f);
  // Padding pixels of image 1 are zero, real ones keep their values: (x 3, y 5, c 0) = 50 + 9.
  EXPECT_EQ(b.at("inputs")[1].narrow(2, 4, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(b.at("inputs")[1][0][5][3].item<float>(), 59.0f / 255.0f);
  EXPECT_EQ(b.count("label"), 0u);
}

TEST(Collate, DetectionPadMaskGivesRealSize) {
  // A 6 x 8 image whose pp chain padded a 4 x 6 image at the bottom/right (pad_mask).
  Example a = rgb_example(6, 8, 0, -1, "a");
  a.pad_mask = cv::Mat::zeros(6, 8, CV_8UC1);
  a.pad_mask(cv::Rect(0, 0, 6, 4)).setTo(1);
  a.boxes = torch::tensor({0.f, 0.f, 3.f, 2.f}).view({1, 4});
  a.box_labels = torch::tensor({2}, torch::kInt64);
  Batch b = collate({a}, opts(Task::kDetection, 1, 2));
  // Normalized by the real 4 x 6: cx 1.5 / 6, cy 1 / 4, w 3 / 6, h 2 / 4.
  EXPECT_TRUE(torch::allclose(b.at("boxes")[0][0], torch::tensor({0.25f, 0.25f, 0.5f, 0.5f})));
  EXPECT_TRUE(torch::equal(b.at("size"), torch::tensor({4, 6}, torch::kInt64).view({1, 2})));
  EXPECT_EQ(b.at("padding_mask").sum().item<float>(), 24.0f);
  EXPECT_EQ(b.at("padding_mask")[0][3][5].item<float>(), 1.0f);
  EXPECT_EQ(b.at("padding_mask")[0][4][5].item<float>(), 0.0f);
}

TEST(Collate, TooManyBoxesIsDataError) {
  Example a = rgb_example(4, 4, 0, -1, "img7.jpg");
  a.boxes = torch::zeros({3, 4});
  a.box_labels = torch::zeros({3}, torch::kInt64);
  EXPECT_THROW(collate({a}, opts(Task::kDetection, 1, 2)), DataError);
  EXPECT_CONTAINS(error_of([&] { collate({a}, opts(Task::kDetection, 1, 2)); }),
                  "toy: img7.jpg: 3 boxes, more than max_boxes 2");
}

TEST(Collate, MixedSizesNameBothExamples) {
  std::string msg = error_of([&] {
    collate({rgb_example(2, 3, 0, 0, "one.png"), rgb_example(3, 3, 0, 0, "two.png")},
            opts(Task::kClassification, 2));
  });
  EXPECT_CONTAINS(msg, "toy: two.png: image is 3x3x3 but one.png in the same batch is 2x3x3");
  EXPECT_CONTAINS(error_of([&] { collate({}, opts(Task::kClassification, 2)); }),
                  "needs at least one example");
}

}  // namespace
}  // namespace scenic::dataset
