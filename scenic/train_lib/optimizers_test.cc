#include "scenic/train_lib/optimizers.h"

#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"
#include "scenic/train_lib/extra_optimizers.h"

namespace scenic::train {
namespace {

using common::ConfigDict;

// ---------------------------------------------------------------------------------
// Independent reference: optax's sgd / adam / adamw recurrences on plain doubles.
// Parameters are a flat list of scalars; `decayed[i]` says whether weight decay
// applies to scalar i (optax's mask).

struct RefConfig {
  std::string name;  // sgd | adam | adamw
  std::optional<double> momentum;
  bool nesterov = false;
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double weight_decay = 0;
};

constexpr int kSteps = 4;
double lr_at(int t) { return 0.1 / (t + 1); }

// Fixed gradient for scalar i at step t (independent of the parameters).
double grad_at(int i, int t) { return std::sin(1.3 * i + 0.7 * t) + 0.1 * (i % 3) - 0.05 * t; }

std::vector<double> reference_run(const RefConfig& c, std::vector<double> p,
                                  const std::vector<bool>& decayed) {
  const size_t n = p.size();
  std::vector<double> trace(n, 0.0), mu(n, 0.0), nu(n, 0.0);
  for (int t = 0; t < kSteps; ++t) {
    const double lr = lr_at(t);
    for (size_t i = 0; i < n; ++i) {
      double g = grad_at(static_cast<int>(i), t);
      double update;
      if (c.name == "sgd") {
        if (decayed[i]) g += c.weight_decay * p[i];  // optax.add_decayed_weights
        if (c.momentum) {                            // optax.trace
          trace[i] = g + *c.momentum * trace[i];
          update = c.nesterov ? g + *c.momentum * trace[i] : trace[i];
        } else {
          update = g;
        }
      } else {  // optax.scale_by_adam (eps_root = 0), then adamw's decay
        const int k = t + 1;
        mu[i] = (1 - c.b1) * g + c.b1 * mu[i];
        nu[i] = (1 - c.b2) * g * g + c.b2 * nu[i];
        const double mu_hat = mu[i] / (1 - std::pow(c.b1, k));
        const double nu_hat = nu[i] / (1 - std::pow(c.b2, k));
        update = mu_hat / (std::sqrt(nu_hat) + c.eps);
        if (c.name == "adamw" && decayed[i]) update += c.weight_decay * p[i];
      }
      p[i] -= lr * update;  // optax.scale_by_learning_rate
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------
// The same run through make_optimizer: a [2, 3] kernel and a [3] bias.

const std::vector<double> kInit = {0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 0.3, -0.2, 0.1};
constexpr size_t kKernelSize = 6;  // the first 6 scalars are the 2-D kernel

struct TorchRun {
  std::vector<double> params;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

TorchRun torch_run(const ConfigDict& config, torch::Dtype dtype = torch::kDouble) {
  auto opts = torch::TensorOptions().dtype(dtype);
  std::vector<double> w0(kInit.begin(), kInit.begin() + kKernelSize);
  std::vector<double> b0(kInit.begin() + kKernelSize, kInit.end());
  torch::Tensor w = torch::tensor(w0, opts).reshape({2, 3}).requires_grad_(true);
  torch::Tensor b = torch::tensor(b0, opts).requires_grad_(true);
  TorchRun run;
  run.optimizer = make_optimizer(config, NamedParams{{"dense/kernel", w}, {"dense/bias", b}});
  for (int t = 0; t < kSteps; ++t) {
    std::vector<double> gw, gb;
    for (size_t i = 0; i < kInit.size(); ++i)
      (i < kKernelSize ? gw : gb).push_back(grad_at(static_cast<int>(i), t));
    w.mutable_grad() = torch::tensor(gw, opts).reshape({2, 3});
    b.mutable_grad() = torch::tensor(gb, opts);
    set_learning_rate(*run.optimizer, lr_at(t));
    run.optimizer->step();
  }
  torch::Tensor all = torch::cat({w.detach().flatten(), b.detach()}).to(torch::kDouble);
  run.params.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  return run;
}

std::vector<bool> decay_all() { return std::vector<bool>(kInit.size(), true); }
std::vector<bool> decay_kernel_only() {
  std::vector<bool> d(kInit.size(), false);
  for (size_t i = 0; i < kKernelSize; ++i) d[i] = true;
  return d;
}

void expect_matches(const std::string& yaml, const RefConfig& ref,
                    const std::vector<bool>& decayed, double tol = 1e-12) {
  SCOPED_TRACE(yaml);
  ConfigDict config = ConfigDict::from_yaml_string(yaml);
  const TorchRun run = torch_run(config);
  const std::vector<double> expected = reference_run(ref, kInit, decayed);
  ASSERT_EQ(run.params.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(run.params[i], expected[i], tol) << "scalar " << i;
    // Every test config moves every parameter.
    EXPECT_GT(std::abs(run.params[i] - kInit[i]), 1e-3) << "scalar " << i;
  }
  EXPECT_TRUE(config.unused_keys().empty());
}

std::string error_of(const std::string& yaml) {
  try {
    ConfigDict config = ConfigDict::from_yaml_string(yaml);
    torch_run(config);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------

TEST(OptimizersTest, Sgd) {
  expect_matches("optimizer_configs:\n  optimizer: sgd\n", {.name = "sgd"}, decay_all());
}

TEST(OptimizersTest, SgdMomentum) {
  expect_matches("optimizer_configs:\n  optimizer: sgd\n  momentum: 0.9\n",
                 {.name = "sgd", .momentum = 0.9}, decay_all());
}

TEST(OptimizersTest, SgdNesterov) {
  expect_matches("optimizer_configs:\n  optimizer: sgd\n  momentum: 0.8\n  nesterov: true\n",
                 {.name = "sgd", .momentum = 0.8, .nesterov = true}, decay_all());
}

TEST(OptimizersTest, SgdCoupledWeightDecay) {
  expect_matches(
      "optimizer_configs:\n  optimizer: sgd\n  momentum: 0.9\n  weight_decay: 0.5\n",
      {.name = "sgd", .momentum = 0.9, .weight_decay = 0.5}, decay_all());
  expect_matches(
      "optimizer_configs:\n  optimizer: sgd\n  momentum: 0.9\n  weight_decay: 0.5\n"
      "  skip_scale_and_bias_regularization: true\n",
      {.name = "sgd", .momentum = 0.9, .weight_decay = 0.5}, decay_kernel_only());
}

TEST(OptimizersTest, Adam) {
  expect_matches("optimizer_configs:\n  optimizer: adam\n", {.name = "adam"}, decay_all());
  expect_matches("optimizer_configs:\n  optimizer: adam\n  b1: 0.8\n  b2: 0.95\n  eps: 0.01\n",
                 {.name = "adam", .b1 = 0.8, .b2 = 0.95, .eps = 0.01}, decay_all());
}

TEST(OptimizersTest, AdamW) {
  expect_matches("optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.3\n",
                 {.name = "adamw", .weight_decay = 0.3}, decay_all());
  expect_matches(
      "optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.3\n"
      "  skip_scale_and_bias_regularization: true\n",
      {.name = "adamw", .weight_decay = 0.3}, decay_kernel_only());
}

TEST(OptimizersTest, AdamWDefaultWeightDecayIsOptaxs) {
  ConfigDict config = ConfigDict::from_yaml_string("optimizer_configs:\n  optimizer: adamw\n");
  const TorchRun run = torch_run(config);
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(run.optimizer.get());
  ASSERT_NE(adamw, nullptr);
  ASSERT_EQ(adamw->param_groups().size(), 1u);
  auto& o = static_cast<torch::optim::AdamWOptions&>(adamw->param_groups()[0].options());
  EXPECT_DOUBLE_EQ(o.weight_decay(), 1e-4);
  EXPECT_DOUBLE_EQ(config.get<double>("optimizer_configs.weight_decay"), 1e-4);  // recorded
  const auto expected = reference_run({.name = "adamw", .weight_decay = 1e-4}, kInit, decay_all());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(run.params[i], expected[i], 1e-12);

  // As in Scenic, the skip flag only builds a mask when weight_decay is given.
  ConfigDict skip = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adamw\n  skip_scale_and_bias_regularization: true\n");
  EXPECT_EQ(torch_run(skip).optimizer->param_groups().size(), 1u);
}

TEST(OptimizersTest, Float32MatchesToRounding) {
  ConfigDict config = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.3\n");
  const TorchRun run = torch_run(config, torch::kFloat);
  const auto expected = reference_run({.name = "adamw", .weight_decay = 0.3}, kInit, decay_all());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(run.params[i], expected[i], 1e-5);
}

TEST(OptimizersTest, SkipScaleAndBiasUsesTwoParamGroups) {
  ConfigDict config = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.3\n"
      "  skip_scale_and_bias_regularization: true\n");
  const TorchRun run = torch_run(config);
  auto& groups = run.optimizer->param_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].params()[0].dim(), 2);
  EXPECT_EQ(groups[1].params()[0].dim(), 1);
  EXPECT_DOUBLE_EQ(
      static_cast<torch::optim::AdamWOptions&>(groups[0].options()).weight_decay(), 0.3);
  EXPECT_DOUBLE_EQ(
      static_cast<torch::optim::AdamWOptions&>(groups[1].options()).weight_decay(), 0.0);
  set_learning_rate(*run.optimizer, 0.25);
  for (auto& g : groups) EXPECT_DOUBLE_EQ(g.options().get_lr(), 0.25);
}

TEST(OptimizersTest, LegacyNames) {
  // momentum -> sgd with flax.optim's default momentum 0.9.
  expect_matches("optimizer: momentum\noptimizer_configs: {}\n",
                 {.name = "sgd", .momentum = 0.9}, decay_all());
  expect_matches("optimizer: momentum\noptimizer_configs:\n  momentum: 0.5\n",
                 {.name = "sgd", .momentum = 0.5}, decay_all());
  // nesterov -> sgd(nesterov=True); without a momentum value optax has no trace.
  expect_matches("optimizer: nesterov\noptimizer_configs:\n  momentum: 0.8\n",
                 {.name = "sgd", .momentum = 0.8, .nesterov = true}, decay_all());
  expect_matches("optimizer: nesterov\n", {.name = "sgd"}, decay_all());
  // adam + weight_decay -> adamw; flax.optim argument names are renamed.
  expect_matches(
      "optimizer: adam\noptimizer_configs:\n  weight_decay: 0.2\n  beta1: 0.8\n  beta2: 0.95\n"
      "  epsilon: 0.001\n",
      {.name = "adamw", .b1 = 0.8, .b2 = 0.95, .eps = 0.001, .weight_decay = 0.2}, decay_all());
  expect_matches("optimizer: adam\noptimizer_configs:\n  beta1: 0.8\n",
                 {.name = "adam", .b1 = 0.8}, decay_all());
  // A top-level skip flag is copied into the optimizer config (the MNIST baseline style).
  expect_matches(
      "optimizer: momentum\nskip_scale_and_bias_regularization: true\n"
      "optimizer_configs:\n  momentum: 0.9\n  weight_decay: 0.1\n",
      {.name = "sgd", .momentum = 0.9, .weight_decay = 0.1}, decay_kernel_only());
  // Optax names work in the legacy place too.
  expect_matches("optimizer: adamw\noptimizer_configs:\n  weight_decay: 0.3\n",
                 {.name = "adamw", .weight_decay = 0.3}, decay_all());

  ConfigDict c =
      ConfigDict::from_yaml_string("optimizer: adam\noptimizer_configs:\n  weight_decay: 0.1\n");
  EXPECT_NE(dynamic_cast<torch::optim::AdamW*>(torch_run(c).optimizer.get()), nullptr);
  ConfigDict n =
      ConfigDict::from_yaml_string("optimizer: nesterov\noptimizer_configs:\n  momentum: 0.9\n");
  const TorchRun nesterov_run = torch_run(n);
  auto* sgd = dynamic_cast<torch::optim::SGD*>(nesterov_run.optimizer.get());
  ASSERT_NE(sgd, nullptr);
  auto& o = static_cast<torch::optim::SGDOptions&>(sgd->param_groups()[0].options());
  EXPECT_TRUE(o.nesterov());
  EXPECT_DOUBLE_EQ(o.momentum(), 0.9);
}

TEST(OptimizersTest, ArgumentsAnOptimizerDoesNotTakeStayUnread) {
  // New style has no flax.optim renames, and optax.adam takes no weight_decay.
  ConfigDict c = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adam\n  beta1: 0.8\n  weight_decay: 0.1\n  b3: 1\n");
  torch_run(c);
  const auto unused = c.unused_keys();
  EXPECT_EQ(unused, (std::vector<std::string>{"optimizer_configs.beta1",
                                              "optimizer_configs.weight_decay",
                                              "optimizer_configs.b3"}));
  EXPECT_THROW(c.check_all_used(), Error);
}

TEST(OptimizersTest, Errors) {
  std::string e = error_of("optimizer_configs:\n  optimizer: adamm\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.optimizer")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'adam'")) << e;
  EXPECT_TRUE(contains(e, "sgd, adam, adamw")) << e;

  e = error_of("optimizer: momentun\n");
  EXPECT_TRUE(contains(e, "'optimizer'")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'momentum'")) << e;

  e = error_of("optimizer: adam\noptimizer_configs:\n  optimizer: adam\n");
  EXPECT_TRUE(contains(e, "both set")) << e;

  e = error_of("optimizer_configs:\n  optimizer: lion\n");
  EXPECT_TRUE(contains(e, "not supported yet")) << e;

  e = error_of("model_name: x\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.optimizer")) << e;

  e = error_of("optimizer_configs:\n  optimizer: adam\n  b1: 1.0\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.b1")) << e;

  e = error_of("optimizer_configs:\n  optimizer: sgd\n  momentum: -0.1\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.momentum")) << e;

  e = error_of("optimizer_configs:\n  optimizer: sgd\n  momentum: fast\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.momentum")) << e;

  e = error_of("optimizer: adam\noptimizer_configs:\n  beta1: 0.8\n  b1: 0.9\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.beta1")) << e;

