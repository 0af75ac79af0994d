#include "scenic/train_lib/extra_optimizers.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace scenic::train {
namespace {

using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

// Every step below runs under NoGradGuard and touches only the parameters' device.
torch::Tensor run_closure(const torch::optim::Optimizer::LossClosure& closure) {
  if (!closure) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

// optax.numerics.safe_norm(x, 0) for one tensor: the L2 norm over all elements.
torch::Tensor tensor_norm(const torch::Tensor& x) { return torch::linalg_vector_norm(x, 2); }

// sqrt(mean(x^2)) of one tensor (the RMS in optax's *_block_rms transforms).
torch::Tensor block_rms(const torch::Tensor& x) { return x.square().mean().sqrt(); }

}  // namespace

// ---------------------------------------------------------------------------------
// LAMB

void LambOptions::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(b1);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(b2);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps_root);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
}

void LambOptions::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, b1);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, b2);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps_root);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
}

void LambParamState::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(mu);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nu);
}

void LambParamState::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, mu);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, nu);
}

Lamb::Lamb(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
           LambOptions defaults)
    : Optimizer(param_groups, std::make_unique<LambOptions>(defaults)) {}

torch::Tensor Lamb::step(LossClosure closure) {
  torch::Tensor loss = run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const LambOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& g = p.grad();
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<LambParamState>();
        s->mu(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->nu(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<LambParamState&>(*slot);
      s.step(s.step() + 1);
      const auto k = static_cast<double>(s.step());
      // scale_by_adam: moments, bias correction, mu_hat / (sqrt(nu_hat + eps_root) + eps).
      s.mu().mul_(o.b1()).add_(g, 1 - o.b1());
      s.nu().mul_(o.b2()).addcmul_(g, g, 1 - o.b2());
      const torch::Tensor mu_hat = s.mu() / (1 - std::pow(o.b1(), k));
      const torch::Tensor nu_hat = s.nu() / (1 - std::pow(o.b2(), k));
      torch::Tensor u = mu_hat / ((nu_hat + o.eps_root()).sqrt() + o.eps());
      if (o.weight_decay() != 0) u.add_(p, o.weight_decay());  // add_decayed_weights
      // scale_by_trust_ratio: ||w|| / ||u||, or 1 when either norm is zero.
      const torch::Tensor p_norm = tensor_norm(p);
      const torch::Tensor u_norm = tensor_norm(u);
      const torch::Tensor ratio =
          torch::where(p_norm.eq(0).logical_or(u_norm.eq(0)), torch::ones_like(p_norm), p_norm / u_norm);
      p.sub_(u.mul_(ratio), o.lr());
    }
  }
  return loss;
}

void Lamb::save(OutputArchive& archive) const {
  torch::optim::serialize<LambParamState, LambOptions>(archive, *this);
}
void Lamb::load(InputArchive& archive) {
  torch::optim::serialize<LambParamState, LambOptions>(archive, *this);
}

// ---------------------------------------------------------------------------------
// Adafactor

void AdafactorOptions::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(min_dim_size_to_factor);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(decay_rate);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(multiply_by_parameter_scale);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(clipping_threshold);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay_rate);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(factored);
}

void AdafactorOptions::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, min_dim_size_to_factor);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, decay_rate);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, multiply_by_parameter_scale);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG_OPTIONAL(double, clipping_threshold);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG_OPTIONAL(double, momentum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG_OPTIONAL(double, weight_decay_rate);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, factored);
}

void AdafactorParamState::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(v_row);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(v_col);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(v);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(m);
}

void AdafactorParamState::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, v_row);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, v_col);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, v);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, m);
}

std::optional<std::pair<int64_t, int64_t>> adafactor_factored_dims(
    torch::IntArrayRef shape, bool factored, int64_t min_dim_size_to_factor) {
  if (!factored || shape.size() < 2) return std::nullopt;
  std::vector<int64_t> order(shape.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return shape[a] < shape[b]; });
  const int64_t d1 = order[order.size() - 2], d0 = order.back();
  if (shape[d1] < min_dim_size_to_factor) return std::nullopt;
  return std::make_pair(d1, d0);
}

Adafactor::Adafactor(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                     AdafactorOptions defaults)
    : Optimizer(param_groups, std::make_unique<AdafactorOptions>(defaults)) {}

