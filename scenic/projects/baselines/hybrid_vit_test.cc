// Tests for the hybrid ViT (Scenic's projects/baselines/hybrid_vit.py): a parameter count
// by hand, token counts with and without the BiT stem, Flax names, the zero head, and
// the registered model training on a tiny batch.
#include "scenic/projects/baselines/hybrid_vit.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

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

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

const char* const kSmall =
    "resnet: {num_layers: [1], width_factor: 0.5}\npatches: {size: [1, 1]}\nhidden_size: 16\nmlp_dim: 32\n"
    "num_heads: 2\nnum_layers: 1\nrepresentation_size: null\nclassifier: gap\ndropout_rate: 0.0\n"
    "attention_dropout_rate: 0.0\n";

TEST(HybridViT, ParameterCountByHandAndNames) {
  // 28x28x1 -> conv_root/2 -> 14 -> max-pool/2 -> 7x7, width 32; block1 (stride 1): 128 ch;
  // 1x1 patches: 49 tokens of width 16 (gap: no cls). By hand:
  //   conv_root 7*7*1*32 = 1,568; gn_root 64
  //   block1/unit1: conv_proj 32*128 = 4,096 + gn 256; conv1 32*32 = 1,024 + gn 64;
  //                 conv2 9*32*32 = 9,216 + gn 64; conv3 32*128 = 4,096 + gn 256 -> 19,072
  //   embedding 128*16 + 16 = 2,064; pos_embedding 49*16 = 784
  //   encoder block: 2 LayerNorms 64; q/k/v/out 4*(16*16 + 16) = 1,088; MLP 16*32 + 32 + 32*16 + 16 = 1,072
  //   encoder_norm 32; head 16*10 + 10 = 170.                          Total 25,978.
  auto net = HybridViT::from_config(common::ConfigDict::from_yaml_string(kSmall), mnist_meta());
  EXPECT_EQ(count_params(*net), 25'978);
  auto params = net->named_parameters();
  for (const char* name : {"conv_root.weight", "gn_root.scale", "block1.unit1.conv_proj.weight", "embedding.weight",
                           "Transformer.posembed_input.pos_embedding", "Transformer.encoder_norm.weight",
                           "output_projection.weight"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_EQ(params["Transformer.posembed_input.pos_embedding"].sizes(), (std::vector<int64_t>{1, 49, 16}));
  auto logits = net->forward(torch::randn({2, 1, 28, 28}));
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(logits.abs().sum().item<double>(), 0.0);  // zero-initialized head
}

TEST(HybridViT, TokenCountsFollowTheStemStrides) {
  // Two stages on 30x30: 30 -> 15 -> 8 (SAME ceil) -> block2 stride 2 -> 4; patch 2 -> 2x2
  // tokens + cls = 5.
  auto cfg = common::ConfigDict::from_yaml_string(
      "resnet: {num_layers: [1, 1], width_factor: 0.5}\npatches: {size: [2, 2]}\nhidden_size: 8\nmlp_dim: 8\n"
      "num_heads: 1\nnum_layers: 1\nrepresentation_size: 4\nclassifier: token\n");
  auto meta = mnist_meta();
  meta.input_shape = {-1, 3, 30, 30};
  auto net = HybridViT::from_config(cfg, meta);
  EXPECT_EQ(net->named_parameters()["Transformer.posembed_input.pos_embedding"].sizes(),
            (std::vector<int64_t>{1, 5, 8}));
  net->eval();
  EXPECT_EQ(net->forward(torch::randn({1, 3, 30, 30})).sizes(), (std::vector<int64_t>{1, 10}));
  // No stem (`resnet: null`): a plain ViT on 7x7 patches of the image.
  auto plain_cfg = common::ConfigDict::from_yaml_string(
      "resnet: null\npatches: {size: [7, 7]}\nhidden_size: 8\nmlp_dim: 8\nnum_heads: 1\nnum_layers: 1\n"
      "representation_size: null\nclassifier: gap\n");
  auto plain = HybridViT::from_config(plain_cfg, mnist_meta());
  EXPECT_TRUE(plain_cfg.unused_keys().empty());
  EXPECT_FALSE(plain->named_parameters().contains("conv_root.weight"));
  EXPECT_EQ(plain->named_parameters()["Transformer.posembed_input.pos_embedding"].sizes(),
            (std::vector<int64_t>{1, 16, 8}));
  auto bad = common::ConfigDict::from_yaml_string(kSmall);
  bad.apply_override("patches.size", "[8, 8]");  // 7x7 feature map
  EXPECT_CONTAINS(error_of([&] { HybridViT::from_config(bad, mnist_meta()); }), "smaller");
}

TEST(HybridViT, RegisteredAndTenSgdStepsLowerTheLoss) {
  torch::manual_seed(0);
  model::ModelRegistry registry;
  register_baseline_models(registry);
  auto config = common::ConfigDict::from_yaml_string("model:\n" + [] {
    std::string indented, line;
    for (const char* p = kSmall; *p; ++p) {
      line += *p;
      if (*p == '\n') {
        indented += "  " + line;
        line.clear();
      }
    }
    return indented;
  }());
  auto model = registry.get("hybrid_vit_classification")(config, mnist_meta());
  auto net = model->build_network();
  EXPECT_TRUE(config.unused_keys().empty());
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
  EXPECT_NEAR(first, std::log(10.0), 1e-5);
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace scenic::baselines
