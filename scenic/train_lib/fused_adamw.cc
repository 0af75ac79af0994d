#include "scenic/train_lib/fused_adamw.h"

#include <torch/torch.h>

#include <ATen/ops/_fused_adamw.h>

#include <map>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"

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
      if (graph_safe_)
        throw Error("FusedAdamW (graph-safe mode): parameter group " + std::to_string(g) +
                    " cannot be updated by one fused kernel (a sparse gradient, mixed devices or dtypes, or a "
                    "non-dense parameter)");
      torch::optim::AdamW::step();
      return loss;
    }
  }
  if (graph_safe_ && lr_tensors_.size() != param_groups_.size())
    throw Error("FusedAdamW: step() in graph-safe mode before load_learning_rates()");
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
      if (!graph_safe_) s.step(s.step() + 1);
      s.exp_avg(like_param(s.exp_avg(), p));
      s.exp_avg_sq(like_param(s.exp_avg_sq(), p));
      if (o.amsgrad()) s.max_exp_avg_sq(like_param(s.max_exp_avg_sq(), p));
      params.push_back(p);
      grads.push_back(like_param(p.grad(), p));
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
      if (o.amsgrad()) max_exp_avg_sqs.push_back(s.max_exp_avg_sq());
      // Graph-safe: this parameter's own count, incremented on the device below.
      auto& step = graph_safe_ ? step_tensors_[p.unsafeGetTensorImpl()] : step_tensors[s.step()];
      if (!step.defined())
        step = torch::full({}, static_cast<double>(s.step()),
                           torch::TensorOptions().dtype(torch::kFloat32).device(p.device()));
      steps.push_back(step);
    }
    const auto [beta1, beta2] = o.betas();
    if (graph_safe_) {
      at::_foreach_add_(steps, 1);
      at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr_tensors_[g], beta1,
                        beta2, o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
    } else {
      at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, o.lr(), beta1, beta2,
                        o.weight_decay(), o.eps(), o.amsgrad(), /*maximize=*/false);
    }
  }
  return loss;
}

void FusedAdamW::set_graph_safe(bool on) {
  if (graph_safe_ && !on) sync_step_counts();
  graph_safe_ = on;
  step_tensors_.clear();
  lr_tensors_.clear();
}

void FusedAdamW::load_learning_rates() {
  if (!graph_safe_) throw Error("FusedAdamW: load_learning_rates() outside graph-safe mode");
  torch::NoGradGuard no_grad;
  if (lr_tensors_.size() != param_groups_.size()) {
    lr_tensors_.clear();
    for (const auto& group : param_groups_) {
      const auto& params = group.params();
      const auto device = params.empty() ? torch::Device(torch::kCPU) : params.front().device();
      lr_tensors_.push_back(torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device)));
    }
  }
  for (size_t g = 0; g < param_groups_.size(); ++g) lr_tensors_[g].fill_(param_groups_[g].options().get_lr());
}

void FusedAdamW::sync_step_counts() const {
  // state_ maps a parameter to its state through a unique_ptr, so the state itself is
  // writable here; only the cached count changes, to the value the device holds.
  if (step_tensors_.empty()) return;
  std::vector<const void*> keys;
  std::vector<torch::Tensor> steps;
  for (const auto& [key, step] : step_tensors_) {
    keys.push_back(key);
    steps.push_back(step.reshape({1}));
  }
  const auto host = torch::cat(steps).to(torch::kCPU, torch::kFloat64);  // one device sync for all
  const auto* counts = host.data_ptr<double>();
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = state_.find(const_cast<void*>(keys[i]));
    if (it != state_.end())
      static_cast<torch::optim::AdamWParamState&>(*it->second).step(static_cast<int64_t>(counts[i]));
  }
}

void FusedAdamW::save(torch::serialize::OutputArchive& archive) const {
  sync_step_counts();
  torch::optim::AdamW::save(archive);
}

void FusedAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::AdamW::load(archive);
  step_tensors_.clear();  // rebuilt from the loaded counts by the next step()
}

}  // namespace scenic::train
