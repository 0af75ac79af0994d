// Tests for ViT (Scenic's projects/baselines/vit.py, inventory §8.1): published
// parameter counts, Flax parameter names, a forward pass recomputed by hand from the
// network's own weights for every classifier, train/eval behaviour and config errors.
#include "scenic/projects/baselines/vit.h"
#include "scenic/model_lib/layers/patch_embedding.h"
#include "scenic/model_lib/layers/position_embeddings.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <torch/torch.h>

#include <set>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"

namespace scenic::baselines {
namespace {

using scenic::testing::error_of;

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

ViTOptions variant(int64_t hidden, int64_t mlp, int64_t heads, int64_t layers) {
  ViTOptions o;
  o.patch_size = {16, 16};
  o.input_shape = {-1, 3, 224, 224};
  o.num_classes = 1000;
  o.classifier = "token";
  o.hidden_size = hidden;
  o.mlp_dim = mlp;
  o.num_heads = heads;
  o.num_layers = layers;
  return o;
}

// Published counts (ViT paper / timm / big_vision) for 224x224, 1000 classes, token
// classifier, no representation layer. By hand for B/16 (D = 768, M = 3072, N = 196 + 1):
//   embedding 16*16*3*768 + 768 = 590,592; cls 768; pos_embedding 197*768 = 151,296;
//   per block: 2 LayerNorms 4*768 = 3,072; q/k/v/out 4*(768*768 + 768) = 2,362,368;
//              MLP 768*3072 + 3072 + 3072*768 + 768 = 4,722,432  -> 7,087,872 x 12 = 85,054,464;
//   encoder_norm 1,536; head 768*1000 + 1000 = 769,000. Total 86,567,656.
TEST(ViT, ParameterCountTi16) {
  ViT vit(variant(192, 768, 3, 12));
  EXPECT_EQ(count_params(vit), 5'717'416);
}

TEST(ViT, ParameterCountS16) {
  ViT vit(variant(384, 1536, 6, 12));
  EXPECT_EQ(count_params(vit), 22'050'664);
}

TEST(ViT, ParameterCountB16) {
  ViT vit(variant(768, 3072, 12, 12));
  EXPECT_EQ(count_params(vit), 86'567'656);
}

TEST(ViT, ParameterCountWithRepresentationAndGap) {
  // Ti/16 with a 192-wide pre_logits (+192*192 + 192 = 37,056) and gap (no cls, one
  // fewer position: -192 - 192 = -384).
  auto o = variant(192, 768, 3, 12);
  o.representation_size = 192;
  o.classifier = "gap";
  ViT vit(o);
  EXPECT_EQ(count_params(vit), 5'717'416 + 37'056 - 384);
}

// A tiny ViT on non-square 1x12x8 images with (4, 2) patches: a 3 x 4 grid of tokens.
ViTOptions tiny(const std::string& classifier, std::optional<int64_t> representation = std::nullopt) {
  ViTOptions o;
  o.patch_size = {4, 2};
  o.input_shape = {-1, 1, 12, 8};
  o.num_classes = 5;
  o.hidden_size = 16;
  o.mlp_dim = 32;
  o.num_heads = 2;
  o.num_layers = 2;
  o.classifier = classifier;
  o.representation_size = representation;
  o.dropout_rate = 0.0;
  o.attention_dropout_rate = 0.0;
  return o;
}

// Replaces the zero/one initial values (cls, LayerNorm scales and biases, the zero head)
// with random ones so that a wiring mistake shows in the output.
void randomize(ViT& vit) {
  torch::NoGradGuard no_grad;
  for (auto& p : vit.named_parameters()) {
    const auto& name = p.key();
    if (name == "cls" || name.find("LayerNorm") != std::string::npos ||
        name.find("encoder_norm") != std::string::npos || name.find("output_projection") != std::string::npos ||
        name.ends_with("bias"))
      p.value().normal_(0.0, 0.5);
  }
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::nn::LayerNorm& ln) {
  auto mean = x.mean(-1, true);
  auto var = (x - mean).pow(2).mean(-1, true);  // biased, as Flax
  return (x - mean) / torch::sqrt(var + 1e-6) * ln->weight + ln->bias;
}

// The ViT forward written out by hand. Patch embedding as a matmul on explicitly
// extracted patches in row-major grid order (Flax reshapes NHWC [B, gh, gw, D] to
// [B, gh*gw, D]); the attention and MLP sub-layers are tested in attention_layers_test.
torch::Tensor manual_vit(ViT& vit, const ViTOptions& o, const torch::Tensor& img) {
  const int64_t b = img.size(0), c = img.size(1), ph = o.patch_size[0], pw = o.patch_size[1];
  const int64_t gh = img.size(2) / ph, gw = img.size(3) / pw;
  auto patches = img.reshape({b, c, gh, ph, gw, pw}).permute({0, 2, 4, 1, 3, 5}).reshape({b, gh * gw, c * ph * pw});
  auto w = vit.embedding->weight.reshape({o.hidden_size, c * ph * pw});
  auto x = torch::matmul(patches, w.t()) + vit.embedding->bias;  // [B, N, D]
  if (o.classifier == "token") x = torch::cat({vit.cls.expand({b, 1, o.hidden_size}), x}, 1);
  x = x + vit.Transformer->posembed_input->pos_embedding;
  for (auto& blk : vit.Transformer->blocks) {
    auto y = blk->MultiHeadDotProductAttention_1->forward(layer_norm(x, blk->LayerNorm_0));
    x = x + y;
    x = x + blk->MlpBlock_3->forward(layer_norm(x, blk->LayerNorm_2));
  }
  x = layer_norm(x, vit.Transformer->encoder_norm);
  if (o.classifier == "token") x = x.select(1, 0);
  else if (o.classifier == "gap") x = x.mean(1);
  else if (o.classifier == "gmp") x = x.amax(1);
  else x = x.sum(1);
  if (o.representation_size) x = torch::tanh(torch::matmul(x, vit.pre_logits->weight.t()) + vit.pre_logits->bias);
  return torch::matmul(x, vit.output_projection->weight.t()) + vit.output_projection->bias;
}

TEST(ViT, ForwardMatchesManualComputationForEveryClassifier) {
  for (const std::string classifier : {"token", "gap", "gmp", "gsp"}) {
    for (std::optional<int64_t> rep : {std::optional<int64_t>{}, std::optional<int64_t>{7}}) {
      SCOPED_TRACE(classifier + (rep ? " with representation" : ""));
      torch::manual_seed(0);
      auto o = tiny(classifier, rep);
      ViT vit(o);
      randomize(vit);
      vit.eval();
      torch::NoGradGuard no_grad;
      auto img = torch::randn({3, 1, 12, 8});
      auto y = vit.forward(img);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5}));
      auto expected = manual_vit(vit, o, img);
      EXPECT_TRUE(torch::allclose(y, expected, 1e-4, 1e-4)) << (y - expected).abs().max();
      // Examples are independent: the forward of one image equals its row of the batch.
      EXPECT_TRUE(torch::allclose(vit.forward(img.slice(0, 1, 2)), y.slice(0, 1, 2), 1e-5, 1e-5));
      if (rep) {
        EXPECT_EQ(vit.pre_logits->weight.sizes(), (std::vector<int64_t>{7, 16}));
        EXPECT_EQ(vit.output_projection->weight.sizes(), (std::vector<int64_t>{5, 7}));
      } else {
        EXPECT_TRUE(vit.pre_logits.is_empty());
      }
      const int64_t tokens = 12 + (classifier == "token" ? 1 : 0);
      EXPECT_EQ(vit.Transformer->posembed_input->pos_embedding.sizes(),
                (std::vector<int64_t>{1, tokens, 16}));
    }
  }
}

