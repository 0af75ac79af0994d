// Tests for loading ResNet, BiT-ResNet and MLP-Mixer weights from elsewhere: logits equal
// to Flax reference models written after Scenic's resnet.py / bit_resnet.py / mixer.py
// (tools/fixtures/make_{resnet,bit,mixer}_flax_fixture.py) after importing their msgpack
// checkpoints and big_vision-style .npz files, BatchNorm statistics landing in the
// buffers; logits equal to torchvision's ResNets after importing their safetensors
// (tools/fixtures/make_resnet_torch_fixture.py), basic blocks included; export round trips.
#include "scenic/projects/baselines/weight_import_resnet.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "scenic/common_lib/msgpack_tree.h"
#include "scenic/common_lib/npz.h"
#include "scenic/common_lib/safetensors.h"
#include "scenic/common_lib/testing.h"
#include "scenic/projects/baselines/bit_resnet.h"
#include "scenic/projects/baselines/mixer.h"
#include "scenic/projects/baselines/resnet.h"
#include "scenic/projects/baselines/weight_import.h"

namespace scenic::baselines {
namespace {

// BiT standardizes every kernel by its per-channel std before the conv; float32 sums in a
// different order (1 vs 2 OpenMP threads) move its logits by up to ~1.3e-5 here, so the
// BiT comparisons allow 5e-5 (a wrong layout gives differences of 0.1 and more).
constexpr double kBitTol = 5e-5;

using scenic::testing::error_of;
using scenic::testing::TempDir;

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/testdata/";

// The fixtures' configs (see the generator scripts).
ResNetOptions resnet_options(int64_t depth, int64_t filters, int64_t classes = 10) {
  ResNetOptions o;
  o.num_layers = depth;
  o.num_filters = filters;
  o.in_channels = 3;
  o.num_classes = classes;
  return o;
}

BitResNetOptions bit_options() {
  BitResNetOptions o;
  o.num_layers = 26;
  o.width_factor = 1.0 / 32;  // width 2
  o.gn_num_groups = 2;
  o.max_output_stride = 16;   // block4 dilated
  o.in_channels = 3;
  o.num_classes = 10;
  return o;
}

MixerOptions mixer_options(bool layer_scale) {
  MixerOptions o;
  o.patch_size = {4, 4};
  o.hidden_size = 32;
  o.num_layers = 2;
  o.channels_mlp_dim = 64;
  o.sequence_mlp_dim = 16;
  o.dropout_rate = 0.0;
  if (layer_scale) o.layer_scale = 0.1;
  o.num_classes = 10;
  o.input_shape = {-1, 3, 16, 16};
  return o;
}

// Parameters plus BatchNorm statistics: what a full import loads.
size_t num_entries(torch::nn::Module& m) {
  size_t n = m.named_parameters().size();
  for (const auto& b : m.named_buffers()) n += b.key().ends_with(".mean") || b.key().ends_with(".var");
  return n;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

torch::Tensor logits_of(model::Network& net, const torch::Tensor& nchw) {
  net.eval();
  torch::NoGradGuard no_grad;
  return net.forward(nchw);
}

torch::Tensor nhwc_inputs(const common::TensorMap& io) { return io.at("inputs").permute({0, 3, 1, 2}); }

void expect_full_import(const WeightImportReport& r, torch::nn::Module& m) {
  EXPECT_EQ(r.loaded.size(), num_entries(m));
  EXPECT_TRUE(r.skipped.empty()) << r.summary();
  EXPECT_TRUE(r.unused.empty()) << r.summary();
}

TEST(WeightImportResNet, FlaxCheckpointGivesFlaxLogitsAndBatchStats) {
  const auto io = common::read_npz(kDir + "resnet_flax_io.npz");
  ResNet net(resnet_options(18, 4));
  const auto report = init_from_checkpoint(net, kDir + "resnet_flax_checkpoint");
  expect_full_import(report, net);
  EXPECT_LT(max_abs_diff(logits_of(net, nhwc_inputs(io)), io.at("logits")), 1e-5);
  EXPECT_GT(io.at("logits").abs().max().item<double>(), 0.5);
  // The statistics come from model_state/batch_stats, not the fresh 0 / 1.
  const auto tree = common::read_flax_checkpoint(kDir + "resnet_flax_checkpoint");
  auto& bn = net.stages[3][1]->bn3;
  EXPECT_TRUE(torch::equal(bn->var, tree.at("model_state/batch_stats/ResidualBlock_7/bn3/var")));
  EXPECT_TRUE(torch::equal(bn->mean, tree.at("model_state/batch_stats/ResidualBlock_7/bn3/mean")));
  EXPECT_TRUE(torch::equal(net.init_bn->scale, tree.at("params/init_bn/scale")));
  EXPECT_GT((bn->var - 1).abs().max().item<double>(), 0.1);
  // Every basic block has Scenic's projection, so the checkpoint has ResidualBlock_1/proj_conv.
  EXPECT_TRUE(tree.count("params/ResidualBlock_1/proj_conv/kernel"));
}

TEST(WeightImportResNet, FlaxTreeWithTopLevelBatchStatsAndExportRoundTrip) {
  // The layout export_flax_tree writes (params/ + batch_stats/), through npz and msgpack.
  const auto io = common::read_npz(kDir + "resnet_flax_io.npz");
  ResNet src(resnet_options(18, 4));
  init_from_checkpoint(src, kDir + "resnet_flax_checkpoint");
  const auto tree = export_flax_tree(src);
  EXPECT_TRUE(tree.count("batch_stats/ResidualBlock_0/bn2/mean"));
  EXPECT_EQ(tree.at("params/stem_conv/kernel").sizes(), (std::vector<int64_t>{7, 7, 3, 4}));  // HWIO
  TempDir dir;
  common::write_npz(dir.file("resnet.npz"), tree);
  common::write_flax_checkpoint(dir.file("checkpoint_3"), tree);
  for (const char* file : {"resnet.npz", "checkpoint_3"}) {
    SCOPED_TRACE(file);
    ResNet dst(resnet_options(18, 4));
    expect_full_import(init_from_checkpoint(dst, dir.file(file)), dst);
    EXPECT_LT(max_abs_diff(logits_of(dst, nhwc_inputs(io)), io.at("logits")), 1e-5);
    for (const auto& b : src.named_buffers()) EXPECT_TRUE(torch::equal(b.value(), dst.named_buffers()[b.key()])) << b.key();
  }
}

TEST(WeightImportResNet, BitFlaxCheckpointAndBigVisionNpzGiveFlaxLogits) {
  const auto io = common::read_npz(kDir + "bit_flax_io.npz");
  BitResNet a(bit_options());
  expect_full_import(init_from_checkpoint(a, kDir + "bit_flax_checkpoint"), a);
  EXPECT_LT(max_abs_diff(logits_of(a, nhwc_inputs(io)), io.at("logits")), kBitTol);
  EXPECT_GT(io.at("logits").abs().max().item<double>(), 1.0);
  // big_vision layout: opt/target/ root, `head`; opt/state/step lies outside the root.
  BitResNet b(bit_options());
  expect_full_import(init_from_checkpoint(b, kDir + "bit_big_vision.npz"), b);
  EXPECT_LT(max_abs_diff(logits_of(b, nhwc_inputs(io)), io.at("logits")), kBitTol);
  // StdConv kernels are stored raw (HWIO) and standardized when used.
  const auto tree = common::read_npz(kDir + "bit_big_vision.npz");
  EXPECT_TRUE(torch::equal(b.stages[3]->units[0]->conv2->weight,
                           tree.at("opt/target/block4/unit1/conv2/kernel").permute({3, 2, 0, 1})));
}

TEST(WeightImportResNet, BitOldLinenUnsqueezedGroupNormParams) {
  // Old Linen checkpoints stored GroupNorm scale/bias as [1, 1, 1, C].
  const auto io = common::read_npz(kDir + "bit_flax_io.npz");
  common::TensorMap tree;
  int64_t reshaped = 0;
  for (const auto& [k, v] : common::read_npz(kDir + "bit_big_vision.npz")) {
    const bool gn = k.find("/gn") != std::string::npos;
    tree[k] = gn ? v.reshape({1, 1, 1, -1}) : v;
    reshaped += gn;
  }
  EXPECT_EQ(reshaped, 2 * (1 + 8 * 3 + 4));  // root, 3 per unit, 4 projections; scale + bias
  BitResNet net(bit_options());
  expect_full_import(import_flax_tree(net, tree), net);
  EXPECT_LT(max_abs_diff(logits_of(net, nhwc_inputs(io)), io.at("logits")), kBitTol);
}

TEST(WeightImportResNet, MixerFlaxCheckpointWithLayerScale) {
  const auto io = common::read_npz(kDir + "mixer_flax_io.npz");
  Mixer net(mixer_options(/*layer_scale=*/true));
  expect_full_import(init_from_checkpoint(net, kDir + "mixer_flax_checkpoint"), net);
  EXPECT_LT(max_abs_diff(logits_of(net, nhwc_inputs(io)), io.at("logits_layer_scale")), 1e-5);
  EXPECT_GT(io.at("logits_layer_scale").abs().max().item<double>(), 1.0);
}

TEST(WeightImportResNet, MixerBigVisionNpzNames) {
  // stem, MixerBlock_i, pre_head_layer_norm, head; no root prefix.
  const auto io = common::read_npz(kDir + "mixer_flax_io.npz");
  Mixer net(mixer_options(/*layer_scale=*/false));
  expect_full_import(init_from_checkpoint(net, kDir + "mixer_big_vision.npz"), net);
  EXPECT_LT(max_abs_diff(logits_of(net, nhwc_inputs(io)), io.at("logits")), 1e-5);
  // A layer-scale model needs the Affine parameters the release does not have.
  Mixer scaled(mixer_options(/*layer_scale=*/true));
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(scaled, kDir + "mixer_big_vision.npz"); }),
                  "no entry for parameter 'mixerblock_0.Affine_0.scale'");
}

