// Tests for the position embeddings (Scenic's attention_layers.py position-embedding
// part and the ViT checkpoint loader's resize). References: closed-form values written
// here, and testdata/posemb_reference.json made by tools/fixtures/posemb_reference.py
// (numpy tables in Scenic's part order, scipy.ndimage.zoom(order=1), torch
// interpolate(align_corners=False)).
#include "scenic/model_lib/layers/position_embeddings.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

torch::Tensor fixture(const std::string& key) {
  static const nlohmann::json data = [] {
    const std::string path = std::string(SCENIC_SOURCE_DIR) + "/scenic/model_lib/testdata/posemb_reference.json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(f);
  }();
  const auto& entry = data.at(key);
  auto values = entry.at("values").get<std::vector<double>>();
  return torch::tensor(values, torch::kDouble).reshape(entry.at("shape").get<std::vector<int64_t>>()).to(torch::kFloat);
}

TEST(SinusoidalInit, ClosedFormAndReference) {
  auto pe = sinusoidal_init(6, 8);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{1, 6, 8}));
  // d = 8: frequencies w_i = 10000^(-2i/8) = 1, 0.1, 0.01, 0.001 for i = 0..3;
  // position 1: [sin 1, cos 1, sin 0.1, cos 0.1, ...]; position 0: [0, 1, 0, 1, ...].
  EXPECT_NEAR(pe[0][1][0].item<double>(), 0.8414709848, 1e-6);   // sin(1)
  EXPECT_NEAR(pe[0][1][1].item<double>(), 0.5403023059, 1e-6);   // cos(1)
  EXPECT_NEAR(pe[0][1][2].item<double>(), 0.0998334166, 1e-6);   // sin(0.1)
  EXPECT_NEAR(pe[0][1][7].item<double>(), 0.9999995, 1e-6);      // cos(0.001)
  EXPECT_NEAR(pe[0][5][4].item<double>(), 0.0499791693, 1e-6);   // sin(5 * 0.01)
  EXPECT_TRUE(torch::equal(pe[0][0], torch::tensor({0.f, 1.f, 0.f, 1.f, 0.f, 1.f, 0.f, 1.f})));
  EXPECT_TRUE(torch::allclose(pe, fixture("sinusoidal_6x8"), 1e-6, 1e-6));
  EXPECT_CONTAINS(testing::error_of([] { sinusoidal_init(4, 5); }), "even");
}

TEST(Add1DPositionEmbedding, FixedTableIsAddedWithoutParameters) {
  Add1DPositionEmbedding emb(8, Add1DPositionEmbeddingOptions{});
  EXPECT_TRUE(emb->parameters().empty());
  auto x = torch::randn({2, 6, 8});
  EXPECT_TRUE(torch::allclose(emb(x), x + sinusoidal_init(6, 8), 1e-6, 1e-6));
  // max_len larger than the input: the first L rows of the max_len table (the same rows).
  Add1DPositionEmbedding longer(8, Add1DPositionEmbeddingOptions{.max_len = 10});
  EXPECT_TRUE(torch::allclose(longer(x), x + sinusoidal_init(6, 8), 1e-6, 1e-6));
  EXPECT_CONTAINS(testing::error_of([&] { emb(torch::zeros({2, 6, 4})); }), "[B, L, 8]");
}

TEST(Add1DPositionEmbedding, LearnedTableAndRescale) {
  torch::manual_seed(0);
  Add1DPositionEmbedding emb(4, Add1DPositionEmbeddingOptions{.max_len = 5, .posemb_init = normal_posemb_init(0.02), .param_name = "pos_emb"});
  auto params = emb->named_parameters();
  ASSERT_TRUE(params.contains("pos_emb"));
  EXPECT_EQ(params["pos_emb"].sizes(), (std::vector<int64_t>{1, 5, 4}));
  EXPECT_GT(params["pos_emb"].abs().sum().item<double>(), 0.0);
  auto x = torch::randn({2, 3, 4});
  EXPECT_TRUE(torch::allclose(emb(x), x + emb->pos_embedding.slice(1, 0, 3), 1e-6, 1e-6));
  // A table trained at length 3 used at length 7: linear, half-pixel resize, checked
  // against torch's interpolate(linear, align_corners=False).
  Add1DPositionEmbedding up(4, Add1DPositionEmbeddingOptions{.max_len = 7, .rescale_from = 3, .posemb_init = normal_posemb_init()});
  {
    torch::NoGradGuard no_grad;
    up->pos_embedding.copy_(fixture("seq_3").unsqueeze(0));
  }
  EXPECT_EQ(up->pos_embedding.size(1), 3);
  auto z = torch::zeros({1, 7, 4});
  EXPECT_TRUE(torch::allclose(up(z)[0], fixture("linear_3_to_7"), 1e-5, 1e-5));
  // Hand-computed 2 -> 4 (fixed table, d = 2: rows [0, 1] and [sin 1, cos 1]): the output
  // positions sample the table at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  Add1DPositionEmbedding fixed(2, Add1DPositionEmbeddingOptions{.max_len = 4, .rescale_from = 2});
  auto t = sinusoidal_init(2, 2)[0];
  auto expected = torch::stack({t[0], 0.75 * t[0] + 0.25 * t[1], 0.25 * t[0] + 0.75 * t[1], t[1]});
  EXPECT_TRUE(torch::allclose(fixed(torch::zeros({1, 4, 2}))[0], expected, 1e-6, 1e-6));
  // As in Scenic, the table is cut to the input length *before* resizing, so a longer
  // table used at a shorter length is truncated, not shrunk.
  Add1DPositionEmbedding down(4, Add1DPositionEmbeddingOptions{.max_len = 3, .rescale_from = 5, .posemb_init = normal_posemb_init()});
  EXPECT_TRUE(torch::allclose(down(z.slice(1, 0, 3)), down->pos_embedding.slice(1, 0, 3), 1e-6, 1e-6));
}

