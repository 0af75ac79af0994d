// Tests for Axial-ResNet (Scenic's projects/baselines/axial_resnet.py, inventory §8.1):
// the shapes Scenic's test_axial_resnet.py checks (relative-position attention, axial
// attention, residual units and stages) plus the whole model; the feature-count and
// axis errors; a parameter count by hand; the relative-position logits and values
// against explicit loops; the attention layer and a strided unit against an independent
// PyTorch reference (tools/fixtures/make_axial_resnet_fixture.py); a short training run.
#include "scenic/projects/baselines/axial_resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/npz.h"
#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"

namespace scenic::baselines {
namespace {

using scenic::testing::error_of;
using Shape = std::vector<int64_t>;

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

AxialResNetOptions options(int64_t layers, double width_factor, int64_t heads, int64_t in_channels,
                           int64_t height, int64_t width, int64_t classes) {
  AxialResNetOptions o;
  o.num_layers = layers;
  o.width_factor = width_factor;
  o.num_heads = heads;
  o.in_channels = in_channels;
  o.height = height;
  o.width = width;
  o.num_classes = classes;
  return o;
}

TEST(AxialResNet, SelfAttentionWith1DRelativePosShapesAndErrors) {
  torch::manual_seed(0);
  SelfAttentionWith1DRelativePos sa(128, 8, 6);  // Scenic's test: x [4, 6, 128], 8 heads
  auto x = torch::ones({4, 6, 128});
  EXPECT_EQ(sa->forward(x).sizes(), x.sizes());
  EXPECT_EQ(sa->relative_pos_emb.sizes(), (Shape{2 * 16, 2 * 6 - 1}));  // d = 128 / 8 = 16
  EXPECT_EQ(sa->Dense_0->weight.sizes(), (Shape{256, 128}));
  EXPECT_FALSE(sa->Dense_0->bias.defined());
  // 5 features are not divisible by 2 * 8 heads (Scenic raises ValueError here).
  EXPECT_CONTAINS(error_of([] { SelfAttentionWith1DRelativePos bad(5, 8, 6); }),
                  "must be divisible by 2 * num_heads = 16");
  // 48 = 2 * 2 * 12 passes Scenic's check but not the 32 GroupNorm groups.
  EXPECT_CONTAINS(error_of([] { SelfAttentionWith1DRelativePos bad(48, 2, 6); }), "GroupNorm groups");
  // The relative-position table fixes the length.
  EXPECT_CONTAINS(error_of([&] { sa->forward(torch::ones({4, 7, 128})); }), "built for length 6");
  // Init: Dense kernel N(0, stddev 1/C), table N(0, stddev 1/d) (stddev, not variance).
  SelfAttentionWith1DRelativePos big(256, 2, 64);  // 512 x 256 kernel, table [256, 127]
  EXPECT_NEAR(big->Dense_0->weight.std().item<double>(), 1.0 / 256, 0.02 / 256);
  EXPECT_NEAR(big->relative_pos_emb.std().item<double>(), 1.0 / 128, 0.03 / 128);
}

TEST(AxialResNet, AxialSelfAttentionShapesAndAxes) {
  torch::manual_seed(1);
  auto x = torch::randn({6, 128, 8, 10});  // Scenic's [6, 8, 10, 128] in NCHW
  AxialSelfAttention rows(1, 128, 4, 8), cols(2, 128, 4, 10);
  EXPECT_EQ(rows->forward(x).sizes(), x.sizes());
  EXPECT_EQ(cols->forward(x).sizes(), x.sizes());
  EXPECT_EQ(rows->SelfAttentionWith1DRelativePos_0->relative_pos_emb.size(1), 15);  // 2 * 8 - 1
  EXPECT_EQ(cols->SelfAttentionWith1DRelativePos_0->relative_pos_emb.size(1), 19);  // 2 * 10 - 1
  EXPECT_CONTAINS(error_of([] { AxialSelfAttention bad(3, 128, 4, 8); }), "only attention over rows");
  // Axis 1 mixes along H only: changing one row changes every row of that column and
  // no other column.
  auto x2 = x.clone();
  x2.index_put_({torch::indexing::Slice(), torch::indexing::Slice(), 3, 4}, 5.0);
  auto d = (rows->forward(x2) - rows->forward(x)).abs().sum(Shape{0, 1});  // [H, W]
  EXPECT_GT(d.select(1, 4).min().item<double>(), 0.0);
  EXPECT_EQ(d.index({torch::indexing::Slice(), torch::indexing::Slice(0, 4)}).max().item<double>(), 0.0);
  EXPECT_EQ(d.index({torch::indexing::Slice(), torch::indexing::Slice(5, 10)}).max().item<double>(), 0.0);
  // Axis 2 mixes along W only.
  auto e = (cols->forward(x2) - cols->forward(x)).abs().sum(Shape{0, 1});
  EXPECT_GT(e.select(0, 3).min().item<double>(), 0.0);
  EXPECT_EQ(e.index({torch::indexing::Slice(0, 3)}).max().item<double>(), 0.0);
  EXPECT_EQ(e.index({torch::indexing::Slice(4, 8)}).max().item<double>(), 0.0);
}

TEST(AxialResNet, ResidualUnitAndStageShapes) {
  torch::manual_seed(2);
  // Scenic's cases on x [10, 32, 32, 64] with nout 128, 4 heads (here batch 1 and 16 x 16,
  // to keep the test fast).
  auto x = torch::randn({1, 64, 16, 16});
  struct Case {
    int64_t stride;
    bool bottleneck;
    Shape expected;
  };
  for (const auto& c : {Case{1, false, {1, 128, 16, 16}}, Case{2, false, {1, 128, 8, 8}},
                        Case{1, true, {1, 512, 16, 16}}, Case{2, true, {1, 512, 8, 8}}}) {
    AxialResidualUnit unit(64, 128, c.stride, c.bottleneck, 4, 16, 16);
    EXPECT_EQ(unit->forward(x).sizes(), c.expected) << c.stride << " " << c.bottleneck;
    // Without a bottleneck the attention runs on the 64 input channels.
    EXPECT_EQ(unit->AxialSelfAttention_0->SelfAttentionWith1DRelativePos_0->Dense_0->weight.size(1),
              c.bottleneck ? 128 : 64);
    for (int64_t blocks : {1, 2}) {
      AxialResNetStage stage(64, blocks, 128, c.stride, c.bottleneck, 4, 16, 16);
      EXPECT_EQ(stage->forward(x).sizes(), c.expected) << blocks;
      // unit2 of a strided stage attends at the halved resolution.
      if (blocks == 2)
        EXPECT_EQ(stage->units[1]->AxialSelfAttention_1->SelfAttentionWith1DRelativePos_0->length(),
                  16 / c.stride);
    }
  }
  EXPECT_CONTAINS(error_of([] { AxialResidualUnit bad(64, 128, 3, true, 4, 32, 32); }), "stride must be 1 or 2");
}

TEST(AxialResNet, ModelShapesZeroHeadAndInputSize) {
  torch::manual_seed(3);
  AxialResNet net(options(26, 0.5, 2, 3, 32, 32, 10));  // width 32, bottleneck [2, 2, 2, 2]
  auto x = torch::randn({2, 3, 32, 32});
  auto f = net.forward_features(x);
  EXPECT_EQ(f["stem"].sizes(), (Shape{2, 32, 8, 8}));
  EXPECT_EQ(f["stage_1"].sizes(), (Shape{2, 128, 8, 8}));
  EXPECT_EQ(f["stage_2"].sizes(), (Shape{2, 256, 4, 4}));
  EXPECT_EQ(f["stage_3"].sizes(), (Shape{2, 512, 2, 2}));
  EXPECT_EQ(f["stage_4"].sizes(), (Shape{2, 1024, 1, 1}));
  auto logits = net.forward(x);
  ASSERT_EQ(logits.sizes(), (Shape{2, 10}));
  EXPECT_EQ(logits.abs().sum().item<double>(), 0.0);  // zero-initialized head
  EXPECT_EQ(net.representation(x).sizes(), (Shape{2, 1024}));
  EXPECT_TRUE(net.named_buffers().is_empty());  // no BatchNorm state
  EXPECT_CONTAINS(error_of([&] { net.forward(torch::randn({2, 3, 64, 64})); }), "[B, 3, 32, 32]");
  EXPECT_CONTAINS(error_of([] { AxialResNet bad(options(26, 0.25, 2, 3, 32, 32, 10)); }), "GroupNorm groups");
  EXPECT_CONTAINS(error_of([] { AxialResNet bad(options(27, 1, 2, 3, 32, 32, 10)); }), "num_layers");
}

TEST(AxialResNet, ParameterCountByHand) {
  // num_layers 5 (one bottleneck unit), width 64 * 0.5 = 32, 2 heads, 1 input channel,
  // 16x16 inputs (stem: 16 -> 8 -> 4, so L = 4 on both axes), 10 classes:
  //   conv_root 7*7*1*32 = 1,568; gn_root 2*32 = 64
  //   block1/unit1 (32 -> 4*32 = 128, stride 1):
  //     conv_proj 32*128 = 4,096, gn_proj 2*128 = 256; conv1 32*32 = 1,024, gn1 64
  //     each axial attention on C = 32 (d = 16): Dense_0 32*64 = 2,048, gn_qkv 2*64 = 128,
  //       relative_pos_emb (2*16)*(2*4-1) = 224, gn_out 64 -> 2,464; two of them 4,928
  //     conv3 32*128 = 4,096, gn3 256
  //   output_projection 128*10 + 10 = 1,290.                                  Total 17,642.
  AxialResNet small(options(5, 0.5, 2, 1, 16, 16, 10));
  EXPECT_EQ(count_params(small), 17'642);
  auto params = small.named_parameters();
  for (const char* name :
       {"conv_root.weight", "gn_root.scale", "block1.unit1.conv_proj.weight", "block1.unit1.gn1.bias",
        "block1.unit1.AxialSelfAttention_0.SelfAttentionWith1DRelativePos_0.Dense_0.weight",
        "block1.unit1.AxialSelfAttention_1.SelfAttentionWith1DRelativePos_0.gn_qkv.scale",
        "block1.unit1.AxialSelfAttention_1.SelfAttentionWith1DRelativePos_0.relative_pos_emb",
        "block1.unit1.gn3.scale", "output_projection.bias"})
    EXPECT_TRUE(params.contains(name)) << name;
  // Non-square 16 x 24: the stem gives 4 x 6, so the tables are 2*4-1 = 7 and 2*6-1 = 11 wide.
  AxialResNet wide(options(5, 0.5, 2, 1, 16, 24, 10));
  auto wp = wide.named_parameters();
  EXPECT_EQ(wp["block1.unit1.AxialSelfAttention_0.SelfAttentionWith1DRelativePos_0.relative_pos_emb"].sizes(),
            (Shape{32, 7}));
  EXPECT_EQ(wp["block1.unit1.AxialSelfAttention_1.SelfAttentionWith1DRelativePos_0.relative_pos_emb"].sizes(),
            (Shape{32, 11}));
  EXPECT_EQ(count_params(wide), 17'642 + 32 * 4);  // 4 more table columns
  EXPECT_EQ(wide.forward(torch::randn({1, 1, 16, 24})).sizes(), (Shape{1, 10}));
}

TEST(AxialResNet, RelativeLogitsAndValuesMatchExplicitLoops) {
  torch::manual_seed(5);
  // L = 3, d = 2 per head (q, k 1-dim, v 2-dim), 2 heads, 2 examples. Table emb [2d = 4,
  // 2L-1 = 5]: rows 0 = r_q, 1 = r_k, 2..3 = r_v; entry (i, j) reads column j - i + 2.
  const int64_t n = 2, h = 2, length = 3;
  auto q = torch::randn({n, h, 1, length}), k = torch::randn({n, h, 1, length});
  auto v = torch::randn({n, h, 2, length});
  auto emb = torch::randn({4, 2 * length - 1});
  auto rel = torch::empty({4, length, length});
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t i = 0; i < length; ++i)
      for (int64_t j = 0; j < length; ++j) rel[c][i][j] = emb[c][j - i + length - 1];
  auto logits = relative_attention_logits(q, k, rel);
  ASSERT_EQ(logits.sizes(), (Shape{n, h, length, length}));
  auto weights = torch::softmax(logits, -1);
  auto values = relative_attention_values(weights, v, rel);
  ASSERT_EQ(values.sizes(), (Shape{n, h, 2, length}));
  auto at = [](const torch::Tensor& t, std::initializer_list<int64_t> idx) {
    auto r = t;
    for (int64_t i : idx) r = r[i];
    return r.item<double>();
  };
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t hh = 0; hh < h; ++hh) {
      for (int64_t i = 0; i < length; ++i) {
        double expected_logit[3], z = 0;
        for (int64_t j = 0; j < length; ++j) {
          const double qi = at(q, {b, hh, 0, i}), kj = at(k, {b, hh, 0, j}), ki = at(k, {b, hh, 0, i});
          const int64_t col = j - i + length - 1;
          expected_logit[j] = qi * kj + qi * at(emb, {1, col}) + ki * at(emb, {0, col});
          EXPECT_NEAR(at(logits, {b, hh, i, j}), expected_logit[j], 1e-5) << b << hh << i << j;
          z += std::exp(expected_logit[j]);
        }
        for (int64_t e = 0; e < 2; ++e) {
          double expected = 0;
          for (int64_t j = 0; j < length; ++j)
            expected += std::exp(expected_logit[j]) / z * (at(v, {b, hh, e, j}) + at(emb, {2 + e, j - i + length - 1}));
          EXPECT_NEAR(at(values, {b, hh, e, i}), expected, 1e-5) << b << hh << e << i;
        }
      }
    }
  }
  // The module gathers its table the same way.
  SelfAttentionWith1DRelativePos sa(32, 2, length);
  auto g = sa->gathered_relative_emb();
  EXPECT_TRUE(torch::equal(g.select(1, 0).select(1, 2), sa->relative_pos_emb.select(1, 4)));  // j - i = 2
  EXPECT_TRUE(torch::equal(g.select(1, 2).select(1, 0), sa->relative_pos_emb.select(1, 0)));  // j - i = -2
}

void load(torch::nn::Module& m, const common::TensorMap& ref, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  auto params = m.named_parameters();
  int64_t loaded = 0;
  for (auto& p : params) {
    const auto it = ref.find(prefix + p.key());
    ASSERT_NE(it, ref.end()) << p.key();
    ASSERT_EQ(it->second.sizes(), p.value().sizes()) << p.key();
    p.value().copy_(it->second);
    ++loaded;
  }
  int64_t in_file = 0;
  for (const auto& [key, t] : ref)
    if (key.rfind(prefix, 0) == 0 && key != prefix + "inputs" && key != prefix + "outputs") ++in_file;
  EXPECT_EQ(loaded, in_file);
}

TEST(AxialResNet, MatchesIndependentPyTorchReference) {
  const auto ref = common::read_npz(std::string(SCENIC_SOURCE_DIR) +
                                    "/scenic/projects/baselines/testdata/axial_resnet_reference.npz");
  SelfAttentionWith1DRelativePos sa(32, 2, 5);
  load(*sa, ref, "attn/");
  auto y = sa->forward(ref.at("attn/inputs"));  // [2, 5, 32]
  EXPECT_LT((y - ref.at("attn/outputs")).abs().max().item<double>(), 1e-5);

  // Strided bottleneck unit on 5 x 6 (odd height: the SAME avg-pool pads a zero row).
  AxialResidualUnit unit(32, 32, 2, true, 2, 5, 6);
  load(*unit, ref, "unit/");
  auto out = unit->forward(ref.at("unit/inputs"));  // [2, 128, 3, 3]
  ASSERT_EQ(out.sizes(), ref.at("unit/outputs").sizes());
  EXPECT_LT((out - ref.at("unit/outputs")).abs().max().item<double>(), 1e-4);
  EXPECT_GT(ref.at("unit/outputs").abs().max().item<double>(), 0.5);  // a non-trivial output
}

dataset::MetaData tiny_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 16, 16};
  return meta;
}