TEST(ViT, HeadIsZeroInitialised) {
  torch::manual_seed(0);
  for (std::optional<int64_t> rep : {std::optional<int64_t>{}, std::optional<int64_t>{7}}) {
    ViT vit(tiny("token", rep));
    auto y = vit.forward(torch::randn({4, 1, 12, 8}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{4, 5}));
    EXPECT_EQ(y.abs().max().item<double>(), 0.0);
  }
  // cls starts at zero; the position embedding is N(0, 0.02).
  ViT vit(variant(192, 768, 3, 1));
  EXPECT_EQ(vit.cls.abs().max().item<double>(), 0.0);
  auto pos = vit.Transformer->posembed_input->pos_embedding;
  EXPECT_NEAR(pos.std().item<double>(), 0.02, 0.001);
}

TEST(ViT, ParameterNamesFollowFlax) {
  auto o = tiny("token", 7);
  o.num_layers = 1;
  ViT vit(o);
  std::set<std::string> names;
  for (const auto& p : vit.named_parameters()) names.insert(p.key());
  const std::set<std::string> expected{
      "cls",
      "embedding.weight",
      "embedding.bias",
      "Transformer.posembed_input.pos_embedding",
      "Transformer.encoderblock_0.LayerNorm_0.weight",
      "Transformer.encoderblock_0.LayerNorm_0.bias",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.query.weight",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.query.bias",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.key.weight",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.key.bias",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.value.weight",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.value.bias",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.out.weight",
      "Transformer.encoderblock_0.MultiHeadDotProductAttention_1.out.bias",
      "Transformer.encoderblock_0.LayerNorm_2.weight",
      "Transformer.encoderblock_0.LayerNorm_2.bias",
      "Transformer.encoderblock_0.MlpBlock_3.Dense_0.weight",
      "Transformer.encoderblock_0.MlpBlock_3.Dense_0.bias",
      "Transformer.encoderblock_0.MlpBlock_3.Dense_1.weight",
      "Transformer.encoderblock_0.MlpBlock_3.Dense_1.bias",
      "Transformer.encoder_norm.weight",
      "Transformer.encoder_norm.bias",
      "pre_logits.weight",
      "pre_logits.bias",
      "output_projection.weight",
      "output_projection.bias",
  };
  EXPECT_EQ(names, expected);
  // The B/16 tree has encoderblock_0 .. encoderblock_11.
  ViT b16(variant(768, 3072, 12, 12));
  auto params = b16.named_parameters();
  EXPECT_TRUE(params.contains("Transformer.encoderblock_11.MlpBlock_3.Dense_1.bias"));
  EXPECT_FALSE(params.contains("Transformer.encoderblock_12.LayerNorm_0.weight"));
  EXPECT_EQ(params["embedding.weight"].sizes(), (std::vector<int64_t>{768, 3, 16, 16}));
  EXPECT_EQ(params["Transformer.posembed_input.pos_embedding"].sizes(), (std::vector<int64_t>{1, 197, 768}));
}