TEST(WeightImportResNet, TorchvisionBottleneckGivesTorchvisionLogits) {
  const auto io = common::read_npz(kDir + "resnet_torch_io.npz");
  ResNet net(resnet_options(26, 2));
  const auto report = init_from_checkpoint(net, kDir + "resnet26_torchvision.safetensors");
  expect_full_import(report, net);  // num_batches_tracked is read and ignored
  EXPECT_LT(max_abs_diff(logits_of(net, io.at("inputs")), io.at("logits_resnet26")), 1e-5);
  // running_var is copied as it is (see weight_import_resnet.h).
  const auto state = common::read_safetensors(kDir + "resnet26_torchvision.safetensors").tensors;
  EXPECT_TRUE(torch::equal(net.stages[1][0]->proj_bn->var, state.at("layer2.0.downsample.1.running_var")));
  // Export gives back torchvision's exact state_dict: keys, shapes, values.
  const auto exported = export_torchvision_resnet(net);
  ASSERT_EQ(exported.size(), state.size());
  for (const auto& [k, v] : state) {
    ASSERT_TRUE(exported.count(k)) << k;
    if (k.ends_with("num_batches_tracked")) {
      EXPECT_EQ(exported.at(k).scalar_type(), torch::kLong);
      EXPECT_EQ(exported.at(k).dim(), 0);
    } else {
      EXPECT_TRUE(torch::equal(exported.at(k), v)) << k;
    }
  }
}

