// make_optimizer's optimizers, clipping, freezing and per-group learning rates against
// trajectories from real optax (tools/fixtures/optimizer_reference.py ->
// testdata/optimizer_reference.json): the same parameters, gradients and per-step
// learning rates, three steps, parameters compared after every step.
#include "scenic/train_lib/extra_optimizers.h"

#include <gtest/gtest.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/config.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::train {
namespace {

using common::ConfigDict;
using Json = nlohmann::json;

const Json& fixture() {
  static const Json j = [] {
    const std::string path =
        std::string(SCENIC_SOURCE_DIR) + "/scenic/train_lib/testdata/optimizer_reference.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("missing fixture " + path);
    return Json::parse(in);
  }();
  return j;
}

const Json& find_case(const std::string& name) {
  for (const auto& c : fixture()["cases"])
    if (c["name"] == name) return c;
  throw std::runtime_error("no fixture case " + name);
}

torch::Tensor from_json(const Json& values, const std::vector<int64_t>& shape, torch::Dtype dtype) {
  std::vector<double> v = values.get<std::vector<double>>();
  return torch::tensor(v, torch::kDouble).reshape(shape).to(dtype);
}

struct Trajectory {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<torch::Tensor> params;
  ConfigDict config;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
};

Trajectory start(const std::string& yaml, torch::Dtype dtype) {
  Trajectory run;
  NamedParams named;
  for (const auto& p : fixture()["params"]) {
    run.names.push_back(p["name"].get<std::string>());
    run.shapes.push_back(p["shape"].get<std::vector<int64_t>>());
    run.params.push_back(from_json(p["init"], run.shapes.back(), dtype).requires_grad_(true));
    named.emplace_back(run.names.back(), run.params.back());
  }
  run.config = ConfigDict::from_yaml_string(yaml);
  run.optimizer = make_optimizer(run.config, named);
  return run;
}

// Update number t (0-based) with the fixture's gradients and learning rate.
void step(Trajectory& run, int t) {
  const Json& grads = fixture()["grads"][t];
  for (size_t i = 0; i < run.params.size(); ++i) {
    if (!run.params[i].requires_grad()) continue;  // frozen: never gets a gradient
    run.params[i].mutable_grad() =
        from_json(grads[run.names[i]], run.shapes[i], run.params[i].scalar_type());
  }
  set_learning_rate(*run.optimizer, fixture()["learning_rates"][t].get<double>());
  run.optimizer->step();
}

// Largest |ours - optax| over all parameters after update t.
double max_error(const Trajectory& run, const Json& expected_step) {
  double err = 0;
  for (size_t i = 0; i < run.params.size(); ++i) {
    torch::Tensor want = from_json(expected_step[run.names[i]], run.shapes[i], torch::kDouble);
    err = std::max(err, (run.params[i].detach().to(torch::kDouble) - want).abs().max().item<double>());
  }
  return err;
}

// Adafactor's decay schedule is float32 in optax (`_decay_rate_pow`) even with x64, so
// its second moments differ from ours (double) at 1e-8 relative.
double tolerance(const std::string& name) { return name.rfind("adafactor", 0) == 0 ? 1e-8 : 1e-12; }

TEST(ExtraOptimizersTest, EveryCaseMatchesOptax) {
  ASSERT_GE(fixture()["cases"].size(), 16u);
  for (const auto& c : fixture()["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    Trajectory run = start(c["yaml"].get<std::string>(), torch::kDouble);
    const std::vector<torch::Tensor> init = [&] {
      std::vector<torch::Tensor> v;
      for (const auto& p : run.params) v.push_back(p.detach().clone());
      return v;
    }();
    for (int t = 0; t < 3; ++t) {
      step(run, t);
      EXPECT_LT(max_error(run, c["expected"][t]), tolerance(name)) << "after update " << t + 1;
    }
    EXPECT_TRUE(run.config.unused_keys().empty()) << run.config.unused_keys().front();
    // Every case moves every trainable parameter (learning-rate-0 groups excepted);
    // frozen ones stay bit-identical.
    for (size_t i = 0; i < init.size(); ++i) {
      const bool frozen = !run.params[i].requires_grad();
      const bool lr_zero = name == "sgd_nesterov_param_groups" && run.names[i] == "encoder.posemb";
      if (frozen || lr_zero) {
        EXPECT_TRUE(torch::equal(run.params[i].detach(), init[i])) << run.names[i];
      } else {
        EXPECT_GT((run.params[i].detach() - init[i]).abs().min().item<double>(), 1e-6) << run.names[i];
      }
    }
  }
}

TEST(ExtraOptimizersTest, Float32MatchesToRounding) {
  for (const auto& c : fixture()["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    Trajectory run = start(c["yaml"].get<std::string>(), torch::kFloat);
    for (int t = 0; t < 3; ++t) step(run, t);
    EXPECT_LT(max_error(run, c["expected"][2]), 2e-5);
  }
}

TEST(ExtraOptimizersTest, CheckpointRoundTripContinuesExactly) {
  for (const std::string name :
       {"lamb_weight_decay_mask", "adafactor_factored_momentum_decay", "adafactor_default",
        "rmsprop_centered_nesterov", "rmsprop_variants", "adamw_param_groups_with_mask",
        "sgd_weight_decay_adaptive_grad_clip"}) {
    SCOPED_TRACE(name);
    const std::string yaml = find_case(name)["yaml"].get<std::string>();
    Trajectory straight = start(yaml, torch::kDouble);
    for (int t = 0; t < 3; ++t) step(straight, t);

    Trajectory first = start(yaml, torch::kDouble);
    step(first, 0);
    std::stringstream saved;
    torch::save(*first.optimizer, saved);
    Trajectory resumed = start(yaml, torch::kDouble);  // fresh optimizer, state from the archive
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < resumed.params.size(); ++i) resumed.params[i].copy_(first.params[i]);
    }
    torch::load(*resumed.optimizer, saved);
    for (int t = 1; t < 3; ++t) step(resumed, t);
    for (size_t i = 0; i < straight.params.size(); ++i)
      EXPECT_TRUE(torch::equal(straight.params[i], resumed.params[i])) << straight.names[i];
    // The group lr multipliers come from the config and survive the load.
    for (size_t g = 0; g < straight.optimizer->param_groups().size(); ++g)
      EXPECT_EQ(lr_multiplier(straight.optimizer->param_groups()[g].options()),
                lr_multiplier(resumed.optimizer->param_groups()[g].options()));
  }
}

TEST(ExtraOptimizersTest, AdafactorFactoredDims) {
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(adafactor_factored_dims({128, 256}, true, 128), P(0, 1));
  EXPECT_EQ(adafactor_factored_dims({256, 128}, true, 128), P(1, 0));
  EXPECT_EQ(adafactor_factored_dims({128, 128}, true, 128), P(0, 1));  // ties: by position
  EXPECT_EQ(adafactor_factored_dims({4, 3, 2, 2}, true, 3), P(1, 0));
  EXPECT_EQ(adafactor_factored_dims({3, 200, 300}, true, 128), P(1, 2));
  EXPECT_FALSE(adafactor_factored_dims({127, 4096}, true, 128));
  EXPECT_FALSE(adafactor_factored_dims({4096}, true, 128));
  EXPECT_FALSE(adafactor_factored_dims({256, 256}, false, 128));
}

TEST(ExtraOptimizersTest, AdafactorKeepsFactoredMoments) {
  // [5, 6] with min_dim_size_to_factor 3: d1 = 0 (5), d0 = 1 (6); v_row drops d0 -> [5],
  // v_col drops d1 -> [6]. Unfactored 1-D bias keeps a full v.
  torch::Tensor w = torch::ones({5, 6}).requires_grad_(true);
  torch::Tensor b = torch::ones({5}).requires_grad_(true);
  ConfigDict config = ConfigDict::from_yaml_string(
      "optimizer_configs:\n  optimizer: adafactor\n  min_dim_size_to_factor: 3\n");
  auto opt = make_optimizer(config, NamedParams{{"w", w}, {"b", b}});
  w.mutable_grad() = torch::full({5, 6}, 2.0);
  b.mutable_grad() = torch::full({5}, 2.0);
  set_learning_rate(*opt, 0.1);
  opt->step();
  auto& sw = static_cast<AdafactorParamState&>(*opt->state().at(w.unsafeGetTensorImpl()));
  auto& sb = static_cast<AdafactorParamState&>(*opt->state().at(b.unsafeGetTensorImpl()));
  EXPECT_EQ(sw.v_row().sizes(), torch::IntArrayRef({5}));
  EXPECT_EQ(sw.v_col().sizes(), torch::IntArrayRef({6}));
  EXPECT_FALSE(sw.v().defined());
  EXPECT_EQ(sb.v().sizes(), torch::IntArrayRef({5}));
  // First step: decay 0, so v = g^2 + eps = 4; update g / 2 = 1 (rms 1, not clipped),
  // times lr 0.1, times rms(w) = 1: w = 1 - 0.1 = 0.9 everywhere.
  EXPECT_NEAR(w.detach().max().item<float>(), 0.9f, 1e-6);
  EXPECT_NEAR(w.detach().min().item<float>(), 0.9f, 1e-6);
  EXPECT_NEAR(sw.v_row()[0].item<float>(), 4.0f, 1e-6);
}

TEST(ExtraOptimizersTest, LambZeroNormsGiveTrustRatioOne) {
  // A zero parameter: ||w|| = 0 -> ratio 1, so the first step is -lr * adam's update,
  // which is -lr * g / (|g| + eps) elementwise = -0.1 * sign(g) (eps 1e-6 aside).
  torch::Tensor p = torch::zeros({3}, torch::kDouble).requires_grad_(true);
  ConfigDict config = ConfigDict::from_yaml_string("optimizer_configs:\n  optimizer: lamb\n");
  auto opt = make_optimizer(config, NamedParams{{"p", p}});
  p.mutable_grad() = torch::tensor({2.0, -0.5, 4.0}, torch::kDouble);
  set_learning_rate(*opt, 0.1);
  opt->step();
  EXPECT_NEAR(p[0].item<double>(), -0.1 * 2.0 / (2.0 + 1e-6), 1e-15);
  EXPECT_NEAR(p[1].item<double>(), 0.1 * 0.5 / (0.5 + 1e-6), 1e-15);
  EXPECT_NEAR(p[2].item<double>(), -0.1 * 4.0 / (4.0 + 1e-6), 1e-15);
}

}  // namespace
}  // namespace scenic::train