TEST(ViT, NoPositionEmbedding) {
  auto o = tiny("gap");
  o.positional_embedding = "none";
  ViT vit(o);
  EXPECT_TRUE(vit.Transformer->posembed_input.is_empty());
  for (const auto& p : vit.named_parameters())
    EXPECT_EQ(p.key().find("posembed"), std::string::npos) << p.key();
  EXPECT_EQ(vit.forward(torch::randn({2, 1, 12, 8})).sizes(), (std::vector<int64_t>{2, 5}));
}

TEST(ViT, EvalIsDeterministicTrainDropoutIsNot) {
  torch::manual_seed(0);
  auto o = tiny("token");
  o.dropout_rate = 0.5;
  o.attention_dropout_rate = 0.5;
  ViT vit(o);
  randomize(vit);  // a non-zero head, so that the logits depend on the input
  auto img = torch::randn({2, 1, 12, 8});
  torch::NoGradGuard no_grad;
  vit.eval();
  auto e1 = vit.forward(img), e2 = vit.forward(img);
  EXPECT_TRUE(torch::equal(e1, e2));
  EXPECT_GT(e1.abs().max().item<double>(), 0.0);
  vit.train();
  auto t1 = vit.forward(img), t2 = vit.forward(img);
  EXPECT_FALSE(torch::allclose(t1, e1, 1e-4, 1e-4));
  EXPECT_FALSE(torch::allclose(t1, t2, 1e-4, 1e-4));
  // Back in eval mode the result is the eval one again.
  vit.eval();
  EXPECT_TRUE(torch::equal(vit.forward(img), e1));
}

