// LAMB, Adafactor and RMSProp as torch::optim optimizers with optax's exact updates.
//
// Scenic's configs name any optax optimizer (`optimizers.get_optimizer` calls
// `getattr(optax, name)`); LibTorch has no LAMB or Adafactor, and its RMSprop differs
// from optax's (eps outside the square root, learning rate applied after the momentum
// trace, no nesterov/initial_scale). These classes follow optax 0.2.x's chains
// transform by transform, per parameter tensor, with the group's lr as optax's
// schedule value at the current update. Each has its own Options and ParamState, so
// `torch::save(optimizer)` / `torch::load` work as for the built-ins, and every step
// stays on the parameters' device (no host synchronization).
//
//   Lamb      optax.lamb = scale_by_adam(b1, b2, eps, eps_root) ->
//             add_decayed_weights(weight_decay) -> scale_by_trust_ratio() -> -lr.
//             The trust ratio is ||w|| / ||u|| over the whole tensor, 1 when either
//             norm is 0 (optax's min_norm 0, trust_coefficient 1, eps 0).
//   Adafactor optax.adafactor = scale_by_factored_rms(factored, decay_rate,
//             min_dim_size_to_factor, eps) -> clip_by_block_rms(clipping_threshold)
//             -> lr -> scale_by_param_block_rms(1e-3) -> ema(momentum, no debias)
//             -> add_decayed_weights(weight_decay_rate) -> -1. Supported options:
//             min_dim_size_to_factor, decay_rate, multiply_by_parameter_scale,
//             clipping_threshold (none: no clipping), momentum (none: no trace),
//             weight_decay_rate (none/0: no decay; note it is NOT scaled by lr, as in
//             optax), eps, factored. Not supported: decay_offset (always 0) and
//             dtype_momentum (the trace has the parameter's dtype; optax's default
//             float32 equals it for float32 parameters).
//   RmsProp   optax.rmsprop = scale_by_rms / scale_by_stddev (centered)(decay, eps,
//             initial_scale, eps_in_sqrt, bias_correction) -> -lr ->
//             trace(momentum, nesterov). Unlike torch::optim::RMSprop, eps goes
//             inside the square root by default (eps_in_sqrt) and momentum
//             accumulates lr-scaled updates.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace scenic::train {

// ---------------------------------------------------------------------------------
struct LambOptions : public torch::optim::OptimizerCloneableOptions<LambOptions> {
  LambOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: torch's serialize needs Options(0)
  TORCH_ARG(double, lr);
  TORCH_ARG(double, b1) = 0.9;
  TORCH_ARG(double, b2) = 0.999;
  TORCH_ARG(double, eps) = 1e-6;
  TORCH_ARG(double, eps_root) = 0.0;
  TORCH_ARG(double, weight_decay) = 0.0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct LambParamState : public torch::optim::OptimizerCloneableParamState<LambParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, mu);  // first moment
  TORCH_ARG(torch::Tensor, nu);  // second moment

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class Lamb : public torch::optim::Optimizer {
 public:
  explicit Lamb(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                LambOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// ---------------------------------------------------------------------------------
struct AdafactorOptions : public torch::optim::OptimizerCloneableOptions<AdafactorOptions> {
  AdafactorOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT
  TORCH_ARG(double, lr);
  TORCH_ARG(int64_t, min_dim_size_to_factor) = 128;
  TORCH_ARG(double, decay_rate) = 0.8;
  TORCH_ARG(bool, multiply_by_parameter_scale) = true;
  TORCH_ARG(std::optional<double>, clipping_threshold) = 1.0;
  TORCH_ARG(std::optional<double>, momentum) = std::nullopt;
  TORCH_ARG(std::optional<double>, weight_decay_rate) = std::nullopt;
  TORCH_ARG(double, eps) = 1e-30;
  TORCH_ARG(bool, factored) = true;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct AdafactorParamState
    : public torch::optim::OptimizerCloneableParamState<AdafactorParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, v_row);  // factored: shape without dim d0
  TORCH_ARG(torch::Tensor, v_col);  // factored: shape without dim d1
  TORCH_ARG(torch::Tensor, v);      // not factored: like the parameter
  TORCH_ARG(torch::Tensor, m);      // momentum trace, when momentum is set

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

// optax's `_factored_dims`: the (second largest, largest) dims of `shape` (ties broken
// by position, as numpy's argsort on short arrays) when the second largest is at least
// `min_dim_size_to_factor`; none for fewer than 2 dims or when not factored.
std::optional<std::pair<int64_t, int64_t>> adafactor_factored_dims(
    torch::IntArrayRef shape, bool factored, int64_t min_dim_size_to_factor);

class Adafactor : public torch::optim::Optimizer {
 public:
  explicit Adafactor(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                     AdafactorOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

// ---------------------------------------------------------------------------------
struct RmsPropOptions : public torch::optim::OptimizerCloneableOptions<RmsPropOptions> {
  RmsPropOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT
  TORCH_ARG(double, lr);
  TORCH_ARG(double, decay) = 0.9;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, initial_scale) = 0.0;
  TORCH_ARG(bool, eps_in_sqrt) = true;
  TORCH_ARG(bool, centered) = false;
  TORCH_ARG(std::optional<double>, momentum) = std::nullopt;
  TORCH_ARG(bool, nesterov) = false;
  TORCH_ARG(bool, bias_correction) = false;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double lr) override { this->lr(lr); }
};

struct RmsPropParamState : public torch::optim::OptimizerCloneableParamState<RmsPropParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, nu);     // second moment, starts at initial_scale
  TORCH_ARG(torch::Tensor, mu);     // first moment (centered)
  TORCH_ARG(torch::Tensor, trace);  // momentum trace

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class RmsProp : public torch::optim::Optimizer {
 public:
  explicit RmsProp(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                   RmsPropOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace scenic::train
