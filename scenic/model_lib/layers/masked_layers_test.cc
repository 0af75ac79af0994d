// Tests for the padding-aware layers (Scenic's masked_layers.py, inventory §3.4). The key
// invariant: on a batch where one example holds 5 x 6 real pixels inside an 8 x 8 canvas
// (the rest garbage), each masked layer gives on the real region what the plain LibTorch
// layer gives on the unpadded example, and zeros elsewhere. BatchNorm's batch statistics
// are checked against mean / biased variance over the real pixels only.
#include "scenic/model_lib/layers/masked_layers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model::masked {
namespace {

using Shape = std::vector<int64_t>;
constexpr int kH = 5, kW = 6;  // the real content of example 1

// Example 0 fills the 8 x 8 canvas; example 1 has kH x kW real pixels and large garbage
// in its padding (a layer that reads it would show).
struct PaddedBatch {
  torch::Tensor x;        // [2, C, 8, 8]
  torch::Tensor real1;    // [1, C, kH, kW], example 1 unpadded
  torch::Tensor shape;    // [2, 2] = [[8, 8], [kH, kW]]
};

PaddedBatch make_batch(int64_t channels, uint64_t seed) {
  torch::manual_seed(seed);
  PaddedBatch b;
  b.x = torch::randn({2, channels, 8, 8});
  b.x[1] = 1000 + 100 * torch::rand({channels, 8, 8});
  b.real1 = torch::randn({1, channels, kH, kW});
  b.x[1].slice(1, 0, kH).slice(2, 0, kW).copy_(b.real1[0]);
  b.shape = torch::tensor({{8, 8}, {kH, kW}}, torch::kLong);
  return b;
}

// Example 1 of a padded output: its real (h, w) corner and the rest.
torch::Tensor real_part(const torch::Tensor& y, int64_t h, int64_t w) {
  return y.narrow(0, 1, 1).slice(2, 0, h).slice(3, 0, w);
}
double padded_abs_sum(const torch::Tensor& y, int64_t h, int64_t w) {
  auto mask = torch::ones_like(y[1]);
  mask.slice(1, 0, h).slice(2, 0, w).zero_();
  return (y[1] * mask).abs().sum().item<double>();
}

TEST(MaskedLayers, MaskFromSpatial) {
  // Padded (2, 3), example sizes (1, 2) and (2, 3).
  auto m = mask_from_spatial(Shape{2, 3}, torch::tensor({{1, 2}, {2, 3}}, torch::kLong));
  auto expected = torch::tensor({{{1, 1, 0}, {0, 0, 0}}, {{1, 1, 1}, {1, 1, 1}}}, torch::kBool);
  EXPECT_TRUE(torch::equal(m, expected));
  auto b = make_batch(2, 0);
  auto full = mask_from_spatial(Shape{8, 8}, b.shape);
  EXPECT_EQ(full.sum().item<int64_t>(), 64 + kH * kW);
  EXPECT_TRUE(full[1][kH - 1][kW - 1].item<bool>());
  EXPECT_FALSE(full[1][kH][0].item<bool>());
  EXPECT_FALSE(full[1][0][kW].item<bool>());
  auto masked = apply_spatial_mask(b.x, b.shape, -1.0);
  EXPECT_TRUE(torch::equal(masked[0], b.x[0]));
  EXPECT_TRUE(torch::equal(real_part(masked, kH, kW), b.real1));
  EXPECT_EQ(masked[1][0][7][7].item<float>(), -1.0f);
  EXPECT_CONTAINS(testing::error_of([&] { apply_spatial_mask(b.x, torch::ones({2, 3}, torch::kLong)); }),
                  "spatial_shape must be an integer tensor [B, 2]");
  EXPECT_CONTAINS(testing::error_of([&] { apply_spatial_mask(b.x, torch::ones({2, 2})); }), "integer tensor");
}

TEST(MaskedLayers, ConvOutputShape) {
  auto in = torch::tensor({{kH, kW}}, torch::kLong);
  auto eq = [](const torch::Tensor& t, Shape v) { return torch::equal(t, torch::tensor(v, torch::kLong).view({1, 2})); };
  // VALID k3 s2: floor((5 - 3) / 2) + 1 = 2, floor((6 - 3) / 2) + 1 = 2.
  EXPECT_TRUE(eq(conv_output_shape(in, {3, 3}, {2, 2}, "VALID"), {2, 2}));
  // SAME s2: ceil(5 / 2) = 3, ceil(6 / 2) = 3.
  EXPECT_TRUE(eq(conv_output_shape(in, {3, 3}, {2, 2}, "SAME"), {3, 3}));
  // Explicit (1, 1) pads, k3 s1 keep the size; dilation 2 makes k3 act as 5: (5 - 5) + 1 = 1, 2.
  Padding pads(std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 1}});
  EXPECT_TRUE(eq(conv_output_shape(in, {3, 3}, {1, 1}, pads), {kH, kW}));
  EXPECT_TRUE(eq(conv_output_shape(in, {3, 3}, {1, 1}, "VALID", {2, 2}), {1, 2}));
  // A window larger than the example gives 0, never negative.
  EXPECT_TRUE(eq(conv_output_shape(in, {7, 7}, {1, 1}, "VALID"), {0, 0}));
}

