// Optimizers built from the config, and global-norm gradient clipping.
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
//   sgd    momentum (none: no momentum trace), nesterov=false, weight_decay (coupled:
//          added to the gradient before momentum, as optax.add_decayed_weights)
//   adam   b1=0.9, b2=0.999, eps=1e-8
//   adamw  b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4 (decoupled, scaled by lr)
// `skip_scale_and_bias_regularization: true` with a non-zero `weight_decay` exempts
// 1-D parameters (biases, norm scales) from weight decay; they go into a second param
// group with weight_decay 0. Each key is read through ConfigDict, so arguments an
// optimizer does not take stay unread and the caller's `check_all_used()` names them.
//
// torch's SGD/Adam/AdamW updates equal optax's sgd/adam/adamw to rounding (checked
// in optimizers_test.cc). The learning rate is not part of the optimizer config:
// call `set_learning_rate(opt, lr_fn(step))` before every `opt.step()`, as optax
// evaluates its schedule at its update count. The optimizer starts at lr 0.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include <memory>
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
// from the top-level config. Throws scenic::Error naming the key on bad config.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const common::ConfigDict& config,
                                                        const NamedParams& params);
std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const common::ConfigDict& config, const torch::OrderedDict<std::string, torch::Tensor>& params);

// Sets the learning rate of every param group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double learning_rate);

// sqrt(sum of squares of all elements) as a 0-dim tensor (float32, or float64 if any
// input is float64) on the inputs' device; undefined tensors are skipped; 0 for none.
torch::Tensor global_norm(const std::vector<torch::Tensor>& tensors);

// Scenic's `max_grad_norm` (jax.example_libraries.optimizers.clip_grads): when the
// global norm of the parameters' gradients is >= max_norm, scales every gradient by
// max_norm / norm, in place. Returns the global norm before clipping, as a 0-dim
// tensor, without synchronizing with the device. Parameters without a gradient are
// skipped.
torch::Tensor clip_grad_global_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace scenic::train
