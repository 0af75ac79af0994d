// GraphedStep and enable_cuda_graph (cuda_graph_step.h). On the CPU: the static inputs
// take each batch, fixed shapes are enforced, and a graph-safe training step (FusedAdamW
// reading its learning rate and step counts from tensors) gives the eager step's bits.
// With a GPU (skipped without one): a captured and replayed training step equals eager
// training, replays read each new batch, and dropout draws fresh masks on every replay.
#include "scenic/train_lib/cuda_graph_step.h"

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/train_lib/fused_adamw.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::train {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GraphedStep, StaticInputsTakeEachBatchOnTheCpu) {
  std::vector<const void*> seen;
  GraphedStep step(
      [&](const dataset::Batch& b) {
        seen.push_back(b.at("inputs").data_ptr());
        return std::vector<torch::Tensor>{b.at("inputs").sum()};
      },
      torch::kCPU, 2);
  for (int k = 0; k < 4; ++k) {
    const auto x = torch::full({4, 3}, static_cast<float>(k + 1));
    const auto out = step({{"inputs", x}});
    EXPECT_FLOAT_EQ(out[0].item<float>(), 12.0f * static_cast<float>(k + 1)) << k;
    EXPECT_NE(seen.back(), x.data_ptr()) << "the step reads the static copy, not the caller's tensor";
  }
  ASSERT_EQ(seen.size(), 4u);
  for (const auto* p : seen) EXPECT_EQ(p, seen.front()) << "one static input for every call";
  EXPECT_EQ(step.calls(), 4);
  EXPECT_FALSE(step.captured());  // nothing to capture on the CPU
}

TEST(GraphedStep, RefusesAnotherShapeDtypeOrKeySet) {
  GraphedStep step([](const dataset::Batch& b) { return std::vector<torch::Tensor>{b.at("inputs")}; }, torch::kCPU);
  step({{"inputs", torch::zeros({4, 3})}, {"label", torch::zeros({4}, torch::kLong)}});
  auto shape = error_of([&] { step({{"inputs", torch::zeros({5, 3})}, {"label", torch::zeros({5}, torch::kLong)}}); });
  EXPECT_NE(shape.find("'inputs'"), std::string::npos) << shape;
  EXPECT_NE(shape.find("[5, 3]"), std::string::npos) << shape;
  EXPECT_NE(shape.find("[4, 3]"), std::string::npos) << shape;
  auto dtype = error_of([&] { step({{"inputs", torch::zeros({4, 3})}, {"label", torch::zeros({4})}}); });
  EXPECT_NE(dtype.find("'label'"), std::string::npos) << dtype;
  auto keys = error_of([&] { step({{"inputs", torch::zeros({4, 3})}}); });
  EXPECT_NE(keys.find("{inputs}"), std::string::npos) << keys;
  EXPECT_NE(keys.find("{inputs, label}"), std::string::npos) << keys;
  EXPECT_FALSE(error_of([] { GraphedStep({}, torch::kCPU, 0); }).empty());  // warmup >= 1
}

// A small classifier and its batches, built the same on every call.
struct Mlp {
  torch::nn::Sequential net{torch::nn::Linear(6, 16), torch::nn::GELU(), torch::nn::Linear(16, 3)};
};

Mlp make_mlp(const torch::Device& device) {
  torch::manual_seed(0);
  Mlp m;
  m.net->to(device);
  return m;
}

dataset::Batch batch_of(int k, const torch::Device& device) {
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(k));
  return {{"inputs", torch::randn({8, 6}, gen).to(device) * 3},
          {"label", torch::randint(0, 3, {8}, gen, torch::TensorOptions().dtype(torch::kLong)).to(device)}};
}

std::unique_ptr<FusedAdamW> adamw_for(Mlp& m) {
  return std::make_unique<FusedAdamW>(m.net->parameters(), torch::optim::AdamWOptions(0.0078125).weight_decay(0.1));
}

// One training step written out (the reference for capturable_train_step): forward,
// loss, backward, clip at norm 1 (which binds here), update.
std::vector<torch::Tensor> train_step(Mlp& m, torch::optim::Optimizer& opt, const dataset::Batch& b) {
  opt.zero_grad();
  auto logits = m.net->forward(b.at("inputs"));
  auto loss = torch::nn::functional::cross_entropy(logits, b.at("label"));
  loss.backward();
  auto norm = clip_grad_global_norm(m.net->parameters(), 1.0);
  opt.step();
  return {loss.detach(), logits.detach(), norm};
}

