// Tests for the fully connected and simple CNN baselines and for the baseline model
// registry (Scenic's model_lib/models.py names).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/classification_model.h"
#include "scenic/model_lib/base_models/multilabel_classification_model.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"
#include "scenic/projects/baselines/fully_connected.h"
#include "scenic/projects/baselines/simple_cnn.h"

namespace scenic::baselines {
namespace {

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

TEST(FullyConnected, ParameterCountNamesAndForward) {
  FullyConnected fc({64, 64}, 784, 10);
  // 784*64 + 64 + 64*64 + 64 + 64*10 + 10 = 50,240 + 4,160 + 650 = 55,050.
  EXPECT_EQ(count_params(fc), 55'050);
  auto params = fc.named_parameters();
  EXPECT_EQ(params["Dense_0.weight"].sizes(), (std::vector<int64_t>{64, 784}));
  EXPECT_EQ(params["Dense_1.weight"].sizes(), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(params["output_projection.weight"].sizes(), (std::vector<int64_t>{10, 64}));
  EXPECT_EQ(params["Dense_0.bias"].abs().sum().item<double>(), 0.0);
  // Forward = W2 relu(W1 relu(W0 x + b0) + b1) + b2 on the flattened image.
  torch::manual_seed(0);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fc.named_parameters())
      if (p.key().ends_with("bias")) p.value().normal_();
  }
  auto x = torch::randn({3, 1, 28, 28});
  torch::NoGradGuard no_grad;
  auto h = x.reshape({3, 784});
  for (const char* name : {"Dense_0", "Dense_1"})
    h = torch::clamp_min(torch::matmul(h, params[std::string(name) + ".weight"].t()) +
                             params[std::string(name) + ".bias"],
                         0.0);
  auto expected = torch::matmul(h, params["output_projection.weight"].t()) + params["output_projection.bias"];
  EXPECT_TRUE(torch::allclose(fc.forward(x), expected, 1e-5, 1e-5));
  // No hidden layers: a linear classifier.
  FullyConnected linear({}, 784, 10);
  EXPECT_EQ(count_params(linear), 7'850);
}

TEST(SimpleCNN, ParameterCountAndForward) {
  SimpleCNN cnn({32, 64, 64}, {3, 3, 3}, true, 1, 10);
  // 1*32*9 + 32 = 320; 32*64*9 + 64 = 18,496; 64*64*9 + 64 = 36,928; 64*10 + 10 = 650.
  EXPECT_EQ(count_params(cnn), 320 + 18'496 + 36'928 + 650);
  SimpleCNN nobias({32, 64, 64}, {3, 3, 3}, false, 1, 10);
  EXPECT_EQ(count_params(nobias), 320 + 18'496 + 36'928 + 650 - 32 - 64 - 64);
  EXPECT_FALSE(nobias.named_parameters().contains("Conv_0.bias"));

  // Forward: SAME (zero-padded) convs + relu, global average pool, Dense. The reference
  // pads explicitly and convolves with unfold + matmul.
  torch::manual_seed(0);
  SimpleCNN small({4, 3}, {3, 5}, true, 2, 6);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : small.named_parameters())
      if (p.key().ends_with("bias")) p.value().normal_();
  }
  auto x = torch::randn({2, 2, 7, 9});
  torch::NoGradGuard no_grad;
  auto h = x;
  for (auto& conv : small.convs) {
    const int64_t k = conv->weight.size(2), out = conv->weight.size(0);
    auto padded = torch::constant_pad_nd(h, {k / 2, k / 2, k / 2, k / 2});
    auto cols = torch::nn::functional::unfold(padded, torch::nn::functional::UnfoldFuncOptions({k, k}));
    auto y = torch::matmul(conv->weight.reshape({out, -1}), cols) + conv->bias.reshape({1, out, 1});
    h = torch::clamp_min(y.reshape({h.size(0), out, h.size(2), h.size(3)}), 0.0);  // same H, W
  }
  auto pooled = h.mean({2, 3});
  auto expected = torch::matmul(pooled, small.output_projection->weight.t()) + small.output_projection->bias;
  auto got = small.forward(x);
  EXPECT_EQ(got.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_TRUE(torch::allclose(got, expected, 1e-5, 1e-5)) << (got - expected).abs().max();
}

TEST(SimpleCNN, BadConfigsThrow) {
  EXPECT_THROW(SimpleCNN({8, 8}, {3}, true, 1, 10), scenic::Error);
  EXPECT_THROW(SimpleCNN({8}, {4}, true, 1, 10), scenic::Error);
  auto meta = mnist_meta();
  meta.input_shape = {-1, 784};
  auto cfg = common::ConfigDict::from_yaml_string("num_filters: [8]\nkernel_sizes: [3]\n");
  EXPECT_THROW(SimpleCNN::from_config(cfg, meta), scenic::Error);
}

// A small config for each registered model (YAML, with Scenic's keys).
std::string small_config(const std::string& name) {
  std::string yaml = "model_name: " + name + "\n";
  if (name == "fully_connected_classification") return yaml + "model:\n  hid_sizes: [16]\n";
  if (name == "simple_cnn_classification")
    return yaml + "model:\n  num_filters: [4, 8]\n  kernel_sizes: [3, 3]\n  use_bias: true\n";
  if (name.starts_with("resnet_")) return yaml + "num_filters: 4\nnum_layers: 9\n";  // Scenic: top level
  if (name.starts_with("axial_resnet_"))
    return yaml + "num_layers: 5\nwidth_factor: 0.5\naxial_attention_configs: {num_heads: 2}\n";
  if (name.starts_with("bit_resnet_")) return yaml + "num_layers: 5\nwidth_factor: 0.125\ngn_num_groups: 4\n";
  if (name.starts_with("hybrid_vit_"))
    return yaml + "model:\n  resnet: {num_layers: [1], width_factor: 0.5}\n  patches: {size: [1, 1]}\n"
                  "  hidden_size: 8\n  mlp_dim: 16\n  num_heads: 2\n  num_layers: 1\n"
                  "  representation_size: null\n  classifier: gap\n";
  if (name.starts_with("mixer_"))
    return yaml + "model:\n  patch_size: [7, 7]\n  hidden_size: 8\n  num_layers: 1\n  channels_mlp_dim: 16\n"
                  "  sequence_mlp_dim: 8\n";
  return yaml +
         "model:\n"
         "  patches: {size: [7, 7]}\n"
         "  hidden_size: 16\n"
         "  mlp_dim: 32\n"
         "  num_heads: 2\n"
         "  num_layers: 1\n"
         "  representation_size: null\n"
         "  classifier: token\n"
         "  dropout_rate: 0.0\n"
         "  attention_dropout_rate: 0.0\n";
}

TEST(BaselineRegistry, RegistersScenicNames) {
  model::ModelRegistry registry;
  register_baseline_models(registry);
  EXPECT_EQ(registry.names(),
            (std::vector<std::string>{"axial_resnet_classification", "axial_resnet_multilabel_classification",
                                      "bit_resnet_classification", "bit_resnet_multilabel_classification", "detr",
                                      "fully_connected_classification", "hybrid_vit_classification",
                                      "hybrid_vit_multilabel_classification", "mixer_classification",
                                      "mixer_multilabel_classification", "resnet_classification",
                                      "resnet_multilabel_classification", "simple_cnn_classification",
                                      "simple_cnn_segmentation", "unet_segmentation", "vit_classification",
                                      "vit_multilabel_classification"}));
  // Registering twice is an error, not a silent overwrite.
  EXPECT_THROW(register_baseline_models(registry), scenic::Error);
  // Unknown names suggest the closest one.
  try {
    registry.get("vit_clasification");
    ADD_FAILURE() << "expected a scenic::Error";
  } catch (const scenic::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vit_classification"), std::string::npos) << e.what();
  }
}

TEST(BaselineRegistry, EveryModelBuildsAndGivesLogits) {
  model::ModelRegistry registry;
  register_baseline_models(registry);
  torch::manual_seed(0);
  auto x = torch::randn({3, 1, 28, 28});
  dataset::Batch batch{{"inputs", x},
                       {"label", torch::tensor({1, 2, 3}, torch::kLong)},
                       {"batch_mask", torch::tensor({1.f, 1.f, 0.f})}};
  for (const auto& name : registry.names()) {
    if (name.ends_with("_segmentation")) continue;  // per-pixel logits: tested with their networks
    if (name == "detr") continue;                   // set predictions: detr/detr_test.cc
    SCOPED_TRACE(name);
    auto config = common::ConfigDict::from_yaml_string(small_config(name));
    auto model = registry.get(name)(config, mnist_meta());
    auto net = model->build_network();
    auto logits = net->forward(x);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 10}));
    auto loss = model->loss_function(logits, batch, net.get());
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_TRUE(std::isfinite(loss.item<double>()));
    auto metrics = model->get_metrics_fn("validation")(logits, batch);
    const bool multilabel = name.ends_with("multilabel_classification");
    EXPECT_EQ(dynamic_cast<const model::MultiLabelClassificationModel*>(model.get()) != nullptr, multilabel);
    EXPECT_TRUE(dynamic_cast<const model::ClassificationModel*>(model.get()) != nullptr);
    ASSERT_TRUE(metrics.count(multilabel ? "prec@1" : "accuracy"));
    ASSERT_TRUE(metrics.count("loss"));
    EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 2.0);  // the padded example is left out
    // Every key under `model` was read (model_name is read by main, not by the model).
    EXPECT_EQ(config.unused_keys(), (std::vector<std::string>{"model_name"})) << config.to_yaml();
  }
}