torch::Tensor Adafactor::step(LossClosure closure) {
  torch::Tensor loss = run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const AdafactorOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& g = p.grad();
      const auto dims = adafactor_factored_dims(p.sizes(), o.factored(), o.min_dim_size_to_factor());
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<AdafactorParamState>();
        if (dims) {
          s->v_row(torch::zeros_like(p.select(dims->second, 0)));  // drop d0
          s->v_col(torch::zeros_like(p.select(dims->first, 0)));   // drop d1
        } else {
          s->v(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        }
        if (o.momentum()) s->m(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<AdafactorParamState&>(*slot);
      // optax's _decay_rate_pow at the update count before this step.
      const double decay = 1.0 - std::pow(static_cast<double>(s.step() + 1), -o.decay_rate());
      s.step(s.step() + 1);

      // scale_by_factored_rms.
      const torch::Tensor grad_sqr = g.square().add_(o.eps());
      torch::Tensor u;
      if (dims) {
        const auto [d1, d0] = *dims;
        s.v_row().mul_(decay).add_(grad_sqr.mean(d0), 1 - decay);
        s.v_col().mul_(decay).add_(grad_sqr.mean(d1), 1 - decay);
        const int64_t reduced_d1 = d1 > d0 ? d1 - 1 : d1;
        const torch::Tensor row_col_mean = s.v_row().mean(reduced_d1, /*keepdim=*/true);
        const torch::Tensor row_factor = (s.v_row() / row_col_mean).rsqrt();
        const torch::Tensor col_factor = s.v_col().rsqrt();
        u = g * row_factor.unsqueeze(d0) * col_factor.unsqueeze(d1);
      } else {
        s.v().mul_(decay).add_(grad_sqr, 1 - decay);
        u = g * s.v().rsqrt();
      }
      // clip_by_block_rms: u / max(1, rms(u) / threshold).
      if (o.clipping_threshold()) {
        u.div_(torch::clamp_min(block_rms(u) / *o.clipping_threshold(), 1.0));
      }
      u.mul_(o.lr());
      // scale_by_param_block_rms(min_scale=1e-3).
      if (o.multiply_by_parameter_scale()) {
        const torch::Tensor rms = block_rms(p);
        u.mul_(torch::where(rms <= 1e-3, torch::full_like(rms, 1e-3), rms));
      }
      // ema(momentum, debias=False): m = momentum * m + (1 - momentum) * u.
      if (o.momentum()) {
        s.m().mul_(*o.momentum()).add_(u, 1 - *o.momentum());
        u = s.m().clone();
      }
      if (o.weight_decay_rate() && *o.weight_decay_rate() != 0) u.add_(p, *o.weight_decay_rate());
      p.sub_(u);
    }
  }
  return loss;
}

void Adafactor::save(OutputArchive& archive) const {
  torch::optim::serialize<AdafactorParamState, AdafactorOptions>(archive, *this);
}
void Adafactor::load(InputArchive& archive) {
  torch::optim::serialize<AdafactorParamState, AdafactorOptions>(archive, *this);
}

// ---------------------------------------------------------------------------------
// RMSProp

void RmsPropOptions::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(initial_scale);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps_in_sqrt);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(centered);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nesterov);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(bias_correction);
}

void RmsPropOptions::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, initial_scale);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, eps_in_sqrt);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, centered);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG_OPTIONAL(double, momentum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, nesterov);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, bias_correction);
}

void RmsPropParamState::serialize(OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nu);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(mu);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(trace);
}

void RmsPropParamState::serialize(InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, nu);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, mu);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, trace);
}

RmsProp::RmsProp(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                 RmsPropOptions defaults)
    : Optimizer(param_groups, std::make_unique<RmsPropOptions>(defaults)) {}

torch::Tensor RmsProp::step(LossClosure closure) {
  torch::Tensor loss = run_closure(closure);
  torch::NoGradGuard no_grad;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const RmsPropOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& g = p.grad();
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto s = std::make_unique<RmsPropParamState>();
        s->nu(torch::full_like(p, o.initial_scale(), torch::MemoryFormat::Preserve));
        if (o.centered()) s->mu(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.momentum()) s->trace(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<RmsPropParamState&>(*slot);
      s.step(s.step() + 1);
      s.nu().mul_(o.decay()).addcmul_(g, g, 1 - o.decay());
      if (o.centered()) s.mu().mul_(o.decay()).add_(g, 1 - o.decay());
      const double correction =
          o.bias_correction() ? 1 - std::pow(o.decay(), static_cast<double>(s.step())) : 1.0;
      torch::Tensor denom_sq = s.nu() / correction;
      if (o.centered()) denom_sq = denom_sq - (s.mu() / correction).square();
      const torch::Tensor scaling =
          o.eps_in_sqrt() ? (denom_sq + o.eps()).rsqrt() : (denom_sq.sqrt() + o.eps()).reciprocal();
      torch::Tensor u = g * scaling * -o.lr();
      // trace(momentum, nesterov) on the lr-scaled update.
      if (o.momentum()) {
        s.trace().mul_(*o.momentum()).add_(u);
        u = o.nesterov() ? u.add_(s.trace(), *o.momentum()) : s.trace();
      }
      p.add_(u);
    }
  }
  return loss;
}

void RmsProp::save(OutputArchive& archive) const {
  torch::optim::serialize<RmsPropParamState, RmsPropOptions>(archive, *this);
}
void RmsProp::load(InputArchive& archive) {
  torch::optim::serialize<RmsPropParamState, RmsPropOptions>(archive, *this);
}

}  // namespace scenic::train
