// Tests for MLP-Mixer (Scenic's projects/baselines/mixer.py, inventory §8.1): the
// published Mixer-B/16 count, variants, a MixerBlock recomputed by hand from its own
// weights (layer scale included, with Scenic's placement of the second Affine), stochastic
// depth in train mode, config handling and a short training run.
#include "scenic/projects/baselines/mixer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"

namespace scenic::baselines {
namespace {

using scenic::testing::error_of;

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

TEST(Mixer, ParameterCountB16) {
  // 224x224x3, patch 16: N = 196 tokens, D = 768.
  //   embedding 16*16*3*768 + 768 = 590,592
  //   per block: 2 LayerNorms 4*768 = 3,072;
  //     token MLP 196*384 + 384 + 384*196 + 196 = 151,108;
  //     channel MLP 768*3072 + 3072 + 3072*768 + 768 = 4,722,432   -> 4,876,612 x 12 = 58,519,344
  //   pre_logits_norm 1,536; head 768*1000 + 1000 = 769,000.       Total 59,880,472.
  auto o = MixerOptions::variant("B/16");
  o.num_classes = 1000;
  o.input_shape = {-1, 3, 224, 224};
  Mixer mixer(o);
  EXPECT_EQ(count_params(mixer), 59'880'472);
  auto params = mixer.named_parameters();
  for (const char* name : {"embedding.weight", "mixerblock_0.LayerNorm_0.weight", "mixerblock_0.token_mixing.Dense_0.weight",
                           "mixerblock_11.channel_mixing.Dense_1.bias", "mixerblock_0.LayerNorm_1.bias",
                           "pre_logits_norm.weight", "output_projection.weight"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_EQ(params["mixerblock_0.token_mixing.Dense_0.weight"].sizes(), (std::vector<int64_t>{384, 196}));
  EXPECT_FALSE(params.contains("mixerblock_0.Affine_0.scale"));  // no layer scale by default
}

TEST(Mixer, Variants) {
  auto ti = MixerOptions::variant("Ti/8");
  EXPECT_EQ(ti.hidden_size, 192);
  EXPECT_EQ(ti.sequence_mlp_dim, 96);
  EXPECT_EQ(ti.patch_size, (std::vector<int64_t>{8, 8}));
  auto h = MixerOptions::variant("H/14");
  EXPECT_EQ(h.hidden_size, 1280);
  EXPECT_EQ(h.channels_mlp_dim, 5120);
  EXPECT_EQ(h.num_layers, 32);
  EXPECT_EQ(MixerOptions::variant("L/16").num_layers, 24);
  EXPECT_EQ(MixerOptions::variant("S/32").channels_mlp_dim, 1536);
  for (const char* bad : {"B", "X/16", "B/", "B/16x", "B/0"})
    EXPECT_CONTAINS(error_of([&] { MixerOptions::variant(bad); }), "variant") << bad;
}

TEST(Mixer, BlockMatchesHandComputationWithLayerScale) {
  torch::manual_seed(0);
  MixerOptions o;
  o.hidden_size = 6;
  o.sequence_mlp_dim = 5;
  o.channels_mlp_dim = 7;
  o.dropout_rate = 0.0;
  o.layer_scale = 0.25;
  MixerBlock block(4, o, 0.0);
  {
    torch::NoGradGuard no_grad;
    block->Affine_1->scale.fill_(0.5);  // distinct from Affine_0 so the placement shows
    block->LayerNorm_0->weight.normal_();
    block->LayerNorm_1->bias.normal_();
  }
  block->eval();
  auto in = torch::randn({2, 4, 6});  // [B, N, D]
  torch::NoGradGuard no_grad;
  auto ln = [](const torch::Tensor& t, const torch::nn::LayerNorm& m) {
    auto mu = t.mean(-1, true);
    auto var = (t - mu).square().mean(-1, true);
    return (t - mu) / torch::sqrt(var + 1e-6) * m->weight + m->bias;
  };
  auto mlp = [](const torch::Tensor& t, const model::MlpBlock& m) {
    auto h = torch::matmul(t, m->Dense_0->weight.t()) + m->Dense_0->bias;
    h = 0.5 * h * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (h + 0.044715 * h.pow(3))));  // tanh gelu
    return torch::matmul(h, m->Dense_1->weight.t()) + m->Dense_1->bias;
  };
  auto x = in + 0.25 * mlp(ln(in, block->LayerNorm_0).transpose(1, 2), block->token_mixing).transpose(1, 2);
  auto y = mlp(ln(x, block->LayerNorm_1), block->channel_mixing);
  auto expected = y + 0.5 * x;  // Scenic: the second Affine scales x, not y
  EXPECT_TRUE(torch::allclose(block->forward(in), expected, 1e-5, 1e-5));
  EXPECT_CONTAINS(error_of([&] { block->forward(torch::randn({2, 24})); }), "tokens");
}

// The block runs token mixing as batched left products (no transposes; mixer.cc). It must
// be Scenic's transpose -> MlpBlock -> transpose, values and gradients, with biases large
// enough that a bias added along the wrong axis shows.
TEST(Mixer, TokenMixingWithoutTransposesHasTheSameValuesAndGradients) {
  torch::manual_seed(3);
  MixerOptions o;
  o.hidden_size = 6;
  o.sequence_mlp_dim = 5;
  o.channels_mlp_dim = 7;
  o.dropout_rate = 0.0;
  MixerBlock block(4, o, 0.0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : block->parameters()) p.normal_();
  }
  block->train();
  auto in = torch::randn({3, 4, 6}, torch::requires_grad());
  auto out = block->forward(in);
  auto g = torch::randn_like(out);
  auto params = block->parameters();
  params.push_back(in);
  auto got = torch::autograd::grad({out}, params, {g});