TEST(MaskedLayers, ConvMatchesUnpaddedConv) {
  auto b = make_batch(3, 1);
  namespace F = torch::nn::functional;
  torch::NoGradGuard no_grad;
  {
    ConvOptions o;
    o.padding = "VALID";
    Conv conv(3, 4, o);
    conv->bias.normal_();
    auto [y, s] = conv(b.x, b.shape);
    ASSERT_EQ(y.sizes(), (Shape{2, 4, 6, 6}));
    EXPECT_TRUE(torch::equal(s, torch::tensor({{6, 6}, {kH - 2, kW - 2}}, torch::kLong)));
    auto ref1 = torch::conv2d(b.real1, conv->kernel, conv->bias);
    EXPECT_TRUE(torch::allclose(real_part(y, kH - 2, kW - 2), ref1, 1e-5, 1e-5));
    EXPECT_EQ(padded_abs_sum(y, kH - 2, kW - 2), 0.0);
    EXPECT_TRUE(torch::allclose(y[0], torch::conv2d(b.x.narrow(0, 0, 1), conv->kernel, conv->bias)[0], 1e-5, 1e-5));
  }
  {
    // Explicit (1, 1) pads with stride 2: the real border must look zero-padded, not garbage.
    ConvOptions o;
    o.padding = Padding(std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 1}});
    o.strides = {2, 2};
    Conv conv(3, 2, o);
    auto [y, s] = conv(b.x, b.shape);
    auto ref1 = torch::conv2d(b.real1, conv->kernel, conv->bias, 2, 1);  // [1, 2, 3, 3]
    ASSERT_EQ(ref1.sizes(), (Shape{1, 2, 3, 3}));
    EXPECT_TRUE(torch::equal(s[1], torch::tensor({3, 3}, torch::kLong)));
    EXPECT_TRUE(torch::allclose(real_part(y, 3, 3), ref1, 1e-5, 1e-5));
    EXPECT_EQ(padded_abs_sum(y, 3, 3), 0.0);
  }
  {
    // Flax's default 'SAME': fine without a spatial shape (torch's padding 1 for 3x3) and
    // with a 1x1 kernel; a 3x3 kernel with a spatial shape is refused as in Scenic.
    Conv same(3, 2);
    auto [y, s] = same(b.x);
    EXPECT_FALSE(s.defined());
    EXPECT_TRUE(torch::allclose(y, torch::conv2d(b.x, same->kernel, same->bias, 1, 1), 1e-5, 1e-5));
    EXPECT_CONTAINS(testing::error_of([&] { same(b.x, b.shape); }), "padding 'SAME' with a window of (3, 3)");
    ConvOptions o;
    o.kernel_size = {1, 1};
    Conv pointwise(3, 2, o);
    auto [p, ps] = pointwise(b.x, b.shape);
    EXPECT_TRUE(torch::equal(ps, b.shape));
    EXPECT_TRUE(torch::allclose(real_part(p, kH, kW), torch::conv2d(b.real1, pointwise->kernel, pointwise->bias),
                                1e-5, 1e-5));
  }
  EXPECT_EQ(Conv(3, 4)->named_parameters()["kernel"].sizes(), (Shape{4, 3, 3, 3}));
}

