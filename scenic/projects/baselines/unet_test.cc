// Tests for U-Net (Scenic's projects/baselines/unet.py, inventory §8.1): Scenic's test
// parameter count, the 2x deconvolution against an explicit input-dilated convolution,
// SAME and VALID shapes (central-cropped skips), BatchNorm state, and the registered
// segmentation model training on a tiny batch.
#include "scenic/projects/baselines/unet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/base_models/segmentation_model.h"
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

UNetOptions options(std::vector<int64_t> blocks, int64_t in, int64_t classes, std::string padding = "SAME",
                    bool bn = true) {
  UNetOptions o;
  o.block_size = std::move(blocks);
  o.in_channels = in;
  o.num_classes = classes;
  o.padding = std::move(padding);
  o.use_batch_norm = bn;
  return o;
}

TEST(UNet, ParameterCountOfScenicsTest) {
  // Scenic's test_unet: 5 input channels, 5 classes, default blocks, batch norm.
  // (ConvRelu2(i, f) = 9 i f + f + 9 f f + f + 2 * 2f; the unused first skip makes the
  // output block ConvRelu2(64, 64), not ConvRelu2(128, 64).)
  UNet net(options({64, 128, 256, 512}, 5, 5));
  EXPECT_EQ(count_params(net), 34'491'599);
  auto params = net.named_parameters();
  for (const char* name : {"0_down_0.ConvRelu2_0.conv1.weight", "0_down_3.ConvRelu2_0.BatchNorm_1.scale",
                           "1_bottleneck.deconv.Conv_0.weight", "2_up_2.ConvRelu2_0.conv2.bias",
                           "output_projection.conv1x1.weight", "output_projection.BatchNorm_0.bias"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_EQ(params["1_bottleneck.deconv.Conv_0.weight"].sizes(), (std::vector<int64_t>{512, 1024, 3, 3}));
  EXPECT_EQ(params["2_up_0.ConvRelu2_0.conv1.weight"].sizes(), (std::vector<int64_t>{512, 1024, 3, 3}));
  EXPECT_EQ(params["output_projection.ConvRelu2_0.conv1.weight"].sizes(), (std::vector<int64_t>{64, 64, 3, 3}));
  // Without batch norm: minus 2 * (every BN's channels).
  UNet plain(options({64, 128, 256, 512}, 5, 5, "SAME", false));
  EXPECT_TRUE(plain.named_buffers().is_empty());
  EXPECT_LT(count_params(plain), count_params(net));
}

// Flax's DeConv: a 3x3 convolution over x with zeros inserted between pixels (input
// dilation 2: size 2n - 1), padded (low, high), done literally.
torch::Tensor dilated_conv_reference(const torch::Tensor& x, const torch::nn::Conv2d& conv, int64_t low,
                                     int64_t high) {
  auto d = torch::zeros({x.size(0), x.size(1), 2 * x.size(2) - 1, 2 * x.size(3) - 1});
  d.index_put_({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(0, torch::indexing::None, 2),
                torch::indexing::Slice(0, torch::indexing::None, 2)},
               x);
  d = torch::constant_pad_nd(d, {low, high, low, high});
  return torch::conv2d(d, conv->weight, conv->bias);
}

TEST(UNet, DeconvEqualsInputDilatedConvolution) {
  torch::manual_seed(0);
  auto x = torch::randn({2, 3, 4, 5});
  for (bool same : {true, false}) {
    DeConv3x3 deconv(3, 4, same, /*use_batch_norm=*/false);
    {
      torch::NoGradGuard no_grad;
      deconv->Conv_0->bias.normal_();
    }
    auto y = deconv->forward(x);
    auto expected = same ? dilated_conv_reference(x, deconv->Conv_0, 1, 2) : dilated_conv_reference(x, deconv->Conv_0, 0, 0);
    ASSERT_EQ(y.sizes(), expected.sizes()) << same;
    EXPECT_EQ(y.sizes(), same ? (std::vector<int64_t>{2, 4, 8, 10}) : (std::vector<int64_t>{2, 4, 5, 7}));
    EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-5)) << same;
  }
}

TEST(UNet, OutputShapesSameAndValid) {
  torch::manual_seed(1);
  UNet same(options({4, 8}, 2, 3));
  same.eval();
  EXPECT_EQ(same.forward(torch::randn({2, 2, 16, 24})).sizes(), (std::vector<int64_t>{2, 3, 16, 24}));
  EXPECT_CONTAINS(error_of([&] { same.forward(torch::randn({1, 2, 18, 24})); }), "divisible by 4");
  // VALID on 60x60: down0 56 -> pool 28; down1 24 -> 12; bottleneck 8 -> deconv 13;
  // up0: crop skip 24 -> 13, 9 -> deconv 15; output 11.
  UNet valid(options({4, 8}, 2, 3, "VALID"));
  valid.eval();
  EXPECT_EQ(valid.forward(torch::randn({1, 2, 60, 60})).sizes(), (std::vector<int64_t>{1, 3, 11, 11}));
  EXPECT_CONTAINS(error_of([] { UNet bad(options({4, 8}, 2, 3, "FULL")); }), "padding");
}

TEST(UNet, BatchStatsChangeInTrainModeOnly) {
  torch::manual_seed(2);
  UNet net(options({4, 8}, 1, 3));
  auto x = torch::randn({2, 1, 8, 8});
  auto mean = [&] { return net.named_buffers()["0_down_0.ConvRelu2_0.BatchNorm_0.mean"].clone(); };
  auto before = mean();
  net.eval();
  net.forward(x);
  EXPECT_TRUE(torch::equal(mean(), before));
  net.train();
  net.forward(x);
  EXPECT_FALSE(torch::equal(mean(), before));
}

TEST(UNet, RegisteredAsSegmentationAndTenSgdStepsLowerTheLoss) {
  torch::manual_seed(3);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  dataset::MetaData meta;
  meta.num_classes = 3;
  meta.input_shape = {-1, 1, 16, 16};
  auto config = common::ConfigDict::from_yaml_string("model:\n  block_size: [4, 8]\n  use_batch_norm: true\n");
  auto model = registry.get("unet_segmentation")(config, meta);
  EXPECT_NE(dynamic_cast<const model::SegmentationModel*>(model.get()), nullptr);
  auto net = model->build_network();
  EXPECT_TRUE(config.unused_keys().empty());
  net->train();
  dataset::Batch batch{{"inputs", torch::randn({4, 1, 16, 16})},
                       {"label", torch::randint(0, 3, {4, 16, 16}, torch::kLong)},
                       {"batch_mask", torch::ones({4, 16, 16})}};
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    sgd.zero_grad();
    auto logits = net->forward(batch["inputs"]);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
    auto loss = model->loss_function(logits, batch, net.get());
    loss.backward();
    sgd.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.9 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