TEST(ResizeGridBilinear, MatchesTorchAndScipyReferences) {
  // Half-pixel centres (jax.image.resize without antialias == torch align_corners=False).
  EXPECT_TRUE(torch::allclose(resize_grid_bilinear(fixture("grid_3x3"), 5, 5, false),
                              fixture("half_pixel_3x3_to_5x5"), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(resize_grid_bilinear(fixture("grid_4x4"), 2, 3, false),
                              fixture("half_pixel_4x4_to_2x3"), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(resize_grid_bilinear(fixture("seq_5").unsqueeze(0), 1, 3, false)[0],
                              fixture("linear_5_to_3"), 1e-5, 1e-5));
  // Corners aligned (scipy.ndimage.zoom(order=1)).
  EXPECT_TRUE(torch::allclose(resize_grid_bilinear(fixture("grid_3x3"), 5, 5, true),
                              fixture("zoom_3x3_to_5x5"), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(resize_grid_bilinear(fixture("grid_4x4"), 2, 3, true),
                              fixture("zoom_4x4_to_2x3"), 1e-5, 1e-5));
}

TEST(Add2DPositionEmbedding, LayoutAndRescale) {
  torch::manual_seed(1);
  Add2DPositionEmbedding emb(std::array<int64_t, 2>{3, 4}, 6);
  auto params = emb->named_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params["row_pos_embedding"].sizes(), (std::vector<int64_t>{4, 3}));  // [w, c/2]
  EXPECT_EQ(params["col_pos_embedding"].sizes(), (std::vector<int64_t>{3, 3}));  // [h, c/2]
  // N(0, 0.02) init.
  EXPECT_LT(params["row_pos_embedding"].abs().max().item<double>(), 0.02 * 6);
  auto x = torch::randn({2, 3, 4, 6});
  auto y = emb(x);
  // Position (i, j) gets concat(row[j], col[i]).
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      auto pos = torch::cat({emb->row_pos_embedding[j], emb->col_pos_embedding[i]});
      EXPECT_TRUE(torch::allclose(y.select(1, i).select(1, j), x.select(1, i).select(1, j) + pos, 1e-6, 1e-6));
    }
  // Stored at 3x4, used at 5x2: the [h, w, c] table resized with half-pixel centres.
  Add2DPositionEmbedding re(std::array<int64_t, 2>{5, 2}, 6, Add2DPositionEmbeddingOptions{.rescale_from = std::array<int64_t, 2>{3, 4}});
  EXPECT_EQ(re->row_pos_embedding.size(0), 4);
  auto z = re(torch::zeros({1, 5, 2, 6}))[0];
  EXPECT_TRUE(torch::allclose(z, resize_grid_bilinear(re->table(), 5, 2, false), 1e-6, 1e-6));
  // The row half still depends on the column only (separable resize).
  EXPECT_TRUE(torch::allclose(z.slice(2, 0, 3), z.slice(2, 0, 3)[0].expand({5, 2, 3}), 1e-6, 1e-6));
  EXPECT_CONTAINS(testing::error_of([] { Add2DPositionEmbedding(std::array<int64_t, 2>{2, 2}, 5); }), "even");
}

TEST(FixedSinCosPositionEmbedding, TwoAndThreeDimensions) {
  auto pe = get_fixed_sincos_position_embedding({2, 3, 4, 8});
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{1, 3, 4, 8}));
  // C = 8: 4 parts of 2 frequencies, omega = 10000^(-[0, 1/2]) = [1, 0.01]. Position
  // (y = 1, x = 2): [sin 2, sin 0.02, cos 2, cos 0.02, sin 1, sin 0.01, cos 1, cos 0.01].
  auto p = pe[0][1][2];
  const std::vector<double> expected{std::sin(2.0), std::sin(0.02), std::cos(2.0), std::cos(0.02),
                                     std::sin(1.0), std::sin(0.01), std::cos(1.0), std::cos(0.01)};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(p[i].item<double>(), expected[i], 1e-6) << i;
  EXPECT_TRUE(torch::allclose(pe, fixture("sincos_2d_3x4x8_t1e4"), 1e-5, 1e-5));
  auto pe3 = get_fixed_sincos_position_embedding({2, 2, 3, 4, 12}, 100.0);
  ASSERT_EQ(pe3.sizes(), (std::vector<int64_t>{1, 2, 3, 4, 12}));
  // Parts z, x, y: position (t = 1, y = 2, x = 3), omega = 100^(-[0, 1/2]) = [1, 0.1]:
  // [sin 1, sin .1, cos 1, cos .1, sin 3, sin .3, cos 3, cos .3, sin 2, sin .2, cos 2, cos .2].
  EXPECT_NEAR(pe3[0][1][2][3][1].item<double>(), std::sin(0.1), 1e-6);
  EXPECT_NEAR(pe3[0][1][2][3][5].item<double>(), std::sin(0.3), 1e-6);
  EXPECT_NEAR(pe3[0][1][2][3][10].item<double>(), std::cos(2.0), 1e-6);
  EXPECT_TRUE(torch::allclose(pe3, fixture("sincos_3d_2x3x4x12_t100"), 1e-5, 1e-5));
  AddFixedSinCosPositionEmbedding add;
  auto x = torch::randn({2, 3, 4, 8});
  EXPECT_TRUE(torch::allclose(add(x), x + pe, 1e-6, 1e-6));
  EXPECT_CONTAINS(testing::error_of([] { get_fixed_sincos_position_embedding({1, 2, 2, 6}); }), "multiple of 4");
  EXPECT_CONTAINS(testing::error_of([] { get_fixed_sincos_position_embedding({1, 2, 6}); }), "rank");
}