TEST(ViT, StochasticDepthOnlyInTraining) {
  torch::manual_seed(0);
  auto o = tiny("gap");
  o.stochastic_depth = 0.5;
  ViT vit(o);
  randomize(vit);
  auto img = torch::randn({8, 1, 12, 8});
  torch::NoGradGuard no_grad;
  vit.eval();
  auto e = vit.forward(img);
  EXPECT_TRUE(torch::equal(vit.forward(img), e));
  vit.train();  // dropout rates are 0: only stochastic depth makes training differ
  EXPECT_FALSE(torch::allclose(vit.forward(img), e, 1e-4, 1e-4));
}

TEST(ViT, StochasticDepthRateOneDropsTheLastBlock) {
  // Rate for block i = i / (L - 1) * stochastic_depth: with 1.0 the last block's
  // branches are always dropped (the output must stay finite), the first never.
  torch::manual_seed(0);
  auto o = tiny("gap");
  o.stochastic_depth = 1.0;
  ViT vit(o);
  randomize(vit);
  vit.train();
  torch::NoGradGuard no_grad;
  auto y = vit.forward(torch::randn({4, 1, 12, 8}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << y;
}

common::ConfigDict model_config(const std::string& extra) {
  auto cfg = common::ConfigDict::from_yaml_string(
      "model:\n"
      "  patches: {size: [4, 4]}\n"
      "  hidden_size: 16\n"
      "  mlp_dim: 32\n"
      "  num_heads: 2\n"
      "  num_layers: 1\n" +
      extra);
  return cfg.sub("model");
}

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

TEST(ViTOptions, FromConfigReadsKeysAndDefaults) {
  auto o = ViTOptions::from_config(
      model_config("  representation_size: 8\n  classifier: gmp\n  stochastic_depth: 0.1\n"), mnist_meta());
  EXPECT_EQ(o.patch_size, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(o.hidden_size, 16);
  EXPECT_EQ(o.mlp_dim, 32);
  EXPECT_EQ(o.num_heads, 2);
  EXPECT_EQ(o.num_layers, 1);
  EXPECT_EQ(o.representation_size, 8);
  EXPECT_EQ(o.classifier, "gmp");
  EXPECT_EQ(o.positional_embedding, "learned_1d");
  EXPECT_DOUBLE_EQ(o.dropout_rate, 0.1);
  EXPECT_DOUBLE_EQ(o.attention_dropout_rate, 0.1);
  EXPECT_DOUBLE_EQ(o.stochastic_depth, 0.1);
  EXPECT_EQ(o.num_classes, 10);
  EXPECT_EQ(o.input_shape, (std::vector<int64_t>{-1, 1, 28, 28}));
  ViT vit(o);
  EXPECT_EQ(vit.forward(torch::randn({2, 1, 28, 28})).sizes(), (std::vector<int64_t>{2, 10}));
  // A single patch size means a square patch; representation_size: null means none.
  auto sq = model_config("  representation_size: null\n");
  sq.apply_override("patches.size", "[7]");
  auto o2 = ViTOptions::from_config(sq, mnist_meta());
  EXPECT_EQ(o2.patch_size, (std::vector<int64_t>{7, 7}));
  EXPECT_FALSE(o2.representation_size.has_value());
  EXPECT_EQ(o2.classifier, "token");
}

TEST(ViTOptions, BadConfigsThrowNamingTheKey) {
  auto bad_patch = model_config("");
  bad_patch.apply_override("patches.size", "[5, 5]");  // 28 % 5 != 0
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(bad_patch, mnist_meta()); }), "patches.size");
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(model_config("  classifier: cls_token\n"), mnist_meta()); }),
                  "model.classifier");
  EXPECT_CONTAINS(error_of([&] {
                    ViTOptions::from_config(model_config("  positional_embedding: sinusoidal_3d\n"), mnist_meta());
                  }),
                  "model.positional_embedding");
  auto three = model_config("");
  three.apply_override("patches.size", "[4, 4, 4]");
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(three, mnist_meta()); }), "model.patches.size");
  auto flat = mnist_meta();
  flat.input_shape = {-1, 784};
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(model_config(""), flat); }), "[-1, C, H, W]");
  // A missing required key names its full path.
  auto missing = common::ConfigDict::from_yaml_string("model:\n  patches: {size: [4, 4]}\n").sub("model");
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(missing, mnist_meta()); }), "model.hidden_size");
  // Heads that do not divide the width.
  auto o = tiny("token");
  o.num_heads = 3;
  EXPECT_THROW(ViT{o}, scenic::Error);
}

}  // namespace
}  // namespace scenic::baselines