TEST(WeightImportResNet, ResNet50ExportHasTorchvisionResNet50Keys) {
  // The full-size key set and shapes of torchvision's resnet50() state_dict (Scenic's
  // ResNet-50 counts 25,557,032 parameters, as torchvision's): exported from our
  // ResNet-50 it is exactly that, so load_state_dict(strict=True) takes it.
  std::ifstream in(kDir + "resnet50_torchvision_shapes.json");
  const auto expected = nlohmann::json::parse(in);
  ResNet net(resnet_options(50, 64, 1000));
  const auto exported = export_torchvision_resnet(net);
  ASSERT_EQ(exported.size(), expected.size());
  int64_t values = 0;
  for (const auto& [k, shape] : expected.items()) {
    ASSERT_TRUE(exported.count(k)) << k;
    EXPECT_EQ(exported.at(k).sizes().vec(), shape.get<std::vector<int64_t>>()) << k;
    if (!k.ends_with("running_mean") && !k.ends_with("running_var") && !k.ends_with("num_batches_tracked"))
      values += exported.at(k).numel();
  }
  EXPECT_EQ(values, 25557032);
  // And it imports back with nothing left over or filled in (into the same net: one
  // ResNet-50 is enough work for a test).
  const auto report = import_torchvision_resnet(net, exported);
  EXPECT_EQ(report.loaded.size(), num_entries(net));
  EXPECT_TRUE(report.skipped.empty() && report.unused.empty()) << report.summary();
}