// Scenic's construction, re-done here step by step with its tile/slice/reshape trick
// (relative_attn_bias and the factorization loop of RelativeAttentionBias.__call__).
torch::Tensor scenic_relative_bias(const std::vector<torch::Tensor>& params, const std::vector<int64_t>& shape) {
  int64_t length = 1;
  for (auto l : shape) length *= l;
  const int64_t heads = params[0].size(0);
  int64_t tile = 1;
  torch::Tensor total = torch::zeros({heads, length, length});
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t l = shape[i];
    int64_t num_rel = 2 * l;
    auto rb = params[i].repeat({1, l}).slice(1, 0, l * (num_rel - 1)).reshape({heads, l, num_rel - 1});
    rb = rb.slice(2, num_rel - 1 - l);  // [heads, l, l]
    const int64_t repeat = length / (tile * l);
    if (repeat > 1) {
      rb = rb.unsqueeze(2).unsqueeze(4).repeat({1, tile, repeat, tile, repeat}).reshape({heads, length, length});
    } else if (tile > 1) {
      rb = rb.repeat({1, tile, tile});
    }
    tile *= l;
    total = total + rb;
  }
  return total;
}

TEST(RelativeAttentionBias, HandComputedOneAxis) {
  RelativeAttentionBias rel(1, std::vector<int64_t>{3});
  auto params = rel->named_parameters();
  ASSERT_EQ(params.size(), 1u);
  ASSERT_EQ(params["bias_0"].sizes(), (std::vector<int64_t>{1, 6}));  // [heads, 2 l]
  EXPECT_EQ(params["bias_0"].abs().sum().item<double>(), 0.0);       // zeros init
  {
    torch::NoGradGuard no_grad;
    params["bias_0"].copy_(torch::tensor({{10.f, 11.f, 12.f, 13.f, 14.f, 15.f}}));
  }
  // bias[q, k] = p[k - q + 2]: row q = 0 -> p2 p3 p4, q = 1 -> p1 p2 p3, q = 2 -> p0 p1 p2.
  auto expected = torch::tensor({{12.f, 13.f, 14.f}, {11.f, 12.f, 13.f}, {10.f, 11.f, 12.f}}).unsqueeze(0);
  EXPECT_TRUE(torch::equal(rel->forward(), expected));
}

