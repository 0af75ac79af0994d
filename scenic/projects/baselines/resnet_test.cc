// Tests for ResNet v1.5 and the Flax BatchNorm (Scenic's projects/baselines/resnet.py,
// inventory §8.1): exact parameter counts, Flax names, shapes, zero-initialized blocks,
// BatchNorm statistics in train and eval mode, both config layouts, and a short training run.
#include "scenic/projects/baselines/resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
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

ResNetOptions options(int64_t layers, int64_t filters, int64_t in_channels, int64_t classes) {
  ResNetOptions o;
  o.num_layers = layers;
  o.num_filters = filters;
  o.in_channels = in_channels;
  o.num_classes = classes;
  return o;
}

TEST(ResNet, ParameterCountResNet50) {
  // The published ResNet-50 v1.5 count (torchvision's resnet50 gives the same: Scenic's
  // projection rule matches torchvision's for bottleneck blocks).
  ResNet net(options(50, 64, 3, 1000));
  EXPECT_EQ(count_params(net), 25'557'032);
}

// channels_last (default) only changes the memory layout: the same outputs, gradients
// and BatchNorm statistics as NCHW, for the same initial values.
TEST(ResNet, ChannelsLastIsTheSameFunction) {
  auto make = [](bool cl) {
    torch::manual_seed(5);
    auto o = options(18, 8, 3, 7);
    o.channels_last = cl;
    return std::make_shared<ResNet>(o);
  };
  auto nhwc = make(true), nchw = make(false);
  EXPECT_TRUE(nhwc->stem_conv->weight.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(nchw->stem_conv->weight.is_contiguous());
  const auto x = torch::randn({4, 3, 32, 32});
  for (bool train : {true, false}) {
    nhwc->train(train);
    nchw->train(train);
    nhwc->zero_grad();
    nchw->zero_grad();
    const auto a = nhwc->forward(x), b = nchw->forward(x);
    EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5)) << (a - b).abs().max();
    if (!train) continue;
    a.square().sum().backward();
    b.square().sum().backward();
    const auto pa = nhwc->named_parameters(), pb = nchw->named_parameters();
    // Convolutions sum in another order per layout: equal to float rounding of the sums,
    // measured against the gradient's scale.
    for (size_t i = 0; i < pa.size(); ++i) {
      const auto& ga = pa[i].value().grad();
      const auto& gb = pb[i].value().grad();
      EXPECT_LE((ga - gb).abs().max().item<double>(), 1e-5 + 1e-4 * gb.abs().max().item<double>()) << pa[i].key();
    }
    const auto ba = nhwc->named_buffers(), bb = nchw->named_buffers();
    for (size_t i = 0; i < ba.size(); ++i)
      EXPECT_TRUE(torch::allclose(ba[i].value(), bb[i].value(), 1e-4, 1e-5)) << ba[i].key();
  }
}

TEST(ResNet, ParameterCountResNet18HasAProjectionInEveryBlock) {
  // torchvision's resnet18 has 11,689,512 parameters. Scenic's rule `C_in != 4 * filters`
  // adds a 1x1 projection + BN to the four blocks torchvision leaves without one:
  //   stage 1 blocks 0, 1: 2 * (64*64 + 2*64)    =   8,448
  //   stage 2 block 1:     128*128 + 2*128       =  16,640
  //   stage 3 block 1:     256*256 + 2*256       =  66,048
  //   stage 4 block 1:     512*512 + 2*512       = 263,168   -> +354,304 = 12,043,816.
  ResNet net(options(18, 64, 3, 1000));
  EXPECT_EQ(count_params(net), 12'043'816);
  EXPECT_TRUE(net.named_parameters().contains("ResidualBlock_1.proj_conv.weight"));
}