namespace scenic::baselines {
namespace {

TEST(ViTOptions, VariantFillsTheSizesScenicUses) {
  dataset::MetaData meta;
  meta.num_classes = 1000;
  meta.input_shape = {-1, 3, 224, 224};
  auto b16 = common::ConfigDict::from_yaml_string("model: {variant: B/16, dropout_rate: 0.0}\n").sub("model");
  auto o = ViTOptions::from_config(b16, meta);
  EXPECT_EQ(o.patch_size, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(count_params(ViT(o)), 86'567'656);
  // Explicit keys win over the variant's.
  auto custom = common::ConfigDict::from_yaml_string("model: {variant: Ti/32, num_layers: 2}\n").sub("model");
  auto c = ViTOptions::from_config(custom, meta);
  EXPECT_EQ(c.patch_size, (std::vector<int64_t>{32, 32}));
  EXPECT_EQ(c.hidden_size, 192);
  EXPECT_EQ(c.num_layers, 2);
  auto bad = common::ConfigDict::from_yaml_string("model: {variant: X/16}\n").sub("model");
  EXPECT_CONTAINS(error_of([&] { ViTOptions::from_config(bad, meta); }), "model.variant");
}

// With no blocks the encoder is LayerNorm(tokens + table): the fixed tables can be read
// back through a zero input (embedding weights zeroed, so tokens are 0).
torch::Tensor encoded_zero_input(ViTOptions o) {
  o.num_layers = 0;
  ViT vit(o);
  vit.eval();
  torch::NoGradGuard no_grad;
  vit.embedding->weight.zero_();
  vit.embedding->bias.zero_();
  auto tokens = torch::zeros({1, (o.input_shape[2] / o.patch_size[0]) * (o.input_shape[3] / o.patch_size[1]),
                              o.hidden_size});
  return vit.Transformer(tokens);
}

TEST(ViT, SinusoidalPositionEmbeddingsAreFixedTables) {
  auto o = tiny("gap");
  o.patch_size = {4, 4};
  o.input_shape = {-1, 1, 16, 16};  // 4x4 patches -> a 4x4 grid, 16 tokens
  o.hidden_size = 8;
  o.num_heads = 2;
  for (const std::string kind : {"sinusoidal_1d", "sinusoidal_2d"}) {
    SCOPED_TRACE(kind);
    o.positional_embedding = kind;
    ViT vit(o);
    for (const auto& p : vit.named_parameters()) EXPECT_EQ(p.key().find("posembed"), std::string::npos) << p.key();
    auto table = kind == "sinusoidal_1d" ? model::sinusoidal_init(16, 8)
                                         : model::get_fixed_sincos_position_embedding({1, 4, 4, 8}).reshape({1, 16, 8});
    auto expected = torch::layer_norm(table, {8}, {}, {}, 1e-6);
    EXPECT_TRUE(torch::allclose(encoded_zero_input(o), expected, 1e-5, 1e-6));
  }
  // pe[p, 0] = sin(p), pe[p, 1] = cos(p) for the 1-D table (frequency 1 at i = 0).
  auto t = model::sinusoidal_init(16, 8);
  EXPECT_NEAR(t[0][3][0].item<double>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(t[0][3][1].item<double>(), std::cos(3.0), 1e-6);
  // A class token makes the grid non-square, which Scenic refuses for sinusoidal_2d.
  o.classifier = "token";
  o.positional_embedding = "sinusoidal_2d";
  EXPECT_CONTAINS(error_of([&] { ViT vit(o); }), "square");
}

TEST(ViT, MapHeadPoolsWithALearnedProbe) {
  auto o = tiny("map");
  ViT vit(o);
  auto params = vit.named_parameters();
  EXPECT_EQ(params["MAPHead_0.probe"].sizes(), (std::vector<int64_t>{1, 1, o.hidden_size}));
  EXPECT_TRUE(params.contains("MAPHead_0.MultiHeadDotProductAttention_0.query.weight"));
  EXPECT_TRUE(params.contains("MAPHead_0.MlpBlock_0.Dense_1.bias"));
  vit.eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 1, 12, 8});
  // Manual: probe attends over the encoded tokens, then y + MLP(LN(y)), then the head.
  auto tokens = vit.embedding(x).flatten(2).transpose(1, 2);
  tokens = vit.Transformer(tokens);
  auto q = vit.MAPHead_0->probe.expand({2, 1, o.hidden_size});
  auto y = vit.MAPHead_0->MultiHeadDotProductAttention_0->forward(q, tokens);
  y = y + vit.MAPHead_0->MlpBlock_0->forward(vit.MAPHead_0->LayerNorm_0(y));
  torch::nn::init::normal_(vit.output_projection->weight);
  auto expected = vit.output_projection(y.select(1, 0));
  EXPECT_TRUE(torch::allclose(vit.forward(x), expected, 1e-5, 1e-6));
}

TEST(ViT, NoneClassifierPredictsPerToken) {
  auto o = tiny("none");
  ViT vit(o);
  // 12x8 input with 4x2 patches: 3x4 = 12 tokens, no class token.
  EXPECT_EQ(vit.forward(torch::randn({2, 1, 12, 8})).sizes(), (std::vector<int64_t>{2, 12, o.num_classes}));
}

// The token classifier runs the last block for the class token's row only
// (Encoder1DBlock::forward_prefix). Logits and every parameter's gradient equal those of
// the full encoder followed by the class token's row, in training with stochastic depth
// (same seed, same per-example masks) and in eval.
TEST(ViT, TokenClassifierPrunedLastBlockKeepsValuesAndGradients) {
  auto o = tiny("token", 7);
  o.num_layers = 3;
  o.stochastic_depth = 0.3;
  ViT vit(o);
  randomize(vit);
  {
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(vit.output_projection->weight);
  }
  auto img = torch::randn({3, 1, 12, 8});
  auto full = [&] {  // the whole encoder, then the class token's row
    auto x = model::embed_patches(vit.embedding, img);
    x = torch::cat({vit.cls.expand({3, 1, -1}), x}, 1);
    x = vit.Transformer->forward(x, 0).select(1, 0);
    return vit.output_projection(torch::tanh(vit.pre_logits(x)));
  };
  for (const bool train : {true, false}) {
    SCOPED_TRACE(train ? "train" : "eval");
    vit.train(train);
    const auto params = vit.parameters();
    torch::manual_seed(11);
    auto y = vit.forward(img);
    const auto got = torch::autograd::grad({y.square().sum()}, params);
    torch::manual_seed(11);
    auto expected = full();
    EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << (y - expected).abs().max();
    const auto want = torch::autograd::grad({expected.square().sum()}, params);
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-4, 1e-5)) << "gradient " << i << ": "
                                                                << (got[i] - want[i]).abs().max();
  }
  // The pruned encoder returns the class token's row alone.
  EXPECT_EQ(vit.Transformer->forward(torch::randn({3, 13, 16}), 1).sizes(), (std::vector<int64_t>{3, 1, 16}));
}

}  // namespace
}  // namespace scenic::baselines
