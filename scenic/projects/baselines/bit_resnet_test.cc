// Tests for BiT-ResNet (Scenic's projects/baselines/bit_resnet.py, inventory §8.1):
// weight standardization, XLA 'SAME' padding, parameter counts by hand, shapes with and
// without a capped output stride, zero-initialized units and head, and a short training run.
#include "scenic/projects/baselines/bit_resnet.h"

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

BitResNetOptions options(int64_t layers, double width_factor, int64_t groups, int64_t in_channels,
                         int64_t classes) {
  BitResNetOptions o;
  o.num_layers = layers;
  o.width_factor = width_factor;
  o.gn_num_groups = groups;
  o.in_channels = in_channels;
  o.num_classes = classes;
  return o;
}

TEST(BitResNet, StandardizedKernelsAreZeroMeanUnitVariancePerOutputChannel) {
  torch::manual_seed(0);
  auto w = torch::randn({6, 4, 3, 3}) * torch::arange(1, 7).view({6, 1, 1, 1}) + 5.0;
  auto s = weight_standardize(w);
  auto flat = s.reshape({6, -1});  // 36 values per output channel
  EXPECT_LT(flat.mean(1).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(torch::allclose(flat.square().mean(1), torch::ones({6}), 1e-5, 1e-5));  // biased variance 1
  // The conv uses the standardized kernel, so scaling/shifting its raw kernel per output
  // channel does not change its output.
  StdConv conv(4, 6, 3);
  auto x = torch::randn({2, 4, 5, 5});
  auto y = conv->forward(x);
  {
    torch::NoGradGuard no_grad;
    conv->weight.mul_(3.0).add_(-2.0);
  }
  EXPECT_TRUE(torch::allclose(conv->forward(x), y, 1e-4, 1e-4));
}

TEST(BitResNet, StdConvAndMaxPoolPadLikeXlaSame) {
  torch::manual_seed(1);
  // 7x7/2 on 10 x 9: out ceil(10/2) = 5, ceil(9/2) = 5; total pads
  // (5-1)*2 + 7 - 10 = 5 -> (2, 3) and (5-1)*2 + 7 - 9 = 6 -> (3, 3).
  StdConv conv(2, 3, 7, 2);
  auto x = torch::randn({1, 2, 10, 9});
  auto y = conv->forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 3, 5, 5}));
  auto padded = torch::constant_pad_nd(x, {3, 3, 2, 3});  // (left, right, top, bottom)
  auto expected = torch::conv2d(padded, weight_standardize(conv->weight), {}, 2);
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5));
  // max-pool 3x3/2 SAME on 6x6: total pad (3-1)*2 + 3 - 6 = 1 -> (0, 1), padded with -inf.
  auto p = -torch::rand({1, 1, 6, 6}) - 1.0;  // all negative: zero padding would win
  auto pooled = max_pool_3x3_same(p);
  ASSERT_EQ(pooled.sizes(), (std::vector<int64_t>{1, 1, 3, 3}));
  EXPECT_DOUBLE_EQ(pooled[0][0][2][2].item<double>(), p[0][0].slice(0, 4, 6).slice(1, 4, 6).max().item<double>());
  EXPECT_DOUBLE_EQ(pooled[0][0][0][0].item<double>(), p[0][0].slice(0, 0, 3).slice(1, 0, 3).max().item<double>());
}