TEST(BaselineRegistry, ViTLogitsStartAtZeroAndLossIsLogK) {
  // The zero-initialised head gives uniform predictions: softmax CE = log 10 = 2.302585093;
  // sigmoid CE per example = 10 * log 2 = 6.931471806 (every logit 0).
  model::ModelRegistry registry;
  register_baseline_models(registry);
  auto x = torch::randn({2, 1, 28, 28});
  dataset::Batch batch{{"label", torch::tensor({4, 7}, torch::kLong)}};
  for (const char* name : {"vit_classification", "vit_multilabel_classification"}) {
    auto model = registry.get(name)(common::ConfigDict::from_yaml_string(small_config(name)), mnist_meta());
    auto net = model->build_network();
    auto loss = model->loss_function(net->forward(x), batch, net.get()).item<double>();
    EXPECT_NEAR(loss, std::string(name) == "vit_classification" ? 2.302585093 : 6.931471806, 1e-5) << name;
  }
}

TEST(BaselineRegistry, DefaultNetworkConfigsWhenModelBlockIsAbsent) {
  model::ModelRegistry registry;
  register_baseline_models(registry);
  // FC default: hid_sizes [64, 64] -> 55,050 parameters on 28x28x1 with 10 classes.
  auto fc_config = common::ConfigDict::from_yaml_string("model_name: fully_connected_classification\n");
  auto fc = registry.get("fully_connected_classification")(fc_config, mnist_meta());
  EXPECT_EQ(count_params(*fc->build_network()), 55'050);
  EXPECT_EQ(fc_config.get<std::vector<int64_t>>("model.hid_sizes"), (std::vector<int64_t>{64, 64}));
  // ViT default (Ti-like, patch 4 on 28x28: 49 + 1 tokens) builds.
  auto vit = registry.get("vit_classification")(
      common::ConfigDict::from_yaml_string("model_name: vit_classification\n"), mnist_meta());
  auto net = vit->build_network();
  EXPECT_EQ(net->named_parameters()["Transformer.posembed_input.pos_embedding"].sizes(),
            (std::vector<int64_t>{1, 50, 192}));
}

}  // namespace
}  // namespace scenic::baselines