TEST(MaskedLayers, PoolsMatchUnpaddedPools) {
  auto b = make_batch(2, 2);
  {
    auto [y, s] = avg_pool(b.x, {2, 2}, {2, 2}, "VALID", b.shape);
    // floor((5 - 2) / 2) + 1 = 2, floor((6 - 2) / 2) + 1 = 3.
    EXPECT_TRUE(torch::equal(s, torch::tensor({{4, 4}, {2, 3}}, torch::kLong)));
    EXPECT_TRUE(torch::allclose(real_part(y, 2, 3), torch::avg_pool2d(b.real1, 2, 2)));
    EXPECT_EQ(padded_abs_sum(y, 2, 3), 0.0);
    EXPECT_TRUE(torch::allclose(y[0], torch::avg_pool2d(b.x.narrow(0, 0, 1), 2, 2)[0]));
  }
  {
    auto [y, s] = max_pool(b.x, {3, 3}, {1, 1}, "VALID", b.shape);
    EXPECT_TRUE(torch::equal(s[1], torch::tensor({kH - 2, kW - 2}, torch::kLong)));
    EXPECT_TRUE(torch::equal(real_part(y, kH - 2, kW - 2), torch::max_pool2d(b.real1, 3, 1)));
    EXPECT_EQ(padded_abs_sum(y, kH - 2, kW - 2), 0.0);
  }
  {
    // Explicit pads on a max pool: past the real border the padding is -inf, never garbage.
    Padding pads(std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 1}});
    auto [y, s] = max_pool(b.x, {3, 3}, {2, 2}, pads, b.shape);
    auto ref = torch::max_pool2d(b.real1, 3, 2, 1);  // torch pads max pools with -inf
    EXPECT_TRUE(torch::equal(s[1], torch::tensor({ref.size(2), ref.size(3)}, torch::kLong)));
    EXPECT_TRUE(torch::equal(real_part(y, ref.size(2), ref.size(3)), ref));
  }
  auto [plain, none] = max_pool(b.x, {2, 2}, {2, 2});
  EXPECT_FALSE(none.defined());
  EXPECT_TRUE(torch::equal(plain, torch::max_pool2d(b.x, 2, 2)));
  EXPECT_CONTAINS(testing::error_of([&] { avg_pool(b.x, {2, 2}, {2, 2}, "SAME", b.shape); }), "not supported");
  EXPECT_CONTAINS(testing::error_of([&] { max_pool(b.x, {2, 2}, {2, 2}, "SAME", b.shape); }), "not supported");
}