TEST(RelativeAttentionBias, FactorizedOverAxesMatchesScenicConstruction) {
  // 2-D (2, 3), 2 heads: bias_0[h, j] = 10 j + 1000 h, bias_1[h, j] = j + 1000 h, so
  // bias[h, q, k] = 10 (dr + 1) + (dc + 2) + 2000 h with dr = k_r - q_r, dc = k_c - q_c.
  RelativeAttentionBias rel(2, std::vector<int64_t>{2, 3});
  auto params = rel->named_parameters();
  ASSERT_EQ(params["bias_0"].sizes(), (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(params["bias_1"].sizes(), (std::vector<int64_t>{2, 6}));
  {
    torch::NoGradGuard no_grad;
    params["bias_0"].copy_(torch::arange(4).mul(10).unsqueeze(0) + torch::tensor({{0}, {1000}}));
    params["bias_1"].copy_(torch::arange(6).unsqueeze(0) + torch::tensor({{0}, {1000}}));
  }
  auto b = rel->forward();
  ASSERT_EQ(b.sizes(), (std::vector<int64_t>{2, 6, 6}));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t q = 0; q < 6; ++q)
      for (int64_t k = 0; k < 6; ++k) {
        const int64_t dr = k / 3 - q / 3, dc = k % 3 - q % 3;
        EXPECT_EQ(b[h][q][k].item<double>(), 10 * (dr + 1) + (dc + 2) + 2000 * h) << h << q << k;
      }
  // e.g. q = (0, 0), k = (1, 2): 10 * 2 + 4 = 24.
  EXPECT_EQ(b[0][0][5].item<double>(), 24.0);
  // 3-D with random parameters against Scenic's tile/reshape construction.
  torch::manual_seed(2);
  RelativeAttentionBias rel3(3, std::vector<int64_t>{2, 3, 4}, normal_posemb_init(1.0));
  auto p3 = rel3->named_parameters();
  auto ref = scenic_relative_bias({p3["bias_0"], p3["bias_1"], p3["bias_2"]}, {2, 3, 4});
  EXPECT_TRUE(torch::allclose(rel3->forward(), ref, 1e-5, 1e-5));
  // Axes of length 1 get no parameter.
  RelativeAttentionBias rel1(2, std::vector<int64_t>{1, 4});
  EXPECT_EQ(rel1->named_parameters().size(), 1u);
  EXPECT_TRUE(rel1->named_parameters().contains("bias_1"));
  EXPECT_EQ(rel1->forward().sizes(), (std::vector<int64_t>{2, 4, 4}));
}

TEST(ResizePosemb, IdentityHandComputedAndScipyZoom) {
  auto posemb = torch::randn({1, 1 + 9, 2});
  EXPECT_TRUE(torch::equal(resize_posemb(posemb, {3, 3}, true), posemb));
  // 2x2 -> 4x4, corners aligned: the grid [[0, 3], [6, 9]] (value 6 r + 3 c) is sampled at
  // r, c in {0, 1/3, 2/3, 1}, so output (i, j) = 6 i / 3 + 3 j / 3 = 2 i + j.
  auto small = torch::tensor({-7.f, 0.f, 3.f, 6.f, 9.f}).view({1, 5, 1});  // class token -7
  auto big = resize_posemb(small, {4, 4}, /*has_class_token=*/true);
  ASSERT_EQ(big.sizes(), (std::vector<int64_t>{1, 17, 1}));
  EXPECT_EQ(big[0][0][0].item<double>(), -7.0);  // class token kept
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_NEAR(big[0][1 + 4 * i + j][0].item<double>(), 2.0 * i + j, 1e-5);
  // Against scipy.ndimage.zoom(order=1), what Scenic's ViT loader calls.
  auto cls = torch::tensor({0.5f, -0.5f}).view({1, 1, 2});
  auto with_cls = torch::cat({cls, fixture("grid_3x3").reshape({1, 9, 2})}, 1);
  auto r = resize_posemb(with_cls, {5, 5}, true);
  EXPECT_TRUE(torch::equal(r.slice(1, 0, 1), cls));
  EXPECT_TRUE(torch::allclose(r.slice(1, 1), fixture("zoom_3x3_to_5x5").reshape({1, 25, 2}), 1e-5, 1e-5));
  auto no_cls = resize_posemb(fixture("grid_4x4").reshape({1, 16, 2}), {2, 3}, false);
  EXPECT_TRUE(torch::allclose(no_cls, fixture("zoom_4x4_to_2x3").reshape({1, 6, 2}), 1e-5, 1e-5));
  // Non-square old grids need old_grid.
  EXPECT_CONTAINS(testing::error_of([] { resize_posemb(torch::zeros({1, 7, 2}), {2, 2}, true); }), "old_grid");
  EXPECT_EQ(resize_posemb(torch::zeros({1, 6, 2}), {3, 4}, false, std::array<int64_t, 2>{2, 3}).sizes(),
            (std::vector<int64_t>{1, 12, 2}));
}

}  // namespace
}  // namespace scenic::model