  e = error_of(
      "optimizer_configs:\n  optimizer: sgd\n  grad_clip:\n    clip_method: clip_by_globalnorm\n"
      "    clip_value: 1\n");
  EXPECT_TRUE(contains(e, "optimizer_configs.grad_clip.clip_method")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'clip_by_global_norm'")) << e;
}

TEST(OptimizersTest, GlobalNorm) {
  torch::Tensor a = torch::tensor({3.0f, 4.0f});
  torch::Tensor b = torch::tensor({{12.0f}});
  torch::Tensor norm = global_norm({a, torch::Tensor(), b});
  EXPECT_EQ(norm.dim(), 0);
  EXPECT_EQ(norm.scalar_type(), torch::kFloat);
  EXPECT_NEAR(norm.item<float>(), 13.0f, 1e-6);
  EXPECT_EQ(global_norm({}).item<float>(), 0.0f);
  EXPECT_EQ(global_norm({a.to(torch::kDouble), b}).scalar_type(), torch::kDouble);
}

TEST(OptimizersTest, ClipGradGlobalNorm) {
  auto make = [] {
    torch::Tensor p = torch::zeros({2}).requires_grad_(true);
    torch::Tensor q = torch::zeros({1, 1}).requires_grad_(true);
    torch::Tensor r = torch::zeros({3}).requires_grad_(true);  // no gradient
    p.mutable_grad() = torch::tensor({3.0f, 4.0f});
    q.mutable_grad() = torch::tensor({{12.0f}});
    return std::vector<torch::Tensor>{p, q, r};
  };
  auto params = make();
  torch::Tensor norm = clip_grad_global_norm(params, 6.5);
  EXPECT_NEAR(norm.item<float>(), 13.0f, 1e-6);
  EXPECT_NEAR(params[0].grad()[0].item<float>(), 1.5f, 1e-6);
  EXPECT_NEAR(params[0].grad()[1].item<float>(), 2.0f, 1e-6);
  EXPECT_NEAR(params[1].grad()[0][0].item<float>(), 6.0f, 1e-6);
  EXPECT_FALSE(params[2].grad().defined());
  EXPECT_NEAR(global_norm({params[0].grad(), params[1].grad()}).item<float>(), 6.5f, 1e-5);

  params = make();
  norm = clip_grad_global_norm(params, 20.0);  // below the limit: unchanged
  EXPECT_NEAR(norm.item<float>(), 13.0f, 1e-6);
  EXPECT_EQ(params[0].grad()[1].item<float>(), 4.0f);
  EXPECT_EQ(params[1].grad()[0][0].item<float>(), 12.0f);

  // The trainers' form: no max_grad_norm measures only; with one it clips.
  params = make();
  EXPECT_NEAR(clip_or_measure_grads(params, std::nullopt).item<float>(), 13.0f, 1e-6);
  EXPECT_EQ(params[1].grad()[0][0].item<float>(), 12.0f);
  EXPECT_NEAR(clip_or_measure_grads(params, 6.5).item<float>(), 13.0f, 1e-6);
  EXPECT_NEAR(params[1].grad()[0][0].item<float>(), 6.0f, 1e-6);
}

// ---------------------------------------------------------------------------------
// Freezing, weight-decay masks and per-group learning rates (numbers against optax in
// extra_optimizers_test.cc; here the structure and the errors).

struct Net3 {
  torch::Tensor conv_w = torch::ones({2, 2}).requires_grad_(true);
  torch::Tensor conv_b = torch::ones({2}).requires_grad_(true);
  torch::Tensor head_w = torch::ones({2, 2}).requires_grad_(true);
  NamedParams named() const {
    return {{"backbone.conv.weight", conv_w}, {"backbone.conv.bias", conv_b}, {"head.weight", head_w}};
  }
};

std::string make_error(const std::string& yaml) {
  Net3 net;
  return scenic::testing::error_of([&] {
    ConfigDict config = ConfigDict::from_yaml_string(yaml);
    make_optimizer(config, net.named());
  });
}

TEST(OptimizersTest, FreezeByRegexLeavesParamsBitIdentical) {
  Net3 net;
  const torch::Tensor conv_w0 = net.conv_w.detach().clone();
  const torch::Tensor conv_b0 = net.conv_b.detach().clone();
  const torch::Tensor head_w0 = net.head_w.detach().clone();
  // Scenic's '/' form; weight decay would move a frozen parameter if it were applied.
  ConfigDict config = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.5\n"
      "  freeze_params_reg_exp: 'backbone/conv'\n");
  EXPECT_EQ(frozen_parameters(config, net.named()),
            (std::vector<std::string>{"backbone.conv.weight", "backbone.conv.bias"}));
  auto opt = make_optimizer(config, net.named());
  EXPECT_FALSE(net.conv_w.requires_grad());
  EXPECT_FALSE(net.conv_b.requires_grad());
  EXPECT_TRUE(net.head_w.requires_grad());
  ASSERT_EQ(opt->param_groups().size(), 1u);
  ASSERT_EQ(opt->param_groups()[0].params().size(), 1u);
  for (int t = 0; t < 3; ++t) {
    opt->zero_grad();
    (net.conv_w.sum() * net.head_w.sum() + net.conv_b.sum()).backward();
    set_learning_rate(*opt, 0.1);
    opt->step();
  }
  EXPECT_TRUE(torch::equal(net.conv_w, conv_w0));
  EXPECT_TRUE(torch::equal(net.conv_b, conv_b0));
  EXPECT_FALSE(net.conv_w.grad().defined());
  EXPECT_GT((net.head_w - head_w0).abs().min().item<float>(), 0.1f);