TEST(BitResNet, ParameterCountsByHand) {
  // num_layers 5, width 64 * 0.5 = 32, 8 groups, 1 input channel, 10 classes:
  //   conv_root 7*7*1*32 = 1,568; gn_root 2*32 = 64
  //   block1/unit1 (32 -> 4*32 = 128): conv_proj 32*128 = 4,096, gn_proj 256;
  //     conv1 32*32 = 1,024, gn1 64; conv2 9*32*32 = 9,216, gn2 64; conv3 32*128 = 4,096, gn3 256
  //   output_projection 128*10 + 10 = 1,290.                              Total 21,994.
  BitResNet small(options(5, 0.5, 8, 1, 10));
  EXPECT_EQ(count_params(small), 21'994);
  // BiT-R50x1 has ResNet-50's conv shapes and GroupNorm has BatchNorm's two vectors per
  // channel, so it has ResNet-50's 25,557,032 parameters.
  BitResNet r50(options(50, 1.0, 32, 3, 1000));
  EXPECT_EQ(count_params(r50), 25'557'032);
  auto params = r50.named_parameters();
  for (const char* name : {"conv_root.weight", "gn_root.scale", "block1.unit1.conv_proj.weight",
                           "block1.unit1.gn_proj.bias", "block4.unit3.gn3.scale", "output_projection.weight"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_FALSE(params.contains("block1.unit2.conv_proj.weight"));  // 256 -> 256, stride 1
  EXPECT_TRUE(r50.named_buffers().is_empty());                      // no state
}

TEST(BitResNet, ShapesZeroHeadAndOutputStride) {
  torch::manual_seed(2);
  BitResNet net(options(26, 0.5, 8, 3, 10));
  auto x = torch::randn({2, 3, 32, 32});
  auto f = net.forward_features(x);
  EXPECT_EQ(f["stem"].sizes(), (std::vector<int64_t>{2, 32, 8, 8}));
  EXPECT_EQ(f["stage_1"].sizes(), (std::vector<int64_t>{2, 128, 8, 8}));
  EXPECT_EQ(f["stage_2"].sizes(), (std::vector<int64_t>{2, 256, 4, 4}));
  EXPECT_EQ(f["stage_3"].sizes(), (std::vector<int64_t>{2, 512, 2, 2}));
  EXPECT_EQ(f["stage_4"].sizes(), (std::vector<int64_t>{2, 1024, 1, 1}));
  auto logits = net.forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(logits.abs().sum().item<double>(), 0.0);  // zero-initialized head
  // No BatchNorm: train and eval agree.
  net.train();
  auto pooled_train = net.forward_features(x)["stage_4"];
  net.eval();
  EXPECT_TRUE(torch::allclose(net.forward_features(x)["stage_4"], pooled_train));
  // max_output_stride 8: stages 3 and 4 dilate instead of striding.
  auto o = options(26, 0.5, 8, 3, 10);
  o.max_output_stride = 8;
  BitResNet dilated(o);
  auto g = dilated.forward_features(x);
  EXPECT_EQ(g["stage_3"].sizes(), (std::vector<int64_t>{2, 512, 4, 4}));
  EXPECT_EQ(g["stage_4"].sizes(), (std::vector<int64_t>{2, 1024, 4, 4}));
  o.max_output_stride = 12;
  EXPECT_CONTAINS(error_of([&] { BitResNet bad(o); }), "max_output_stride");
  EXPECT_CONTAINS(error_of([] { BitResNet bad(options(5, 0.25, 32, 3, 10)); }), "gn_num_groups");
}

TEST(BitResNet, UnitsStartAsIdentityOnTheirShortcut) {
  torch::manual_seed(3);
  ResidualUnit unit(64, 16, 1, 1, /*bottleneck=*/true, 8);  // 64 == 4 * 16: no projection
  EXPECT_TRUE(unit->conv_proj.is_empty());
  auto x = torch::relu(torch::randn({2, 64, 4, 4}));
  EXPECT_TRUE(torch::equal(unit->forward(x), x));  // gn3 scale 0 and bias 0
}

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

TEST(BitResNet, RegisteredAndTenSgdStepsLowerTheLoss) {
  torch::manual_seed(4);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  // Scenic's top-level keys.
  auto config = common::ConfigDict::from_yaml_string("num_layers: 8\nwidth_factor: 0.25\ngn_num_groups: 4\n");
  auto model = registry.get("bit_resnet_classification")(config, mnist_meta());
  auto net = model->build_network();
  EXPECT_TRUE(config.unused_keys().empty());
  auto multi = registry.get("bit_resnet_multilabel_classification")(config, mnist_meta())->build_network();
  EXPECT_EQ(count_params(*multi), count_params(*net));
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
  EXPECT_NEAR(first, std::log(10.0), 1e-5);  // zero head: uniform predictions
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
