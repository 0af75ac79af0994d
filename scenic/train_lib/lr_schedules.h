// Learning-rate schedules built from `config.lr_configs`.
//
// Mirrors Scenic's scenic/train_lib/lr_schedules.py (`get_learning_rate_fn` and
// `compound_lr_scheduler`) key for key and formula for formula:
//   - `lr_configs.base_learning_rate` is required;
//   - no `lr_configs.learning_rate_schedule` -> the constant base learning rate;
//   - `learning_rate_schedule: compound` -> `lr_configs.factors`, a '*'-separated list
//     (e.g. "constant*linear_warmup*cosine_decay"); the learning rate is the running
//     product of the factors, each reading its own keys from `lr_configs`:
//       constant            base_learning_rate
//       polynomial          decay_steps, end_factor, power
//       piecewise_constant  decay_events, decay_factors (absolute factors)
//       piecewise_linear    decay_events, decay_factors (absolute factors)
//       linear_warmup       warmup_steps, warmup_alpha=0
//       rsqrt_decay         warmup_steps=0, timescale=10000
//       decay_every         steps_per_decay, decay_factor
//       exponential_decay   decay_steps, decay_rate, staircase=false
//       cosine_decay        steps_per_cycle, t_mul=1, m_mul=1, alpha=0, warmup_steps=0,
//                           start_decay_step=0, total_steps=steps_per_cycle (SGDR)
//       linear_decay        total_steps, warmup_steps=0, end_learning_rate=0
//                           (transforms the running product towards end_learning_rate)
//       linear_cooldown     total_steps, cooldown_steps, warmup_steps=0
// All keys are read (and defaults recorded into the config) when the function is
// built, so a missing key or an unknown factor fails before training starts.
// `step` is the number of optimizer updates done so far (0 for the first update),
// as optax counts. Scenic computes in float32; we compute in double.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"

namespace scenic::train {

using LrFn = std::function<double(int64_t step)>;

// Reads `config.lr_configs.*`; throws scenic::Error naming the key path on bad config.
LrFn get_learning_rate_fn(const common::ConfigDict& config);

// The factor names a compound schedule understands.
const std::vector<std::string>& lr_factor_names();

}  // namespace scenic::train