  // Reference: Scenic's formulation through the MlpBlock's own forward.
  auto x = block->token_mixing(block->LayerNorm_0(in).transpose(1, 2)).transpose(1, 2) + in;
  auto expected = block->channel_mixing(block->LayerNorm_1(x)) + x;
  EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-5)) << (out - expected).abs().max();
  auto want = torch::autograd::grad({expected}, params, {g});
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_TRUE(torch::allclose(got[i], want[i], 1e-4, 1e-5)) << "gradient " << i << ": "
                                                              << (got[i] - want[i]).abs().max();
}

TEST(Mixer, ForwardShapesZeroHeadAndStochasticDepth) {
  torch::manual_seed(1);
  MixerOptions o;
  o.patch_size = {7, 4};
  o.hidden_size = 8;
  o.num_layers = 3;
  o.sequence_mlp_dim = 6;
  o.channels_mlp_dim = 16;
  o.dropout_rate = 0.0;
  o.stochastic_depth = 0.9;
  o.num_classes = 5;
  o.input_shape = {-1, 1, 28, 28};
  Mixer mixer(o);
  // 4 x 7 = 28 tokens.
  EXPECT_EQ(mixer.named_parameters()["mixerblock_0.token_mixing.Dense_0.weight"].sizes(),
            (std::vector<int64_t>{6, 28}));
  auto x = torch::randn({3, 1, 28, 28});
  auto logits = mixer.forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(logits.abs().sum().item<double>(), 0.0);  // zero-initialized head
  {
    torch::NoGradGuard no_grad;
    mixer.output_projection->weight.normal_();
  }
  // Eval is deterministic; train drops residual branches (rates 0, 0.45, 0.9).
  mixer.eval();
  auto a = mixer.forward(x), b = mixer.forward(x);
  EXPECT_TRUE(torch::equal(a, b));
  mixer.train();
  bool differs = false;
  for (int i = 0; i < 5 && !differs; ++i) differs = !torch::allclose(mixer.forward(x), a);
  EXPECT_TRUE(differs);
  EXPECT_CONTAINS(error_of([&] { mixer.forward(torch::randn({1, 1, 32, 32})); }), "Mixer");
}

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

TEST(Mixer, ConfigKeysVariantAndErrors) {
  auto c = common::ConfigDict::from_yaml_string(
      "patch_size: [7, 7]\nhidden_size: 32\nnum_layers: 2\nchannels_mlp_dim: 64\nsequence_mlp_dim: 16\n"
      "layer_scale: 0.1\n");
  auto o = MixerOptions::from_config(c, mnist_meta());
  EXPECT_EQ(o.hidden_size, 32);
  EXPECT_DOUBLE_EQ(o.dropout_rate, 0.1);  // Scenic's default
  EXPECT_DOUBLE_EQ(*o.layer_scale, 0.1);
  EXPECT_TRUE(c.unused_keys().empty());
  // A variant with an override.
  auto v = MixerOptions::from_config(
      common::ConfigDict::from_yaml_string("variant: S/7\nnum_layers: 2\n"), mnist_meta());
  EXPECT_EQ(v.hidden_size, 384);
  EXPECT_EQ(v.num_layers, 2);
  EXPECT_EQ(v.patch_size, (std::vector<int64_t>{7, 7}));
  // Without a variant the sizes are required; the patch must divide the image.
  EXPECT_CONTAINS(error_of([] { MixerOptions::from_config(common::ConfigDict::from_yaml_string("patch_size: [7, 7]\n"),
                                                          mnist_meta()); }),
                  "hidden_size");
  EXPECT_CONTAINS(error_of([] { MixerOptions::from_config(common::ConfigDict::from_yaml_string("variant: B/16\n"),
                                                          mnist_meta()); }),
                  "divisible");
}

TEST(Mixer, RegisteredAndTenSgdStepsLowerTheLoss) {
  torch::manual_seed(2);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  auto config = common::ConfigDict::from_yaml_string(
      "model:\n  patch_size: [7, 7]\n  hidden_size: 32\n  num_layers: 2\n  channels_mlp_dim: 64\n"
      "  sequence_mlp_dim: 16\n  dropout_rate: 0.0\n");
  auto model = registry.get("mixer_classification")(config, mnist_meta());
  auto net = model->build_network();
  EXPECT_EQ(count_params(*registry.get("mixer_multilabel_classification")(config, mnist_meta())->build_network()),
            count_params(*net));
  net->train();
  dataset::Batch batch{{"inputs", torch::randn({8, 1, 28, 28})},
                       {"label", torch::randint(0, 10, {8}, torch::kLong)}};
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    sgd.zero_grad();
    auto loss = model->loss_function(net->forward(batch["inputs"]), batch, net.get());
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(10.0), 1e-5);  // zero head
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
