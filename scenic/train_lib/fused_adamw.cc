#include "scenic/train_lib/fused_adamw.h"

#include <torch/torch.h>

#include <ATen/ops/_fused_adamw.h>

#include <map>
#include <vector>

namespace scenic::train {
namespace {
// Whether `_fused_adamw_` can take these parameters in one call.
bool fusable(const std::vector<torch::Tensor>& params) {
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (g.is_sparse() || !p.is_floating_point() || !p.is_non_overlapping_and_dense() ||
        p.device() != params.front().device() ||
        p.scalar_type() != params.front().scalar_type() || g.scalar_type() != p.scalar_type())
      return false;
  }
  return true;
}
// The kernel walks every tensor of a parameter as one flat array, so all of them must
// share the parameter's memory layout (a channels-last weight with a contiguous
// gradient or a moment loaded from a checkpoint would be updated element against the
// wrong element). `t` itself when it does, else a copy in the parameter's layout.
torch::Tensor like_param(const torch::Tensor& t, const torch::Tensor& p) {
  return t.strides() == p.strides() ? t : torch::empty_like(p).copy_(t);
}
}  // namespace

torch::Tensor FusedAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // Every group must be fusable, else AdamW's own step for all (one code path per step).
  std::vector<std::vector<torch::Tensor>> with_grad(param_groups_.size());
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    for (const auto& p : param_groups_[g].params())
      if (p.grad().defined()) with_grad[g].push_back(p);
    if (!with_grad[g].empty() && !fusable(with_grad[g])) {
      torch::optim::AdamW::step();
      return loss;
    }
  }
  for (size_t g = 0; g < param_groups_.size(); ++g) {
    if (with_grad[g].empty()) continue;
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(param_groups_[g].options());
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
    // The kernel reads each parameter's step count (already incremented) from a float
    // tensor; parameters at the same count share one (all of them, but for a parameter
    // that skipped steps without a gradient).
    std::map<int64_t, torch::Tensor> step_tensors;
    for (const auto& p : with_grad[g]) {
      auto it = state_.find(p.unsafeGetTensorImpl());
      if (it == state_.end()) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) s->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(p.unsafeGetTensorImpl(), std::move(s)).first;
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      s.step(s.step() + 1);
      s.exp_avg(like_param(s.exp_avg(), p));
      s.exp_avg_sq(like_param(s.exp_avg_sq(), p));
      if (o.amsgrad()) s.max_exp_avg_sq(like_param(s.max_exp_avg_sq(), p));
      params.push_back(p);
      grads.push_back(like_param(p.grad(), p));
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
      if (o.amsgrad()) max_exp_avg_sqs.push_back(s.max_exp_avg_sq());
      auto& step = step_tensors[s.step()];
      if (!step.defined())
        step = torch::full({}, static_cast<double>(s.step()),
                           torch::TensorOptions().dtype(torch::kFloat32).device(p.device()));
      steps.push_back(step);
    }
    const auto [beta1, beta2] = o.betas();
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, o.lr(), beta1, beta2,
                      o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
  }
  return loss;
}

}  // namespace scenic::train
