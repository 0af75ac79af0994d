#include "scenic/model_lib/layers/nn_layers.h"

#include <torch/torch.h>

namespace scenic::model {

torch::Tensor stochastic_depth(const torch::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  // As Flax's Dropout: rate 1 drops everything (keep / (1 - rate) would be 0 / 0 = NaN).
  if (rate >= 1.0) return torch::zeros_like(x);
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  auto keep = torch::empty(shape, x.options()).bernoulli_(1.0 - rate);  // [B, 1, ...]
  return x * keep / (1.0 - rate);
}

}  // namespace scenic::model
