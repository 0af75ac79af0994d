#include "scenic/model_lib/layers/initializers.h"

#include <torch/torch.h>

#include <cmath>

namespace scenic::model::init {
namespace {
std::pair<double, double> fans(const torch::Tensor& w) {
  const double receptive = w.dim() > 2 ? static_cast<double>(w[0][0].numel()) : 1.0;
  return {static_cast<double>(w.size(1)) * receptive, static_cast<double>(w.size(0)) * receptive};
}
}  // namespace

void truncated_normal_(torch::Tensor& t, double stddev) {
  torch::NoGradGuard no_grad;
  // The standard deviation of a unit normal truncated to [-2, 2].
  constexpr double kTruncatedStd = 0.87962566103423978;
  // Inverse-CDF sampling of a unit normal restricted to [-2, 2].
  const double lo = 0.5 * (1.0 + std::erf(-2.0 / std::sqrt(2.0)));
  const double hi = 0.5 * (1.0 + std::erf(2.0 / std::sqrt(2.0)));
  t.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0).erfinv_().mul_(std::sqrt(2.0)).clamp_(-2.0, 2.0);
  t.mul_(stddev / kTruncatedStd);
}

void lecun_normal_(torch::Tensor& weight) {
  truncated_normal_(weight, std::sqrt(1.0 / fans(weight).first));
}

void xavier_uniform_(torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  auto [fan_in, fan_out] = fans(weight);
  const double limit = std::sqrt(6.0 / (fan_in + fan_out));
  weight.uniform_(-limit, limit);
}

}  // namespace scenic::model::init
