// Small parameter-free layers (Scenic's model_lib/layers/nn_layers.py).
#pragma once

#include <torch/types.h>

namespace scenic::model {

// StochasticDepth: in training, drops whole examples of the residual branch `x` [B, ...]
// with probability `rate` and scales survivors by 1 / (1 - rate); identity otherwise.
// Rate 1 gives zeros (as Flax's Dropout), not 0/0.
torch::Tensor stochastic_depth(const torch::Tensor& x, double rate, bool training);

}  // namespace scenic::model
