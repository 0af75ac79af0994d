// Tests for Encoder1DBlock (the pre-LN block of Scenic's vit.py): it must equal its parts
// composed by hand, with the layer norms written out (Flax's epsilon 1e-6).
#include "scenic/model_lib/layers/transformer_layers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

Encoder1DBlockOptions small_options() {
  Encoder1DBlockOptions o;
  o.mlp_dim = 16;
  o.num_heads = 2;
  o.dropout_rate = 0.0;
  o.attention_dropout_rate = 0.0;
  return o;
}

// (x - mean) / sqrt(var + 1e-6) * gamma + beta over the last dim (biased variance).
torch::Tensor manual_layer_norm(const torch::Tensor& x, const torch::nn::LayerNorm& ln) {
  auto mean = x.mean(-1, true);
  auto var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + 1e-6) * ln->weight + ln->bias;
}

void expect_same_gradients(const std::vector<torch::Tensor>& got, const std::vector<torch::Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-4, 1e-5)) << "gradient " << i << ": "
                                                              << (got[i] - want[i]).abs().max();
}

void randomize(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.named_parameters())
    if (p.key().ends_with("bias") || p.key().find("LayerNorm") != std::string::npos) p.value().normal_(0.0, 0.5);
}

TEST(Encoder1DBlock, FlaxParameterNames) {
  Encoder1DBlock block(8, small_options());
  auto params = block->named_parameters();
  for (const char* name :
       {"LayerNorm_0.weight", "LayerNorm_0.bias", "MultiHeadDotProductAttention_1.query.weight",
        "MultiHeadDotProductAttention_1.out.bias", "LayerNorm_2.weight", "MlpBlock_3.Dense_0.weight",
        "MlpBlock_3.Dense_1.bias"})
    EXPECT_TRUE(params.contains(name)) << name;
  // 2 LN x 2 + MHA 4 x 2 + MLP 2 x 2.
  EXPECT_EQ(params.size(), 16u);
  EXPECT_EQ(params["MlpBlock_3.Dense_0.weight"].sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_DOUBLE_EQ(block->LayerNorm_0->options.eps(), 1e-6);
  EXPECT_THROW(Encoder1DBlock(8, Encoder1DBlockOptions{}), scenic::Error);  // mlp_dim 0
}

TEST(Encoder1DBlock, EqualsItsPartsComposedByHand) {
  torch::manual_seed(0);
  auto o = small_options();
  o.dropout_rate = 0.3;  // inactive in eval
  o.stochastic_depth = 0.5;
  Encoder1DBlock block(8, o);
  randomize(*block);
  block->eval();
  // A small spread (variance ~1e-4) makes the epsilon visible: LibTorch's default 1e-5
  // changes the normalized values by ~4%; the offset 0.5 keeps float32 rounding small.
  auto x = torch::randn({2, 5, 8}) * 1e-2 + 0.5;
  torch::NoGradGuard no_grad;
  auto y = block(x);
  auto h = x + block->MultiHeadDotProductAttention_1->forward(manual_layer_norm(x, block->LayerNorm_0));
  auto expected = h + block->MlpBlock_3->forward(manual_layer_norm(h, block->LayerNorm_2));
  ASSERT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << (y - expected).abs().max();
  auto eps5 = [&](const torch::Tensor& t, const torch::nn::LayerNorm& ln) {
    return torch::layer_norm(t, {8}, ln->weight, ln->bias, 1e-5);
  };
  auto h5 = x + block->MultiHeadDotProductAttention_1->forward(eps5(x, block->LayerNorm_0));
  auto y5 = h5 + block->MlpBlock_3->forward(eps5(h5, block->LayerNorm_2));
  EXPECT_FALSE(torch::allclose(y, y5, 1e-5, 1e-5));
  // The attention arguments reach the attention: masking keys changes the output the way
  // the attention alone says.
  AttentionArgs args;
  args.attention_bias_kv = torch::zeros({2, 5});
  args.attention_bias_kv.slice(1, 3).fill_(-1e9);
  auto ym = block->forward(x, args);
  auto hm = x + block->MultiHeadDotProductAttention_1->forward(manual_layer_norm(x, block->LayerNorm_0), {}, args);
  auto expected_m = hm + block->MlpBlock_3->forward(manual_layer_norm(hm, block->LayerNorm_2));
  EXPECT_TRUE(torch::allclose(ym, expected_m, 1e-5, 1e-5)) << (ym - expected_m).abs().max();
  EXPECT_FALSE(torch::allclose(ym, y, 1e-4, 1e-4));
}

// Training with every rate 0 takes the path with the residual adds folded into the GEMMs
// (dense_add): values and the gradients of every parameter and of the input equal the
// composition of the parts.
TEST(Encoder1DBlock, FoldedResidualsKeepValuesAndGradients) {
  torch::manual_seed(2);
  Encoder1DBlock block(8, small_options());
  randomize(*block);
  block->train();
  auto x = torch::randn({3, 5, 8}, torch::requires_grad());
  auto params = block->parameters();
  params.push_back(x);
  const auto g = torch::randn({3, 5, 8});
  auto y = block(x);
  const auto got = torch::autograd::grad({y}, params, {g});
  auto h = x + block->MultiHeadDotProductAttention_1->forward(block->LayerNorm_0(x));
  auto expected = h + block->MlpBlock_3->forward(block->LayerNorm_2(h));
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << (y - expected).abs().max();
  const auto want = torch::autograd::grad({expected}, params, {g});
  expect_same_gradients(got, want);
}

TEST(Encoder1DBlock, TrainingStochasticDepthAndDropout) {
  torch::manual_seed(1);
  auto x = torch::randn({4, 3, 8});
  torch::NoGradGuard no_grad;
  // All rates 0: training equals eval.
  Encoder1DBlock plain(8, small_options());
  randomize(*plain);
  plain->eval();
  auto e = plain(x);
  plain->train();
  EXPECT_TRUE(torch::allclose(plain(x), e, 1e-6, 1e-6));
  // Stochastic depth 1 drops both residual branches of every example: the identity.
  auto o = small_options();
  o.stochastic_depth = 1.0;
  Encoder1DBlock dropped(8, o);
  randomize(*dropped);
  dropped->train();
  EXPECT_TRUE(torch::equal(dropped(x), x));
  // Dropout acts in training only.
  o = small_options();
  o.dropout_rate = 0.5;
  Encoder1DBlock drop(8, o);
  randomize(*drop);
  drop->eval();
  auto de = drop(x);
  drop->train();
  EXPECT_FALSE(torch::allclose(drop(x), de, 1e-4, 1e-4));
}

// forward_prefix(x, n) is forward(x)[:, :n] in values and in the gradients of every
// parameter and of the input (which reach every token through the keys and values): in
// eval, in training on the folded path (rates 0) and with stochastic depth (its masks are
// per example, so the same seed draws the same ones).
TEST(Encoder1DBlock, PrefixEqualsTheFullBlockSliced) {
  for (const double sd : {-1.0, 0.0, 0.4}) {  // -1: eval
    for (const int64_t n : {1, 2, 5}) {
      SCOPED_TRACE("stochastic depth " + std::to_string(sd) + ", n " + std::to_string(n));
      torch::manual_seed(5);
      auto o = small_options();
      o.stochastic_depth = std::max(sd, 0.0);
      Encoder1DBlock block(8, o);
      randomize(*block);
      if (sd < 0) block->eval();
      auto x = torch::randn({4, 5, 8}, torch::requires_grad());
      auto params = block->parameters();
      params.push_back(x);
      const auto g = torch::randn({4, n, 8});
      torch::manual_seed(9);
      auto y = block->forward_prefix(x, n);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{4, n, 8}));
      const auto got = torch::autograd::grad({y}, params, {g});
      torch::manual_seed(9);
      auto expected = block(x).narrow(1, 0, n);
      EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << (y - expected).abs().max();
      const auto want = torch::autograd::grad({expected}, params, {g});
      expect_same_gradients(got, want);
      // The input's gradient reaches the dropped rows too (through the keys and values).
      EXPECT_GT(got.back().narrow(1, n == 5 ? 0 : n, 1).abs().sum().item<double>(), 0.0);
    }
  }
}

TEST(Encoder1DBlock, PrefixRejectsABadCount) {
  Encoder1DBlock block(8, small_options());
  auto x = torch::randn({2, 3, 8});
  for (const int64_t n : {0, 4})
    EXPECT_CONTAINS(testing::error_of([&] { block->forward_prefix(x, n); }), "cannot keep " + std::to_string(n) + " tokens");
  EXPECT_CONTAINS(testing::error_of([&] { block->forward_prefix(torch::randn({8}), 1); }), "[8]");
}

}  // namespace
}  // namespace scenic::model
