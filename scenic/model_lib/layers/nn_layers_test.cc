// Tests for the nn_layers modules (Scenic's nn_layers.py, inventory §3.2): StochasticDepth,
// the Residual variants against their formulas written here with plain matmuls, and
// SqueezeAndExcite / Affine on hand-set weights.
#include "scenic/model_lib/layers/nn_layers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// x W^T + b with the layer's own weights, independent of Linear::forward.
torch::Tensor dense(const torch::nn::Linear& l, const torch::Tensor& x) {
  auto y = torch::matmul(x, l->weight.t());
  return l->bias.defined() ? y + l->bias : y;
}

void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, 0.7);
}

TEST(StochasticDepthModule, FollowsTrainingMode) {
  torch::manual_seed(0);
  StochasticDepth sd(0.5);
  auto x = torch::ones({1000, 4});
  sd->eval();
  EXPECT_TRUE(torch::equal(sd(x), x));
  sd->train();
  auto y = sd(x);
  // Whole examples are dropped (rows all 0) or kept and scaled by 1 / (1 - 0.5) = 2.
  auto row_min = std::get<0>(y.min(1)), row_max = std::get<0>(y.max(1));
  EXPECT_TRUE(torch::equal(row_min, row_max));
  EXPECT_TRUE(((row_min == 0) | (row_min == 2)).all().item<bool>());
  const double kept = (row_min == 2).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.5, 0.06);  // Binomial(1000, 0.5): sd 0.016
  EXPECT_TRUE(sd->parameters().empty());
  EXPECT_DOUBLE_EQ(StochasticDepth(1.0)(x).abs().sum().item<double>(), 0.0);
}

TEST(Residual, ParameterNamesAndInitialValues) {
  auto names = [](Residual& r) {
    std::vector<std::string> out;
    for (auto& p : r->named_parameters()) out.push_back(p.key());
    return out;
  };
  Residual add(4, "add");
  EXPECT_TRUE(add->parameters().empty());
  Residual rezero(4, "rezero");
  EXPECT_EQ(names(rezero), std::vector<std::string>{"rezero_alpha"});
  EXPECT_EQ(rezero->rezero_alpha.item<float>(), 0.0f);
  Residual highway(4, "highway");
  EXPECT_EQ(names(highway), (std::vector<std::string>{"Dense_0.weight", "Dense_0.bias"}));
  EXPECT_TRUE(torch::equal(highway->dense[0]->bias, torch::full({4}, -10.0)));
  Residual sigtanh(4, "sigtanh");
  EXPECT_EQ(names(sigtanh), (std::vector<std::string>{"Dense_0.weight", "Dense_0.bias", "Dense_1.weight"}));
  Residual gated(4, "gated");
  auto params = gated->named_parameters();
  EXPECT_EQ(params.size(), 7u);  // b_g and Dense_0..Dense_5, none with a bias
  for (int i = 0; i < 6; ++i) {
    const auto w = "Dense_" + std::to_string(i) + ".weight";
    ASSERT_TRUE(params.contains(w)) << w;
    EXPECT_EQ(params[w].abs().sum().item<float>(), 0.0f) << w;  // zero kernels
  }
  EXPECT_TRUE(torch::equal(params["b_g"], torch::full({4}, 10.0)));
}

TEST(Residual, StartsNearIdentityOnX) {
  // With zero kernels: highway g = s := sigmoid(-10); sigtanh adds sigmoid(-10) * tanh(0) = 0;
  // gated r = 1/2, z = sigmoid(0 + 0 - 10) = s, h = tanh(0) = 0, so (1 - s) x.
  torch::manual_seed(1);
  auto x = torch::randn({2, 3, 4}), y = torch::randn({2, 3, 4});
  const double s = sigmoid(-10.0);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(Residual(4, "add")(x, y), x + y));
  EXPECT_TRUE(torch::equal(Residual(4, "rezero")(x, y), x));
  EXPECT_TRUE(torch::allclose(Residual(4, "highway")(x, y), (1 - s) * x + s * y, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(Residual(4, "sigtanh")(x, y), x));
  EXPECT_TRUE(torch::allclose(Residual(4, "gated")(x, y), (1 - s) * x, 1e-6, 1e-7));
}

TEST(Residual, VariantsMatchTheirFormulasWithRandomWeights) {
  torch::manual_seed(2);
  auto x = torch::randn({2, 3, 4}), y = torch::randn({2, 3, 4});
  torch::NoGradGuard no_grad;
  {
    Residual r(4, "highway");
    randomize(*r);
    auto g = torch::sigmoid(dense(r->dense[0], x));
    EXPECT_TRUE(torch::allclose(r(x, y), (1 - g) * x + g * y, 1e-5, 1e-6));
  }
  {
    Residual r(4, "rezero");
    r->rezero_alpha.fill_(0.3);
    EXPECT_TRUE(torch::allclose(r(x, y), x + 0.3 * y));
  }
  {
    Residual r(4, "sigtanh");
    randomize(*r);
    auto expected = x + torch::sigmoid(dense(r->dense[0], y)) * torch::tanh(dense(r->dense[1], y));
    EXPECT_TRUE(torch::allclose(r(x, y), expected, 1e-5, 1e-6));
  }
  {
    Residual r(4, "gated");
    randomize(*r);
    const auto& d = r->dense;  // W_r, U_r, W_z, U_z, W_g, U_g (arXiv 1910.06764 eq. 2-5)
    auto rr = torch::sigmoid(dense(d[0], x) + dense(d[1], y));
    auto z = torch::sigmoid(dense(d[2], x) + dense(d[3], y) - r->b_g);
    auto h = torch::tanh(dense(d[4], y) + dense(d[5], rr * x));
    EXPECT_TRUE(torch::allclose(r(x, y), (1 - z) * x + z * h, 1e-5, 1e-6));
  }
}