TEST(WeightImportResNet, TorchvisionBasicBlocksGetIdentityProjections) {
  const auto io = common::read_npz(kDir + "resnet_torch_io.npz");
  ResNet net(resnet_options(18, 2));
  const auto report = init_from_checkpoint(net, kDir + "resnet18_torchvision.safetensors");
  // torchvision projects only layer2.0, layer3.0, layer4.0; our other 5 blocks get the
  // identity: 5 x (proj_conv kernel + proj_bn scale, bias, mean, var).
  EXPECT_EQ(report.skipped.size(), 25u) << report.summary();
  EXPECT_CONTAINS(report.skipped[0], "ResidualBlock_0.proj_conv.weight: no torchvision counterpart");
  EXPECT_EQ(report.loaded.size(), num_entries(net));
  EXPECT_TRUE(report.unused.empty()) << report.summary();
  EXPECT_LT(max_abs_diff(logits_of(net, io.at("inputs")), io.at("logits_resnet18")), 1e-5);
  // Export drops the identity projections again and gives torchvision's state_dict back.
  const auto state = common::read_safetensors(kDir + "resnet18_torchvision.safetensors").tensors;
  const auto exported = export_torchvision_resnet(net);
  ASSERT_EQ(exported.size(), state.size());
  for (const auto& [k, v] : state) {
    ASSERT_TRUE(exported.count(k)) << k;
    if (!k.ends_with("num_batches_tracked")) EXPECT_TRUE(torch::equal(exported.at(k), v)) << k;
  }
  // ... and a safetensors file of it imports to the same function.
  TempDir dir;
  common::write_safetensors(dir.file("r18.safetensors"), exported);
  ResNet again(resnet_options(18, 2));
  init_from_checkpoint(again, dir.file("r18.safetensors"));
  EXPECT_LT(max_abs_diff(logits_of(again, io.at("inputs")), io.at("logits_resnet18")), 1e-5);
  // A learned projection on a torchvision-less block cannot be exported.
  ResNet fresh(resnet_options(18, 2));
  EXPECT_CONTAINS(error_of([&] { export_torchvision_resnet(fresh); }),
                  "cannot export 'ResidualBlock_0.proj_conv' to torchvision");
}

TEST(WeightImportResNet, TorchvisionHeadAndErrors) {
  // Another number of classes keeps the fresh head.
  ResNet five(resnet_options(26, 2, 5));
  const auto report = init_from_checkpoint(five, kDir + "resnet26_torchvision.safetensors");
  ASSERT_EQ(report.skipped.size(), 2u);
  EXPECT_CONTAINS(report.skipped[0], "output_projection.weight: checkpoint shape [10, 64] vs model [5, 64]");
  EXPECT_EQ(five.output_projection->bias.abs().sum().item<double>(), 0.0);
  // Bottleneck weights into a basic-block net, and into another width: errors naming the key.
  ResNet basic(resnet_options(18, 2));
  const auto path = kDir + "resnet26_torchvision.safetensors";
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(basic, path); }), path + ": torchvision key 'layer1.0.");
  ResNet wide(resnet_options(26, 4));
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(wide, path); }),
                  "torchvision key 'conv1.weight': shape [2, 3, 7, 7] does not fit our 'stem_conv.weight' [4, 3, 7, 7]");
  // A missing key is named.
  auto state = common::read_safetensors(path).tensors;
  state.erase("layer3.1.bn2.running_var");
  ResNet r26(resnet_options(26, 2));
  EXPECT_CONTAINS(error_of([&] { import_torchvision_resnet(r26, state); }),
                  "the torchvision state_dict has no 'layer3.1.bn2.running_var' (for our 'ResidualBlock_5.bn2.var')");
  // torchvision weights need our ResNet.
  Mixer mixer(mixer_options(false));
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(mixer, path); }), "need a ResNet model");
}

}  // namespace
}  // namespace scenic::baselines
