// Tests for the parameter-free ops (Scenic's nn_ops.py, inventory §3.3) on hand-made
// examples; images are NCHW.
#include "scenic/model_lib/layers/nn_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

using Shape = std::vector<int64_t>;

TEST(NnOps, PaddingResolvesLikeXla) {
  // SAME: out = ceil(n / s), total = max((out - 1) s + k - n, 0), smaller half first.
  // n = 5, k = 2, s = 2: out 3, total 1 -> (0, 1). n = 6, k = 3, s = 1: total 2 -> (1, 1).
  const int64_t in[2] = {5, 6}, k[2] = {2, 3}, s[2] = {2, 1};
  auto pads = resolve_padding("same", in, k, s);
  EXPECT_EQ(pads, (std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {1, 1}}));
  EXPECT_EQ(resolve_padding("VALID", in, k, s), (std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {0, 0}}));
  EXPECT_CONTAINS(testing::error_of([] { Padding p("FULL"); }), "unrecognized padding 'FULL'");
  Padding one_pair(std::vector<std::pair<int64_t, int64_t>>{{1, 1}});
  EXPECT_CONTAINS(testing::error_of([&] { resolve_padding(one_pair, in, k, s); }), "expected 2 (low, high) pairs");
}

TEST(NnOps, ExtractPatchesHandExample) {
  // x = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]; 2x2 windows, stride 1: 2 x 3 patches.
  auto x = torch::arange(12, torch::kFloat).view({1, 1, 3, 4});
  auto p = extract_patches(x, {2, 2});
  ASSERT_EQ(p.sizes(), (Shape{1, 2, 3, 1, 2, 2}));
  EXPECT_TRUE(torch::equal(p[0][1][2][0], torch::tensor({{6.0f, 7.0f}, {10.0f, 11.0f}})));
  EXPECT_TRUE(torch::equal(p[0][0][0][0], torch::tensor({{0.0f, 1.0f}, {4.0f, 5.0f}})));
  // Stride (1, 2): columns 0 and 2 only.
  auto q = extract_patches(x, {2, 2}, {1, 2});
  ASSERT_EQ(q.sizes(), (Shape{1, 2, 2, 1, 2, 2}));
  EXPECT_TRUE(torch::equal(q[0][0][1][0], torch::tensor({{2.0f, 3.0f}, {6.0f, 7.0f}})));
  // Dilation 2 along w: taps at columns j and j + 2.
  auto d = extract_image_patches(x, {1, 2}, {1, 1}, "VALID", {1, 2});
  ASSERT_EQ(d.sizes(), (Shape{1, 3, 2, 1, 1, 2}));
  EXPECT_TRUE(torch::equal(d[0][2][1][0], torch::tensor({{9.0f, 11.0f}})));
}

