// Optimizers built from the config: optax names and arguments, clipping, freezing, per-group lrs.
//
// Mirrors Scenic's scenic/train_lib/optimizers.py (`get_optax_optimizer_config` and
// `get_optimizer`), with torch::optim optimizers standing in for optax:
//   - new style: `optimizer_configs.optimizer` names the optax optimizer and the other
//     `optimizer_configs` keys are its arguments (an error if top-level `optimizer` is
//     also set);
//   - legacy style: top-level `optimizer` plus `optimizer_configs` arguments, with
//     Scenic's renames: `adam` with `weight_decay` -> `adamw`; `momentum` -> `sgd`
//     (momentum 0.9 when not given, flax.optim's default); `nesterov` -> `sgd` with
//     `nesterov: true`; `beta1/beta2/epsilon` -> `b1/b2/eps`; a top-level
//     `skip_scale_and_bias_regularization` is honoured.
// Supported optimizers (optax names, arguments and defaults):
//   sgd       momentum (none: no momentum trace), nesterov=false, weight_decay (coupled:
//             added to the gradient before momentum, as optax.add_decayed_weights)
//   adam      b1=0.9, b2=0.999, eps=1e-8
//   adamw     b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4 (decoupled, scaled by lr)
//   lamb      b1=0.9, b2=0.999, eps=1e-6, eps_root=0, weight_decay=0
//   adafactor min_dim_size_to_factor=128, decay_rate=0.8, multiply_by_parameter_scale=
//             true, clipping_threshold=1 (null: none), momentum=null, weight_decay_rate=
//             null, eps=1e-30, factored=true (decay_offset and dtype_momentum: no)
//   rmsprop   decay=0.9, eps=1e-8, initial_scale=0, eps_in_sqrt=true, centered=false,
//             momentum=null, nesterov=false, bias_correction=false
// (lamb, adafactor, rmsprop: extra_optimizers.h.) Legacy `beta1/beta2/epsilon` renames
// apply to every optimizer, as in Scenic.
// `skip_scale_and_bias_regularization: true` with a non-zero `weight_decay` exempts
// 1-D parameters (biases, norm scales) from weight decay; they go into their own param
// group with weight_decay 0. For adafactor the flag masks `weight_decay_rate` (Scenic
// builds its mask only from `weight_decay`, which adafactor does not take, so there the
// flag has no effect; we do what the flag says). Each key is read through ConfigDict,
// so arguments an optimizer does not take stay unread and the caller's
// `check_all_used()` names them.
//
// Further `optimizer_configs` keys (the rest of Scenic's get_optimizer chain, plus
// per-group learning rates):
//   grad_clip: {clip_method, clip_value}  gradient clipping inside `step()`, see
//             grad_clipping.h (legacy: top-level `grad_clip_configs`).
//   freeze_params_reg_exp: REGEX  searched (std::regex_search, ECMAScript) in every
//             parameter name in our dotted form `a.b.c` and in Scenic's `a/b/c` form;
//             a parameter is frozen when either matches. Frozen parameters are left out
//             of the optimizer and set to requires_grad=false, so they get no update,
//             no weight decay and no gradient, and stay bit-identical. An error if it
//             matches every parameter (as Scenic).
//   param_groups: [{regex: REGEX, lr_multiplier: M}, ...]  per-group learning rates:
//             a parameter takes the first entry whose regex matches (same matching as
//             above; others take 1), and `set_learning_rate(opt, lr)` gives its group
//             lr * M. M scales the whole update, decoupled weight decay included (as a
//             per-group schedule does in big_vision's optax.make); M = 0 stops updates
//             but keeps the parameter in the optimizer. An entry that matches no
//             parameter is an error (a typo would otherwise silently do nothing).
// Param groups are formed per (lr group, decayed or not): default lr group first, then
// the `param_groups` entries in order; decayed parameters before undecayed ones.
//
// torch's SGD/Adam/AdamW updates equal optax's sgd/adam/adamw to rounding (checked
// in optimizers_test.cc), the others are ours (extra_optimizers_test.cc checks all
// against real optax). The learning rate is not part of the optimizer config:
// call `set_learning_rate(opt, lr_fn(step))` before every `opt.step()`, as optax
// evaluates its schedule at its update count. The optimizer starts at lr 0.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scenic/common_lib/config.h"

namespace scenic::train {

// (name, parameter) pairs, e.g. from `module->named_parameters()`.
using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;

// The optimizers `make_optimizer` supports now (optax names).
const std::vector<std::string>& supported_optimizers();

// Reads `optimizer`, `optimizer_configs.*` and (legacy) `skip_scale_and_bias_regularization`
// and `grad_clip_configs` from the top-level config. Throws scenic::Error naming the key
// on bad config. Sets requires_grad=false on frozen parameters (see above).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const common::ConfigDict& config,
                                                        const NamedParams& params);
std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const common::ConfigDict& config, const torch::OrderedDict<std::string, torch::Tensor>& params);

// Sets every param group's learning rate to learning_rate x its group's lr_multiplier.
void set_learning_rate(torch::optim::Optimizer& optimizer, double learning_rate);

// The lr multiplier `make_optimizer` attached to a group's options (1 for other options).
double lr_multiplier(const torch::optim::OptimizerOptions& options);

// Names of the parameters `optimizer_configs.freeze_params_reg_exp` freezes (empty when
// unset), in `params` order. Throws scenic::Error for a bad regex or one matching all.
std::vector<std::string> frozen_parameters(const common::ConfigDict& config,
                                           const NamedParams& params);

// The gradients that exist: each parameter's `.grad`, skipping undefined parameters and
// those the loss did not reach (no gradient). The tensors alias the `.grad`s.
std::vector<torch::Tensor> grads_of(const std::vector<torch::Tensor>& params);

// sqrt(sum of squares of all elements) as a 0-dim tensor (float32, or float64 if any
// input is float64) on the inputs' device; undefined tensors are skipped; 0 for none.
torch::Tensor global_norm(const std::vector<torch::Tensor>& tensors);

// Scenic's `max_grad_norm` (jax.example_libraries.optimizers.clip_grads): when the
// global norm of the parameters' gradients is >= max_norm, scales every gradient by
// max_norm / norm, in place. Returns the global norm before clipping, as a 0-dim
// tensor, without synchronizing with the device. Parameters without a gradient are
// skipped.
torch::Tensor clip_grad_global_norm(const std::vector<torch::Tensor>& params, double max_norm);

// A trainer's `max_grad_norm` step: clip_grad_global_norm when `max_norm` is set, else
// only the global norm of the gradients (for the l2_grads summary). Either way the norm
// before clipping, without a device sync.
torch::Tensor clip_or_measure_grads(const std::vector<torch::Tensor>& params, const std::optional<double>& max_norm);

}  // namespace scenic::train