TEST(Residual, BadInputsThrow) {
  EXPECT_CONTAINS(testing::error_of([] { Residual(4, "concat"); }), "Residual type 'concat' is not defined");
  Residual r(4, "highway");
  EXPECT_CONTAINS(testing::error_of([&] { r(torch::zeros({2, 4}), torch::zeros({2, 3})); }), "same shape");
  EXPECT_CONTAINS(testing::error_of([&] { r(torch::zeros({2, 3}), torch::zeros({2, 3})); }), "[..., 4]");
}

TEST(SqueezeAndExcite, HandSetWeights) {
  SqueezeAndExcite se(4);  // hidden = 4 / 4 = 1
  auto params = se->named_parameters();
  EXPECT_EQ(params["Dense_0.weight"].sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(params["Dense_1.weight"].sizes(), (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(params["Dense_0.bias"].abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(SqueezeAndExcite(8)->Dense_0->weight.sizes(), (std::vector<int64_t>{2, 8}));
  torch::NoGradGuard no_grad;
  se->Dense_0->weight.copy_(torch::tensor({{0.5f, 0.0f, 0.0f, 0.25f}}));
  se->Dense_0->bias.fill_(-1.0);
  se->Dense_1->weight.copy_(torch::tensor({{2.0f}, {-2.0f}, {0.0f}, {4.0f}}));
  se->Dense_1->bias.copy_(torch::tensor({0.0f, 0.0f, 1.0f, -2.0f}));
  // Example 0: channel c holds [[c, c + 2], [c + 1, c + 1]], mean c + 1 -> means (1, 2, 3, 4).
  // Dense_0: 0.5 * 1 + 0.25 * 4 - 1 = 0.5, relu 0.5; Dense_1: (1, -1, 1, 0) -> sigmoid.
  // Example 1: the negated image, means (-1, ..., -4): Dense_0 = -0.5 - 1 - 1 < 0, relu 0,
  // so the gates are sigmoid(bias) = sigmoid(0, 0, 1, -2).
  auto x = torch::zeros({2, 4, 2, 2});
  for (int c = 0; c < 4; ++c) x[0][c] = torch::tensor({{c + 0.0f, c + 2.0f}, {c + 1.0f, c + 1.0f}});
  x[1] = -x[0];
  auto out = se(x);
  ASSERT_EQ(out.sizes(), x.sizes());
  const double g0[4] = {sigmoid(1), sigmoid(-1), sigmoid(1), sigmoid(0)};
  const double g1[4] = {sigmoid(0), sigmoid(0), sigmoid(1), sigmoid(-2)};
  for (int c = 0; c < 4; ++c) {
    EXPECT_TRUE(torch::allclose(out[0][c], x[0][c] * g0[c], 1e-6, 1e-6)) << c;
    EXPECT_TRUE(torch::allclose(out[1][c], x[1][c] * g1[c], 1e-6, 1e-6)) << c;
  }
  EXPECT_CONTAINS(testing::error_of([&] { se(torch::zeros({2, 4, 3})); }), "NCHW");
  EXPECT_CONTAINS(testing::error_of([] { SqueezeAndExcite(3, 4); }), "at least 1");
}

TEST(Affine, ScaleAndBiasPerChannel) {
  Affine a(3);
  EXPECT_TRUE(torch::equal(a->scale, torch::ones({3})));
  EXPECT_TRUE(torch::equal(a->bias, torch::zeros({3})));
  torch::NoGradGuard no_grad;
  a->scale.copy_(torch::tensor({1.0f, 2.0f, 3.0f}));
  a->bias.copy_(torch::tensor({0.5f, 0.0f, -1.0f}));
  // Last axis: [[1, 1, 1], [2, -1, 0]] -> [[1.5, 2, 2], [2.5, -2, -1]].
  auto y = a(torch::tensor({{1.0f, 1.0f, 1.0f}, {2.0f, -1.0f, 0.0f}}));
  EXPECT_TRUE(torch::equal(y, torch::tensor({{1.5f, 2.0f, 2.0f}, {2.5f, -2.0f, -1.0f}})));

  // NCHW channel axis: channel c of ones becomes scale[c] + bias[c] = 1.5, 2, 2.
  AffineOptions o;
  o.channel_dim = 1;
  Affine img(3, o);
  img->scale.copy_(a->scale);
  img->bias.copy_(a->bias);
  auto z = img(torch::ones({2, 3, 2, 2}));
  EXPECT_TRUE(torch::equal(z[1][2], torch::full({2, 2}, 2.0f)));
  EXPECT_TRUE(torch::equal(z[0][0], torch::full({2, 2}, 1.5f)));

  // Layer scale: no bias, a small constant scale.
  AffineOptions ls;
  ls.use_bias = false;
  ls.scale_init = 0.1;
  Affine layer_scale(3, ls);
  EXPECT_EQ(layer_scale->named_parameters().size(), 1u);
  EXPECT_TRUE(torch::allclose(layer_scale(torch::full({4, 3}, 5.0f)), torch::full({4, 3}, 0.5f)));
  EXPECT_CONTAINS(testing::error_of([&] { a(torch::ones({2, 4})); }), "must have 3 channels");
}

}  // namespace
}  // namespace scenic::model