TEST(AxialResNet, RegisteredAndSgdStepsLowerTheLoss) {
  torch::manual_seed(6);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  // Scenic's top-level keys.
  auto config = common::ConfigDict::from_yaml_string(
      "num_layers: 5\nwidth_factor: 0.5\naxial_attention_configs:\n  num_heads: 2\n");
  auto model = registry.get("axial_resnet_classification")(config, tiny_meta());
  auto net = model->build_network();
  EXPECT_TRUE(config.unused_keys().empty());
  EXPECT_EQ(count_params(*net), 17'642);  // the configuration counted by hand above
  auto multi = registry.get("axial_resnet_multilabel_classification")(config, tiny_meta())->build_network();
  EXPECT_EQ(count_params(*multi), count_params(*net));
  // Without top-level keys, `model:` (filled from Scenic's defaults: 5 layers, width 64, 2 heads).
  auto defaults = registry.get("axial_resnet_classification")(common::ConfigDict::from_yaml_string("{}"), tiny_meta());
  auto default_net = defaults->build_network();
  EXPECT_EQ(default_net->named_parameters()["block1.unit1.conv3.weight"].sizes(), (Shape{256, 64, 1, 1}));

  net->train();
  dataset::Batch batch{{"inputs", torch::randn({8, 1, 16, 16})},
                       {"label", torch::randint(0, 10, {8}, torch::kLong)}};
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 8; ++step) {
    sgd.zero_grad();
    auto loss = model->loss_function(net->forward(batch["inputs"]), batch, net.get());
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(10.0), 1e-5);  // zero head: uniform predictions
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
