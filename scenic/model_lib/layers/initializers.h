// Flax's default initializers for LibTorch parameters, so that a config trains the
// way it does in Scenic. Fans follow Flax: for a Linear weight [out, in] fan_in = in;
// for a Conv weight [out, in, kh, kw] fan_in = in * kh * kw.
#pragma once

#include <torch/types.h>

namespace scenic::model::init {

// lecun_normal: truncated normal (±2σ) with variance 1 / fan_in (Flax Dense/Conv default).
void lecun_normal_(torch::Tensor& weight);
// xavier_uniform: U(±sqrt(6 / (fan_in + fan_out))).
void xavier_uniform_(torch::Tensor& weight);
// Truncated normal (±2σ) rescaled so the result has standard deviation `stddev`.
void truncated_normal_(torch::Tensor& t, double stddev);

}  // namespace scenic::model::init