TEST(ResNet, ParameterCountAndNamesResNet5ByHand) {
  // num_filters 16 on 1 channel, 10 classes: stem 7*7*1*16 = 784, init_bn 2*16 = 32;
  // one bottleneck block 16 -> 64: proj 16*64 + 2*64 = 1,152; conv1 16*16 + 32 = 288;
  // conv2 9*16*16 + 32 = 2,336; conv3 16*64 + 128 = 1,152; head 64*10 + 10 = 650.
  ResNet net(options(5, 16, 1, 10));
  EXPECT_EQ(count_params(net), 784 + 32 + 1'152 + 288 + 2'336 + 1'152 + 650);
  auto params = net.named_parameters();
  for (const char* name : {"stem_conv.weight", "init_bn.scale", "init_bn.bias", "ResidualBlock_0.proj_conv.weight",
                           "ResidualBlock_0.proj_bn.scale", "ResidualBlock_0.conv1.weight",
                           "ResidualBlock_0.bn3.scale", "output_projection.weight", "output_projection.bias"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_FALSE(params.contains("stem_conv.bias"));  // every conv is bias-free
  auto buffers = net.named_buffers();
  EXPECT_TRUE(buffers.contains("init_bn.mean"));
  EXPECT_TRUE(buffers.contains("ResidualBlock_0.bn3.var"));
  // Last BN of each block starts at scale 0; the others at 1.
  EXPECT_EQ(params["ResidualBlock_0.bn3.scale"].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(params["ResidualBlock_0.bn2.scale"].sum().item<double>(), 16.0);
}

TEST(ResNet, FeatureShapesAndLogits) {
  torch::manual_seed(0);
  ResNet net(options(18, 8, 3, 7));
  net.eval();
  auto x = torch::randn({2, 3, 32, 32});
  auto f = net.forward_features(x);
  // Stride 4 after the stem, then 1, 2, 2, 2 per stage: 8, 8, 4, 2, 1.
  EXPECT_EQ(f["stem"].sizes(), (std::vector<int64_t>{2, 8, 8, 8}));
  EXPECT_EQ(f["stage_1"].sizes(), (std::vector<int64_t>{2, 8, 8, 8}));
  EXPECT_EQ(f["stage_2"].sizes(), (std::vector<int64_t>{2, 16, 4, 4}));
  EXPECT_EQ(f["stage_3"].sizes(), (std::vector<int64_t>{2, 32, 2, 2}));
  EXPECT_EQ(f["stage_4"].sizes(), (std::vector<int64_t>{2, 64, 1, 1}));
  auto logits = net.forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 7}));
  // Head = Dense(GAP(stage_4)).
  auto expected = torch::matmul(f["stage_4"].mean({2, 3}), net.output_projection->weight.t()) +
                  net.output_projection->bias;
  EXPECT_TRUE(torch::allclose(logits, expected, 1e-5, 1e-5));
  // ResNet-50 widths: 4 * filters * 2^i.
  ResNet r50(options(50, 4, 1, 3));
  r50.eval();
  auto g = r50.forward_features(torch::randn({1, 1, 64, 64}));
  EXPECT_EQ(g["stage_4"].sizes(), (std::vector<int64_t>{1, 128, 2, 2}));
}

TEST(ResNet, BlocksStartAsIdentityOnTheirShortcut) {
  // bn3's scale is 0, so y = 0 + bn3.bias = 0 and a block without projection gives
  // relu(x) = x for the non-negative x that the previous block's relu produced.
  torch::manual_seed(1);
  ResidualBlock block(64, 16, 1, /*bottleneck=*/true);  // 64 == 4 * 16: no projection
  EXPECT_TRUE(block->proj_conv.is_empty());
  auto x = torch::relu(torch::randn({2, 64, 5, 5}));
  EXPECT_TRUE(torch::equal(block->forward(x), x));
  // A strided block = relu(proj_bn(proj_conv(x))) (eval mode, so both sides use the
  // same running statistics).
  ResidualBlock strided(64, 16, 2, true);
  strided->eval();
  auto y = strided->forward(x);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 64, 3, 3}));
  EXPECT_TRUE(torch::allclose(y, torch::relu(strided->proj_bn(strided->proj_conv(x))), 1e-6, 1e-6));
}