  // Our dotted form matches too.
  Net3 other;
  ConfigDict dotted = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: sgd\n  freeze_params_reg_exp: 'conv\\.bias$'\n");
  EXPECT_EQ(frozen_parameters(dotted, other.named()), (std::vector<std::string>{"backbone.conv.bias"}));
}

TEST(OptimizersTest, FreezeErrors) {
  std::string e = make_error("optimizer_configs:\n  optimizer: sgd\n  freeze_params_reg_exp: '.*'\n");
  EXPECT_CONTAINS(e, "matches every parameter");
  e = make_error("optimizer_configs:\n  optimizer: sgd\n  freeze_params_reg_exp: '(conv'\n");
  EXPECT_CONTAINS(e, "optimizer_configs.freeze_params_reg_exp");
  EXPECT_CONTAINS(e, "invalid regular expression");
}

TEST(OptimizersTest, WeightDecayMasksForNewOptimizers) {
  Net3 net;
  ConfigDict lamb = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: lamb\n  weight_decay: 0.1\n"
      "  skip_scale_and_bias_regularization: true\n");
  auto opt = make_optimizer(lamb, net.named());
  ASSERT_EQ(opt->param_groups().size(), 2u);
  EXPECT_EQ(opt->param_groups()[0].params().size(), 2u);  // the two 2-D kernels
  EXPECT_EQ(static_cast<LambOptions&>(opt->param_groups()[0].options()).weight_decay(), 0.1);
  EXPECT_EQ(opt->param_groups()[1].params()[0].dim(), 1);
  EXPECT_EQ(static_cast<LambOptions&>(opt->param_groups()[1].options()).weight_decay(), 0.0);

