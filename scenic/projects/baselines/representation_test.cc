// The `pre_logits` representation hook (model::Network::representation) of the
// baselines that implement it: forward == output_projection(representation) for ViT
// (with and without a pre_logits layer), the MLP and the simple CNN; and the simple
// CNN's segmentation variant is the same Dense applied at every pixel.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/projects/baselines/fully_connected.h"
#include "scenic/projects/baselines/simple_cnn.h"
#include "scenic/projects/baselines/vit.h"

namespace scenic::baselines {
namespace {

void expect_forward_is_head_of_representation(model::Network& net, torch::nn::Linear& head,
                                              const torch::Tensor& x, int64_t width) {
  torch::NoGradGuard g;
  net.eval();
  auto r = net.representation(x);
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{x.size(0), width}));
  EXPECT_TRUE(torch::allclose(net.forward(x), head(r), 1e-5, 1e-6));
}

TEST(Representation, ViTWithAndWithoutPreLogits) {
  torch::manual_seed(0);
  ViTOptions o;
  o.patch_size = {4, 4};
  o.input_shape = {-1, 1, 8, 8};
  o.hidden_size = 8;
  o.mlp_dim = 16;
  o.num_heads = 2;
  o.num_layers = 1;
  o.num_classes = 3;
  auto x = torch::randn({2, 1, 8, 8});
  ViT plain(o);
  {
    torch::NoGradGuard g;  // the head is zero-initialised; make it non-trivial
    plain.output_projection->weight.normal_();
  }
  expect_forward_is_head_of_representation(plain, plain.output_projection, x, 8);
  o.representation_size = 5;
  ViT with_pre_logits(o);
  {
    torch::NoGradGuard g;
    with_pre_logits.output_projection->weight.normal_();
  }
  expect_forward_is_head_of_representation(with_pre_logits, with_pre_logits.output_projection, x, 5);
  // tanh(pre_logits): values in (-1, 1).
  EXPECT_LT(with_pre_logits.representation(x).abs().max().item<double>(), 1.0);
}

TEST(Representation, FullyConnectedAndSimpleCNN) {
  torch::manual_seed(0);
  FullyConnected fc({6, 4}, 12, 3);
  expect_forward_is_head_of_representation(fc, fc.output_projection, torch::randn({5, 3, 2, 2}), 4);
  SimpleCNN cnn({4, 6}, {3, 3}, true, 3, 5);
  expect_forward_is_head_of_representation(cnn, cnn.output_projection, torch::randn({2, 3, 6, 6}), 6);
}

TEST(Representation, BaseNetworkWithoutItIsAClearError) {
  struct Bare : model::Network {
    torch::Tensor forward(const torch::Tensor& x) override { return x; }
  } bare;
  EXPECT_CONTAINS(testing::error_of([&] { bare.representation(torch::zeros({1})); }), "no representation()");
}

TEST(SimpleCNNSegmentation, PerPixelDenseWithTheClassifierParameterNames) {
  torch::manual_seed(0);
  dataset::MetaData meta;
  meta.input_shape = {-1, 3, 5, 7};
  meta.num_classes = 4;
  auto config = common::ConfigDict::from_yaml_string("num_filters: [6, 8]\nkernel_sizes: [3, 3]\n");
  auto net = SimpleCNNSegmentation::from_config(config, meta);
  auto& seg = dynamic_cast<SimpleCNNSegmentation&>(*net);
  auto x = torch::rand({2, 3, 5, 7});
  torch::NoGradGuard g;
  auto logits = seg.forward(x);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 4, 5, 7}));  // [B, K, H, W]
  // Pixel (1, 2, 3): the head applied to that pixel's features of the last conv layer.
  auto f = x;
  for (auto& conv : seg.convs) f = torch::relu(conv(f));  // [B, 8, H, W]
  auto pixel = seg.output_projection(f.index({1, torch::indexing::Slice(), 2, 3}));  // [K]
  EXPECT_TRUE(torch::allclose(logits.index({1, torch::indexing::Slice(), 2, 3}), pixel, 1e-5, 1e-6));
  // Same names and shapes as the classification variant, so checkpoints carry over.
  SimpleCNN cls({6, 8}, {3, 3}, true, 3, 4);
  auto a = seg.named_parameters(), b = cls.named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : b) EXPECT_EQ(a[p.key()].sizes(), p.value().sizes()) << p.key();
}

}  // namespace
}  // namespace scenic::baselines