TEST(FlaxBatchNorm, TrainUsesBatchStatsAndUpdatesRunningStatsWithBiasedVariance) {
  torch::manual_seed(2);
  FlaxBatchNormOptions o;
  o.momentum = 0.9;
  FlaxBatchNorm bn(3, o);
  {
    torch::NoGradGuard no_grad;
    bn->scale.copy_(torch::tensor({1.0f, 2.0f, 0.5f}));
    bn->bias.copy_(torch::tensor({0.0f, -1.0f, 3.0f}));
  }
  auto x = torch::randn({4, 3, 5, 6}) * 2 + 1;
  bn->train();
  auto y = bn->forward(x);
  auto mu = x.mean({0, 2, 3});
  auto var = (x - mu.view({1, 3, 1, 1})).square().mean({0, 2, 3});  // biased, 120 values per channel
  auto expected = (x - mu.view({1, 3, 1, 1})) / torch::sqrt(var.view({1, 3, 1, 1}) + 1e-5) *
                      bn->scale.view({1, 3, 1, 1}) + bn->bias.view({1, 3, 1, 1});
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5));
  // running = 0.9 * running + 0.1 * batch; from (0, 1).
  EXPECT_TRUE(torch::allclose(bn->mean, 0.1 * mu, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(bn->var, 0.9 + 0.1 * var, 1e-5, 1e-6)) << bn->var << var;
  // Eval: running statistics, no update.
  bn->eval();
  auto mean_before = bn->mean.clone(), var_before = bn->var.clone();
  auto z = bn->forward(x);
  EXPECT_TRUE(torch::equal(bn->mean, mean_before));
  EXPECT_TRUE(torch::equal(bn->var, var_before));
  auto expected_eval = (x - mean_before.view({1, 3, 1, 1})) / torch::sqrt(var_before.view({1, 3, 1, 1}) + 1e-5) *
                           bn->scale.view({1, 3, 1, 1}) + bn->bias.view({1, 3, 1, 1});
  EXPECT_TRUE(torch::allclose(z, expected_eval, 1e-5, 1e-5));
  EXPECT_CONTAINS(error_of([&] { bn->forward(torch::randn({2, 4, 3, 3})); }), "BatchNorm");
}

TEST(ResNet, BatchStatsChangeInTrainModeOnly) {
  torch::manual_seed(3);
  ResNet net(options(18, 4, 1, 5));
  auto x = torch::randn({4, 1, 28, 28});
  auto snapshot = [&] {
    std::vector<torch::Tensor> b;
    for (const auto& t : net.buffers()) b.push_back(t.clone());
    return b;
  };
  auto before = snapshot();
  net.eval();
  net.forward(x);
  auto after_eval = snapshot();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after_eval[i]));
  net.train();
  net.forward(x);
  auto after_train = snapshot();
  int changed = 0;
  for (size_t i = 0; i < before.size(); ++i) changed += !torch::equal(before[i], after_train[i]);
  EXPECT_EQ(changed, static_cast<int>(before.size()));  // every BN's mean and var moved
}

TEST(ResNet, BadDepthThrows) {
  EXPECT_CONTAINS(error_of([] { ResNet net(options(20, 8, 3, 10)); }), "num_layers");
  EXPECT_CONTAINS(error_of([] { resnet_block_sizes(49); }), "50");
}

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

TEST(ResNet, RegisteredWithScenicTopLevelKeysOrUnderModel) {
  model::ModelRegistry registry;
  register_baseline_models(registry);
  // Scenic's layout: num_filters / num_layers at the top level.
  auto top = common::ConfigDict::from_yaml_string("num_filters: 16\nnum_layers: 5\nmodel_dtype_str: float32\n");
  auto a = registry.get("resnet_classification")(top, mnist_meta())->build_network();
  EXPECT_EQ(count_params(*a), 784 + 32 + 1'152 + 288 + 2'336 + 1'152 + 650);
  EXPECT_TRUE(top.unused_keys().empty());
  EXPECT_FALSE(top.has("model"));
  // The same keys under `model:`.
  auto nested = common::ConfigDict::from_yaml_string("model:\n  num_filters: 16\n  num_layers: 5\n");
  auto b = registry.get("resnet_multilabel_classification")(nested, mnist_meta())->build_network();
  EXPECT_EQ(count_params(*b), count_params(*a));
  // Neither: Scenic's testing defaults (16 filters, 5 layers).
  auto none = common::ConfigDict::from_yaml_string("model_name: resnet_classification\n");
  EXPECT_EQ(count_params(*registry.get("resnet_classification")(none, mnist_meta())->build_network()),
            count_params(*a));
  auto bf16 = common::ConfigDict::from_yaml_string("num_filters: 16\nnum_layers: 5\nmodel_dtype_str: bfloat16\n");
  EXPECT_CONTAINS(error_of([&] { registry.get("resnet_classification")(bf16, mnist_meta())->build_network(); }),
                  "model_dtype_str");
}

TEST(ResNet, TenSgdStepsLowerTheLoss) {
  torch::manual_seed(4);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  auto model = registry.get("resnet_classification")(
      common::ConfigDict::from_yaml_string("num_filters: 8\nnum_layers: 18\n"), mnist_meta());
  auto net = model->build_network();
  net->train();
  dataset::Batch batch{{"inputs", torch::randn({8, 1, 28, 28})},
                       {"label", torch::randint(0, 10, {8}, torch::kLong)}};
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    sgd.zero_grad();
    auto loss = model->loss_function(net->forward(batch["inputs"]), batch, net.get());
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