TEST(MaskedLayers, BatchNormStatisticsOverRealPixelsOnly) {
  auto b = make_batch(3, 3);
  BatchNorm bn(3);
  EXPECT_EQ(bn->named_parameters().size(), 2u);  // scale, bias
  EXPECT_TRUE(bn->named_buffers().contains("mean"));
  {
    torch::NoGradGuard no_grad;
    bn->scale.copy_(torch::tensor({1.0f, 2.0f, 0.5f}));
    bn->bias.copy_(torch::tensor({0.0f, -1.0f, 3.0f}));
  }
  bn->train();
  auto [y, s] = bn(b.x, b.shape);
  EXPECT_TRUE(torch::equal(s, b.shape));
  // Reference statistics: the 64 pixels of example 0 and the 30 real ones of example 1.
  auto pixels = torch::cat({b.x[0].reshape({3, -1}), b.real1[0].reshape({3, -1})}, 1);  // [3, 94]
  ASSERT_EQ(pixels.size(1), 64 + kH * kW);
  auto mean = pixels.mean(1), var = pixels.var(1, /*unbiased=*/false);
  auto norm = [&](const torch::Tensor& t) {
    return (t - mean.view({1, 3, 1, 1})) / torch::sqrt(var.view({1, 3, 1, 1}) + 1e-5) * bn->scale.view({1, 3, 1, 1}) +
           bn->bias.view({1, 3, 1, 1});
  };
  EXPECT_TRUE(torch::allclose(real_part(y, kH, kW), norm(b.real1), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(y.narrow(0, 0, 1), norm(b.x.narrow(0, 0, 1)), 1e-4, 1e-5));
  EXPECT_EQ(padded_abs_sum(y, kH, kW), 0.0);
  // Running statistics (Flax momentum 0.99): 0.99 * 0 + 0.01 * mean and 0.99 * 1 + 0.01 * var.
  EXPECT_TRUE(torch::allclose(bn->mean, 0.01 * mean, 1e-5, 1e-7));
  EXPECT_TRUE(torch::allclose(bn->var, 0.99 + 0.01 * var, 1e-5, 1e-7));

  // Eval: the running statistics normalize and nothing is updated.
  bn->eval();
  auto mean_before = bn->mean.clone(), var_before = bn->var.clone();
  auto [e, es] = bn(b.x, b.shape);
  EXPECT_TRUE(torch::equal(bn->mean, mean_before));
  EXPECT_TRUE(torch::equal(bn->var, var_before));
  auto expected = (b.real1 - mean_before.view({1, 3, 1, 1})) / torch::sqrt(var_before.view({1, 3, 1, 1}) + 1e-5) *
                      bn->scale.view({1, 3, 1, 1}) + bn->bias.view({1, 3, 1, 1});
  EXPECT_TRUE(torch::allclose(real_part(e, kH, kW), expected, 1e-4, 1e-5));
}

TEST(MaskedLayers, BatchNormOnOnePaddedExampleEqualsTorchOnUnpadded) {
  auto b = make_batch(3, 4);
  BatchNorm bn(3);
  bn->train();
  auto [y, s] = bn(b.x.narrow(0, 1, 1), b.shape.narrow(0, 1, 1));
  // torch's batch norm: momentum 0.01 (= 1 - Flax's 0.99); it stores the unbiased variance.
  auto rm = torch::zeros({3}), rv = torch::ones({3});
  auto ref = torch::batch_norm(b.real1, bn->scale, bn->bias, rm, rv, /*training=*/true, 0.01, 1e-5, false);
  EXPECT_TRUE(torch::allclose(y.slice(2, 0, kH).slice(3, 0, kW), ref.detach(), 1e-4, 1e-5));
  EXPECT_EQ(y.abs().sum().item<double>(), y.slice(2, 0, kH).slice(3, 0, kW).abs().sum().item<double>());
  EXPECT_TRUE(torch::allclose(bn->mean, rm, 1e-5, 1e-7));
  const double n = kH * kW;  // biased = unbiased * (n - 1) / n
  auto torch_batch_var = (rv - 0.99) / 0.01;
  EXPECT_TRUE(torch::allclose(bn->var, 0.99 + 0.01 * torch_batch_var * (n - 1) / n, 1e-5, 1e-6));
  // Without a spatial shape the whole canvas counts: equal to torch on the padded tensor.
  BatchNorm plain(3);
  plain->train();
  auto [p, ps] = plain(b.x);
  EXPECT_FALSE(ps.defined());
  auto ref_plain = torch::batch_norm(b.x, plain->scale, plain->bias, {}, {}, true, 0.01, 1e-5, false);
  EXPECT_TRUE(torch::allclose(p, ref_plain.detach(), 1e-3, 1e-4));
}

TEST(MaskedLayers, GroupNormMatchesTorchOnUnpadded) {
  auto b = make_batch(4, 5);
  GroupNormOptions o;
  o.num_groups = 2;
  GroupNorm gn(4, o);
  {
    torch::NoGradGuard no_grad;
    gn->scale.copy_(torch::tensor({1.0f, 2.0f, 0.5f, -1.0f}));
    gn->bias.copy_(torch::tensor({0.0f, -1.0f, 3.0f, 0.25f}));
  }
  auto [y, s] = gn(b.x, b.shape);
  EXPECT_TRUE(torch::equal(s, b.shape));
  auto ref1 = torch::group_norm(b.real1, 2, gn->scale, gn->bias, 1e-6);
  EXPECT_TRUE(torch::allclose(real_part(y, kH, kW), ref1.detach(), 1e-4, 1e-5));
  EXPECT_EQ(padded_abs_sum(y, kH, kW), 0.0);
  auto ref0 = torch::group_norm(b.x.narrow(0, 0, 1), 2, gn->scale, gn->bias, 1e-6);
  EXPECT_TRUE(torch::allclose(y.narrow(0, 0, 1), ref0.detach(), 1e-4, 1e-5));

  // group_size 2 on 4 channels is the same 2 groups.
  GroupNormOptions by_size;
  by_size.num_groups.reset();
  by_size.group_size = 2;
  GroupNorm gs(4, by_size);
  EXPECT_EQ(gs->num_groups(), 2);
  {
    torch::NoGradGuard no_grad;
    gs->scale.copy_(gn->scale);
  }
  auto [ys, unused] = gs(b.x, b.shape);
  EXPECT_TRUE(torch::allclose(real_part(ys, kH, kW), torch::group_norm(b.real1, 2, gn->scale, {}, 1e-6).detach(),
                              1e-4, 1e-5));

  // spatial_norm = false: statistics over the whole zero-padded canvas.
  GroupNormOptions flat = o;
  flat.spatial_norm = false;
  flat.use_bias = flat.use_scale = false;
  GroupNorm gf(4, flat);
  auto [yf, sf] = gf(b.x, b.shape);
  auto zero_padded = apply_spatial_mask(b.x, b.shape);
  auto ref_flat = apply_spatial_mask(torch::group_norm(zero_padded, 2, {}, {}, 1e-6), b.shape);
  EXPECT_TRUE(torch::allclose(yf, ref_flat, 1e-4, 1e-5));

  GroupNormOptions both = o;
  both.group_size = 2;
  EXPECT_CONTAINS(testing::error_of([&] { GroupNorm(4, both); }), "but not both");
  EXPECT_CONTAINS(testing::error_of([] { GroupNorm(6); }), "does not divide");  // 32 groups
  GroupNormOptions bad_size;
  bad_size.num_groups.reset();
  bad_size.group_size = 3;
  EXPECT_CONTAINS(testing::error_of([&] { GroupNorm(4, bad_size); }), "not a multiple of the group size (3)");
}

TEST(MaskedLayers, ChainedLayersMatchThePlainChainOnTheUnpaddedExample) {
  // conv (VALID 3x3) -> group norm -> max pool 2x2/2, threading the spatial shapes.
  auto b = make_batch(3, 6);
  ConvOptions co;
  co.padding = "VALID";
  Conv conv(3, 4, co);
  GroupNormOptions go;
  go.num_groups = 2;
  GroupNorm gn(4, go);
  torch::NoGradGuard no_grad;
  auto [h, s] = conv(b.x, b.shape);
  std::tie(h, s) = gn(h, s);
  std::tie(h, s) = max_pool(h, {2, 2}, {2, 2}, "VALID", s);
  // (5, 6) -> conv (3, 4) -> pool (1, 2).
  EXPECT_TRUE(torch::equal(s[1], torch::tensor({1, 2}, torch::kLong)));
  auto ref = torch::conv2d(b.real1, conv->kernel, conv->bias);
  ref = torch::max_pool2d(torch::group_norm(ref, 2, gn->scale, gn->bias, 1e-6), 2, 2);
  EXPECT_TRUE(torch::allclose(real_part(h, 1, 2), ref, 1e-4, 1e-5));
  EXPECT_EQ(padded_abs_sum(h, 1, 2), 0.0);
}

}  // namespace
}  // namespace scenic::model::masked