// `graphed`: GraphedStep over capturable_train_step with a graph-safe FusedAdamW; else
// the plain eager loop.
// Learning rates that float32 holds exactly change every step (a schedule).
std::vector<std::vector<torch::Tensor>> run(const torch::Device& device, bool graphed, int steps,
                                            std::vector<torch::Tensor>* params_out, bool* captured = nullptr) {
  auto m = make_mlp(device);
  auto opt = adamw_for(m);
  std::optional<GraphedStep> step;
  if (graphed) {
    opt->set_graph_safe(true);
    auto loss_fn = [&](const dataset::Batch& b) {
      auto logits = m.net->forward(b.at("inputs"));
      return std::make_pair(torch::nn::functional::cross_entropy(logits, b.at("label")), logits);
    };
    step.emplace(capturable_train_step(*opt, m.net->parameters(), 1.0, loss_fn), device, 2);
  }
  std::vector<std::vector<torch::Tensor>> outs;
  for (int k = 0; k < steps; ++k) {
    opt->param_groups()[0].options().set_lr(k % 2 ? 0.0078125 : 0.015625);
    std::vector<torch::Tensor> out;
    if (graphed) {
      opt->load_learning_rates();
      out = (*step)(batch_of(k, device));
    } else {
      out = train_step(m, *opt, batch_of(k, device));
    }
    std::vector<torch::Tensor> copies;  // a graph's outputs are overwritten by the next replay
    for (const auto& t : out) copies.push_back(t.cpu().clone());
    outs.push_back(copies);
  }
  if (captured) *captured = step && step->captured();
  for (const auto& p : m.net->parameters()) params_out->push_back(p.detach().cpu().clone());
  return outs;
}

TEST(GraphedStep, GraphSafeTrainingStepEqualsTheEagerStepOnTheCpu) {
  std::vector<torch::Tensor> eager_params, graphed_params;
  const auto eager = run(torch::kCPU, false, 6, &eager_params);
  const auto graphed = run(torch::kCPU, true, 6, &graphed_params);
  for (size_t k = 0; k < eager.size(); ++k)
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::equal(graphed[k][i], eager[k][i])) << "step " << k << " out " << i;
  for (size_t i = 0; i < eager_params.size(); ++i) EXPECT_TRUE(torch::equal(graphed_params[i], eager_params[i])) << i;
  EXPECT_GT(eager[0][2].item<double>(), 1.0) << "the clip must bind for this test to cover it";
}

TEST(EnableCudaGraph, RefusesWhatItCannotCapture) {
  auto m = make_mlp(torch::kCPU);
  auto adamw = adamw_for(m);
  const torch::Device cuda(torch::kCUDA);  // only is_cuda() is read: no GPU needed
  auto cpu = error_of([&] { enable_cuda_graph(*adamw, torch::kCPU); });
  EXPECT_NE(cpu.find("cuda_graph"), std::string::npos) << cpu;
  EXPECT_NE(cpu.find("cpu"), std::string::npos) << cpu;
  EXPECT_NE(error_of([&] { enable_cuda_graph(*adamw, cuda, 2); }).find("accum_steps"), std::string::npos);
  EXPECT_NE(error_of([&] { enable_cuda_graph(*adamw, cuda, 1, true); }).find("several processes"), std::string::npos);
  torch::optim::SGD sgd(m.net->parameters(), torch::optim::SGDOptions(0.1));
  auto other = error_of([&] { enable_cuda_graph(sgd, cuda); });
  EXPECT_NE(other.find("adamw"), std::string::npos) << other;
  EXPECT_FALSE(adamw->graph_safe());
  EXPECT_EQ(&enable_cuda_graph(*adamw, cuda), adamw.get());
  EXPECT_TRUE(adamw->graph_safe());
  EXPECT_TRUE(cuda_graphs_built()) << "the build machine has the CUDA headers";
}

// ---- On a GPU (these skip without one). ----

TEST(GraphedStepCuda, CapturedTrainingEqualsEagerTraining) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  std::vector<torch::Tensor> eager_params, graphed_params;
  bool captured = false;
  const auto eager = run(torch::kCUDA, false, 8, &eager_params);
  const auto graphed = run(torch::kCUDA, true, 8, &graphed_params, &captured);
  EXPECT_TRUE(captured);
  for (size_t k = 0; k < eager.size(); ++k)
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(torch::allclose(graphed[k][i], eager[k][i], 1e-5, 1e-6)) << "step " << k << " out " << i;
  for (size_t i = 0; i < eager_params.size(); ++i)
    EXPECT_TRUE(torch::allclose(graphed_params[i], eager_params[i], 1e-5, 1e-6)) << i;
  // Not a frozen replay: the losses of the replayed steps differ from each other.
  EXPECT_NE(graphed[6][0].item<float>(), graphed[7][0].item<float>());
}

TEST(GraphedStepCuda, ReplaysReadEachNewBatchAndDrawFreshDropout) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  GraphedStep step(
      [](const dataset::Batch& b) {
        const auto& x = b.at("inputs");
        return std::vector<torch::Tensor>{x * 2, torch::dropout(torch::ones_like(x), 0.5, /*train=*/true)};
      },
      torch::kCUDA, 1);
  torch::Tensor last_mask;
  for (int k = 0; k < 5; ++k) {
    const auto x = torch::randn({64, 64}, torch::kCUDA);
    const auto out = step({{"inputs", x}});
    EXPECT_TRUE(torch::equal(out[0], x * 2)) << k;
    const auto mask = out[1].cpu().clone();
    if (k >= 2) EXPECT_FALSE(torch::equal(mask, last_mask)) << "replay " << k << " reused the dropout mask";
    last_mask = mask;
  }
  EXPECT_TRUE(step.captured());
}

}  // namespace
}  // namespace scenic::train