  ConfigDict adafactor = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adafactor\n  weight_decay_rate: 0.01\n"
      "  skip_scale_and_bias_regularization: true\n  clipping_threshold: null\n");
  opt = make_optimizer(adafactor, net.named());
  ASSERT_EQ(opt->param_groups().size(), 2u);
  auto& decayed = static_cast<AdafactorOptions&>(opt->param_groups()[0].options());
  auto& exempt = static_cast<AdafactorOptions&>(opt->param_groups()[1].options());
  EXPECT_EQ(decayed.weight_decay_rate(), std::optional<double>(0.01));
  EXPECT_FALSE(exempt.weight_decay_rate());
  EXPECT_FALSE(decayed.clipping_threshold());  // explicit null: no clipping
  EXPECT_TRUE(adafactor.unused_keys().empty());

  EXPECT_CONTAINS(make_error("optimizer_configs:\n  optimizer: adafactor\n  decay_offset: 10\n"),
                  "optimizer_configs.decay_offset");
}

TEST(OptimizersTest, ParamGroupLearningRates) {
  Net3 net;
  ConfigDict config = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adamw\n  weight_decay: 0.1\n"
      "  skip_scale_and_bias_regularization: true\n"
      "  param_groups:\n    - {regex: '^backbone/', lr_multiplier: 0.1}\n");
  auto opt = make_optimizer(config, net.named());
  // Groups: default decayed (head.weight), backbone decayed (conv.weight), backbone
  // exempt (conv.bias).
  auto& groups = opt->param_groups();
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_TRUE(groups[0].params()[0].is_same(net.head_w));
  EXPECT_TRUE(groups[1].params()[0].is_same(net.conv_w));
  EXPECT_TRUE(groups[2].params()[0].is_same(net.conv_b));
  set_learning_rate(*opt, 0.5);
  EXPECT_DOUBLE_EQ(groups[0].options().get_lr(), 0.5);
  EXPECT_DOUBLE_EQ(groups[1].options().get_lr(), 0.05);
  EXPECT_DOUBLE_EQ(groups[2].options().get_lr(), 0.05);
  EXPECT_EQ(lr_multiplier(groups[1].options()), 0.1);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(groups[1].options()).weight_decay(), 0.1);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(groups[2].options()).weight_decay(), 0.0);
  EXPECT_TRUE(config.unused_keys().empty());
}

TEST(OptimizersTest, ParamGroupErrors) {
  const std::string base = "optimizer_configs:\n  optimizer: sgd\n  param_groups:\n";
  EXPECT_CONTAINS(make_error(base + "    - {regex: encoder, lr_multiplier: 0.1}\n"),
                  "optimizer_configs.param_groups[0].regex' matches no parameter");
  EXPECT_CONTAINS(make_error(base + "    - {regex: head}\n"),
                  "optimizer_configs.param_groups[0].lr_multiplier");
  EXPECT_CONTAINS(make_error(base + "    - {regex: head, lr_multiplier: 1, lr: 2}\n"),
                  "optimizer_configs.param_groups[0].lr' is unknown");
  EXPECT_CONTAINS(make_error(base + "    - {regex: head, lr_multiplier: -1}\n"), ">= 0");
  EXPECT_CONTAINS(make_error("optimizer_configs:\n  optimizer: sgd\n  param_groups: 3\n"),
                  "must be a list");
}

}  // namespace
}  // namespace scenic::train