TEST(NnOps, PatchImageRoundTripAndOverlapAveraging) {
  torch::manual_seed(0);
  auto img = torch::randn({2, 3, 4, 4});
  auto patches = patch_image(img, {}, {2, 2});  // strides default to the patch size
  ASSERT_EQ(patches.sizes(), (Shape{2, 2, 2, 3, 2, 2}));
  EXPECT_TRUE(torch::equal(patches[1][1][0][2], img[1][2].slice(0, 2, 4).slice(1, 0, 2)));
  EXPECT_TRUE(torch::allclose(patch_image(patches, img.sizes(), {2, 2}, std::nullopt, {}, "p2i"), img));

  // Overlapping 2x2 patches with stride 1 hold copies; averaging them gives the image back.
  auto over = patch_image(img, {}, {2, 2}, std::make_pair<int64_t, int64_t>(1, 1));
  ASSERT_EQ(over.sizes(), (Shape{2, 3, 3, 3, 2, 2}));
  EXPECT_TRUE(torch::allclose(patch_image(over, img.sizes(), {2, 2}, std::make_pair<int64_t, int64_t>(1, 1), {}, "p2i"),
                              img, 1e-5, 1e-6));

  // Hand example: image 1 x 3, patches (1, 2) stride 1 cover pixels {0, 1} and {1, 2}.
  // Patches [1, 2] and [4, 8] -> pixel 0 = 1, pixel 1 = (2 + 4) / 2 = 3, pixel 2 = 8.
  auto hand = torch::tensor({1.0f, 2.0f, 4.0f, 8.0f}).view({1, 1, 2, 1, 1, 2});
  auto back = patch_image(hand, Shape{1, 1, 1, 3}, {1, 2}, std::make_pair<int64_t, int64_t>(1, 1), {}, "p2i");
  EXPECT_TRUE(torch::equal(back, torch::tensor({1.0f, 3.0f, 8.0f}).view({1, 1, 1, 3})));
  // 3x3 of ones-patches where patch (i, j) holds the value i * 2 + j + 1 (1..4): the centre
  // pixel is covered by all four, (1 + 2 + 3 + 4) / 4 = 2.5; the corner (0, 2) only by patch 2.
  auto vals = torch::arange(1, 5, torch::kFloat).view({1, 2, 2, 1, 1, 1}).expand({1, 2, 2, 1, 2, 2});
  auto grid = patch_image(vals, Shape{1, 1, 3, 3}, {2, 2}, std::make_pair<int64_t, int64_t>(1, 1), {}, "p2i");
  EXPECT_FLOAT_EQ(grid[0][0][1][1].item<float>(), 2.5f);
  EXPECT_FLOAT_EQ(grid[0][0][0][2].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(grid[0][0][0][1].item<float>(), 1.5f);  // patches 1 and 2
}

TEST(NnOps, PatchImageSamePaddingAndUncoveredPixels) {
  torch::manual_seed(1);
  auto img = torch::randn({1, 2, 5, 5});
  // SAME, patch 2, stride 2: 3 x 3 patches, pads (0, 1): the last row/column of patches
  // hold one padded zero.
  auto p = patch_image(img, {}, {2, 2}, std::nullopt, "SAME");
  ASSERT_EQ(p.sizes(), (Shape{1, 3, 3, 2, 2, 2}));
  EXPECT_EQ(p[0][2][2][1][1][1].item<float>(), 0.0f);
  EXPECT_EQ(p[0][2][2][1][0][0].item<float>(), img[0][1][4][4].item<float>());
  EXPECT_TRUE(torch::allclose(patch_image(p, img.sizes(), {2, 2}, std::nullopt, "SAME", "p2i"), img));
  // VALID leaves row and column 4 uncovered: they come back as 0 (Scenic: NaN).
  auto v = patch_image(img, {}, {2, 2});
  auto back = patch_image(v, img.sizes(), {2, 2}, std::nullopt, {}, "p2i");
  EXPECT_EQ(back.select(2, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(back.slice(2, 0, 4).slice(3, 0, 4), img.slice(2, 0, 4).slice(3, 0, 4)));
  EXPECT_CONTAINS(testing::error_of([&] { patch_image(v, Shape{1, 2, 6, 6}, {2, 2}, std::nullopt, {}, "p2i"); }),
                  "expected");
  EXPECT_CONTAINS(testing::error_of([&] { patch_image(img, {}, {6, 2}); }), "larger than the image");
  EXPECT_CONTAINS(testing::error_of([&] { patch_image(img, {}, {2, 2}, std::nullopt, {}, "x"); }), "mode");
}

TEST(NnOps, SpaceToDepthHandExample) {
  // x[c][h][w] = 100 c + 10 h + w on a 2-channel 4x4 image, window 2 (stride 2):
  // output channel (i * 2 + j) * 2 + c at (oh, ow) = x[c][2 oh + i][2 ow + j].
  auto idx = torch::arange(4, torch::kFloat);
  auto x = (100 * torch::arange(2, torch::kFloat).view({2, 1, 1}) + 10 * idx.view({1, 4, 1}) + idx.view({1, 1, 4}))
               .unsqueeze(0);
  auto y = space_to_depth(x, {2, 2});
  ASSERT_EQ(y.sizes(), (Shape{1, 8, 2, 2}));
  //       (i, j, c) = (0,0,0) (0,0,1) (0,1,0) (0,1,1) (1,0,0) (1,0,1) (1,1,0) (1,1,1)
  auto at00 = torch::tensor({0.0f, 100.0f, 1.0f, 101.0f, 10.0f, 110.0f, 11.0f, 111.0f});
  EXPECT_TRUE(torch::equal(y[0].select(1, 0).select(1, 0), at00));
  EXPECT_TRUE(torch::equal(y[0].select(1, 1).select(1, 1), at00 + 22));  // + 10 * 2 + 2
  EXPECT_TRUE(torch::equal(y[0].select(1, 0).select(1, 1), at00 + 2));
  EXPECT_TRUE(torch::equal(pooling(x, {2, 2}, "space_to_depth"), y));
}

TEST(NnOps, PlainPoolsUseXlaPadding) {
  auto ones = torch::ones({1, 1, 3, 3});
  // SAME 3x3 average counts padded zeros (Flax): corner 4 / 9, edge 6 / 9, centre 1.
  auto avg = avg_pool(ones, {3, 3}, {1, 1}, "SAME");
  EXPECT_FLOAT_EQ(avg[0][0][0][0].item<float>(), 4.0f / 9.0f);
  EXPECT_FLOAT_EQ(avg[0][0][0][1].item<float>(), 6.0f / 9.0f);
  EXPECT_FLOAT_EQ(avg[0][0][1][1].item<float>(), 1.0f);
  // SAME max pads with -inf, so an all-negative image stays negative.
  EXPECT_TRUE(torch::equal(max_pool(-ones, {3, 3}, {1, 1}, "SAME"), -ones));
  auto x = torch::arange(16, torch::kFloat).view({1, 1, 4, 4});
  EXPECT_TRUE(torch::equal(pooling(x, {2, 2}, "max_pooling"), torch::tensor({5.0f, 7.0f, 13.0f, 15.0f}).view({1, 1, 2, 2})));
  EXPECT_TRUE(torch::equal(pooling(x, {2, 2}, "avg_pooling"), torch::tensor({2.5f, 4.5f, 10.5f, 12.5f}).view({1, 1, 2, 2})));
  EXPECT_CONTAINS(testing::error_of([&] { pooling(x, {2, 2}, "median"); }), "pooling_type 'median'");
  EXPECT_CONTAINS(testing::error_of([&] { max_pool(x, {5, 5}); }), "larger than");
}

TEST(NnOps, WeightedPoolsHandExample) {
  // Window 0 (columns 0-1): x = [[1, 2], [3, 4]], w = [[1, 0], [0.5, 1]]: x w = [1, 0, 1.5, 4].
  //   max = 4, max w = 1; avg = (1 + 1.5 + 4) / (1 + 0.5 + 1) = 6.5 / 2.5 = 2.6, w = 2.5 / 4.
  // Window 1 (columns 2-3): x = [[5, 6], [7, 8]], w = [[0, 0], [2, 0]]: x w = [0, 0, 14, 0].
  //   max = 14, max w = 2; avg = 14 / 2 = 7, w = 2 / 4 = 0.5.
  auto x = torch::tensor({{1.0f, 2.0f, 5.0f, 6.0f}, {3.0f, 4.0f, 7.0f, 8.0f}}).view({1, 1, 2, 4});
  auto w = torch::tensor({{1.0f, 0.0f, 0.0f, 0.0f}, {0.5f, 1.0f, 2.0f, 0.0f}}).view({1, 2, 4});
  auto mx = weighted_max_pool(x, w, {2, 2}, {2, 2});
  EXPECT_TRUE(torch::equal(mx.outputs, torch::tensor({4.0f, 14.0f}).view({1, 1, 1, 2})));
  EXPECT_TRUE(torch::equal(mx.pooled_weights, torch::tensor({1.0f, 2.0f}).view({1, 1, 2})));
  auto av = weighted_avg_pool(x, w, {2, 2}, {2, 2});
  EXPECT_TRUE(torch::allclose(av.outputs, torch::tensor({2.6f, 7.0f}).view({1, 1, 1, 2})));
  EXPECT_TRUE(torch::allclose(av.pooled_weights, torch::tensor({0.625f, 0.5f}).view({1, 1, 2})));
  // Default stride 1: three windows; the middle one (columns 1-2) has x w = [0, 0, 4, 14].
  auto av1 = weighted_avg_pool(x, w, {2, 2});
  ASSERT_EQ(av1.outputs.sizes(), (Shape{1, 1, 1, 3}));
  EXPECT_FLOAT_EQ(av1.outputs[0][0][0][1].item<float>(), 18.0f / 3.0f);
  EXPECT_CONTAINS(testing::error_of([&] { weighted_max_pool(x, w.view({1, 8}), {2, 2}); }), "weights must be [B, H, W]");
}

TEST(NnOps, Upscale2xAndCentralCrop) {
  auto x = torch::tensor({{1.0f, 2.0f}, {3.0f, 4.0f}}).view({1, 1, 2, 2});
  auto up = upscale2x_nearest_neighbor(x);
  auto expected = torch::tensor({{1.0f, 1.0f, 2.0f, 2.0f}, {1.0f, 1.0f, 2.0f, 2.0f},
                                 {3.0f, 3.0f, 4.0f, 4.0f}, {3.0f, 3.0f, 4.0f, 4.0f}});
  EXPECT_TRUE(torch::equal(up, expected.view({1, 1, 4, 4})));
  auto two = upscale2x_nearest_neighbor(torch::stack({x[0], 10 * x[0]}, 1).view({1, 2, 2, 2}));
  EXPECT_TRUE(torch::equal(two[0][1], 10 * expected));

  // 5 x 6 image with x[h][w] = 6 h + w; crop (3, 2): offsets (5 - 3) / 2 = 1, (6 - 2) / 2 = 2.
  auto img = torch::arange(30, torch::kFloat).view({1, 1, 5, 6});
  auto crop = central_crop(img, {3, 2});
  EXPECT_TRUE(torch::equal(crop, torch::tensor({{8.0f, 9.0f}, {14.0f, 15.0f}, {20.0f, 21.0f}}).view({1, 1, 3, 2})));
  // Odd leftovers go after the crop: (4, 4) from (5, 6) -> offsets 0 and 1.
  EXPECT_EQ(central_crop(img, {4, 4})[0][0][0][0].item<float>(), 1.0f);
  EXPECT_CONTAINS(testing::error_of([&] { central_crop(img, {6, 2}); }), "does not fit");
}

TEST(NnOps, RelativeDistances) {
  // Scenic's docstring example: q = 2, k = 3: j - i = [[0, 1, 2], [-1, 0, 1]], + 1.
  EXPECT_TRUE(torch::equal(compute_1d_relative_distance(2, 3), torch::tensor({{1, 2, 3}, {0, 1, 2}}, torch::kLong)));
  EXPECT_TRUE(torch::equal(compute_1d_relative_distance(3, 2), torch::tensor({{2, 3}, {1, 2}, {0, 1}}, torch::kLong)));
  auto one = compute_relative_positions({2}, {3});
  EXPECT_TRUE(torch::equal(one, compute_1d_relative_distance(2, 3).unsqueeze(0)));

  // 2-D: q (2, 3), k (2, 3): axis 0 holds kh - qh + 1, axis 1 holds kw - qw + 2.
  auto rel = compute_relative_positions({2, 3}, {2, 3});
  ASSERT_EQ(rel.sizes(), (Shape{2, 2, 3, 2, 3}));
  EXPECT_EQ(rel.min().item<int64_t>(), 0);
  EXPECT_EQ(rel[0][1][2][0][0].item<int64_t>(), 0);  // 0 - 1 + 1
  EXPECT_EQ(rel[1][1][2][0][0].item<int64_t>(), 0);  // 0 - 2 + 2
  EXPECT_EQ(rel[0][0][1][1][0].item<int64_t>(), 2);  // 1 - 0 + 1
  EXPECT_EQ(rel[1][0][0][1][2].item<int64_t>(), 4);  // 2 - 0 + 2
  auto only_w = compute_relative_positions({2, 3}, {2, 4}, {1});
  ASSERT_EQ(only_w.sizes(), (Shape{1, 3, 4}));
  EXPECT_TRUE(torch::equal(only_w[0], compute_1d_relative_distance(3, 4)));
  EXPECT_CONTAINS(testing::error_of([] { compute_relative_positions({2, 3}, {2, 3}, {2}); }), "spatial axis 2");
}

}  // namespace
}  // namespace scenic::model
