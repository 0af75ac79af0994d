#include "scenic/model_lib/layers/nn_layers.h"

#include <torch/torch.h>

#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::model {
namespace {
std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}
}  // namespace

namespace {
// keep / (1 - rate) per example, [B, 1, ...]: 0 or 1 / (1 - rate). Requires 0 < rate < 1.
torch::Tensor stochastic_depth_scale(const torch::Tensor& x, double rate) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return bernoulli_mask(shape, 1.0 - rate, x.options()) / (1.0 - rate);
}
}  // namespace

torch::Tensor stochastic_depth(const torch::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  // As Flax's Dropout: rate 1 drops everything (keep / (1 - rate) would be 0 / 0 = NaN).
  if (rate >= 1.0) return torch::zeros_like(x);
  return x * stochastic_depth_scale(x, rate);  // the scale on B numbers, one pass over x
}

torch::Tensor stochastic_depth_add(const torch::Tensor& x, double rate, bool training,
                                   const torch::Tensor& residual) {
  if (!training || rate <= 0.0) return residual + x;
  if (rate >= 1.0) return residual + torch::zeros_like(x);  // residual's values, a new tensor, x's grad 0
  return torch::addcmul(residual, x, stochastic_depth_scale(x, rate));
}

ResidualImpl::ResidualImpl(int64_t features, std::string residual_type)
    : type_(std::move(residual_type)), features_(features) {
  if (type_ != "add" && features <= 0)
    throw Error("Residual(" + type_ + "): features must be positive, got " + std::to_string(features));
  if (type_ == "add") {
  } else if (type_ == "highway") {
    add_dense(true, -10.0);
  } else if (type_ == "rezero") {
    rezero_alpha = register_parameter("rezero_alpha", torch::zeros({1}));
  } else if (type_ == "sigtanh") {
    add_dense(true, -10.0);
    add_dense(false, 0.0);
  } else if (type_ == "gated") {
    // Scenic's creation order: W_r(x), U_r(y), b_g, W_z(x), U_z(y), W_g(y), U_g(r * x).
    add_dense(false, 0.0);
    add_dense(false, 0.0);
    b_g = register_parameter("b_g", torch::full({features}, 10.0));
    for (int i = 0; i < 4; ++i) add_dense(false, 0.0);
  } else {
    throw Error("Residual type '" + type_ + "' is not defined (expected add, highway, rezero, sigtanh or gated)");
  }
}

torch::nn::Linear ResidualImpl::add_dense(bool bias, double bias_value) {
  const std::string name = "Dense_" + std::to_string(dense.size());
  auto l = register_module(name, torch::nn::Linear(torch::nn::LinearOptions(features_, features_).bias(bias)));
  torch::NoGradGuard no_grad;
  l->weight.zero_();  // Scenic: kernel_init zeros for every gate
  if (bias) l->bias.fill_(bias_value);
  dense.push_back(l);
  return l;
}

torch::Tensor ResidualImpl::forward(const torch::Tensor& x, const torch::Tensor& y) {
  if (x.sizes() != y.sizes())
    throw Error("Residual: x and y should be of the same shape, got " + shape_str(x.sizes()) + " and " +
                shape_str(y.sizes()));
  if (type_ == "add") return x + y;
  if (type_ == "rezero") return x + rezero_alpha * y;
  if (x.dim() == 0 || x.size(-1) != features_)
    throw Error("Residual(" + type_ + "): expected [..., " + std::to_string(features_) + "], got " +
                shape_str(x.sizes()));
  if (type_ == "highway") {
    auto g = torch::sigmoid(dense[0](x));
    return (1 - g) * x + g * y;
  }
  if (type_ == "sigtanh") return x + torch::sigmoid(dense[0](y)) * torch::tanh(dense[1](y));
  // gated
  auto r = torch::sigmoid(dense[0](x) + dense[1](y));
  auto z = torch::sigmoid(dense[2](x) + dense[3](y) - b_g);
  auto h = torch::tanh(dense[4](y) + dense[5](r * x));
  return (1 - z) * x + z * h;
}

SqueezeAndExciteImpl::SqueezeAndExciteImpl(int64_t channels, int64_t reduction_factor) {
  if (reduction_factor <= 0 || channels / reduction_factor <= 0)
    throw Error("SqueezeAndExcite: channels (" + std::to_string(channels) + ") / reduction_factor (" +
                std::to_string(reduction_factor) + ") must be at least 1");
  const int64_t hidden = channels / reduction_factor;
  Dense_0 = register_module("Dense_0", torch::nn::Linear(channels, hidden));
  Dense_1 = register_module("Dense_1", torch::nn::Linear(hidden, channels));
  for (auto* l : {&Dense_0, &Dense_1}) {
    init::lecun_normal_((*l)->weight);
    torch::nn::init::zeros_((*l)->bias);
  }
}

torch::Tensor SqueezeAndExciteImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != Dense_1->options.out_features())
    throw Error("SqueezeAndExcite: expected NCHW [B, " + std::to_string(Dense_1->options.out_features()) +
                ", H, W], got " + shape_str(x.sizes()));
  auto s = x.mean({2, 3});                                        // squeeze: [B, C]
  s = torch::sigmoid(Dense_1(torch::relu(Dense_0(s))));            // [B, C]
  return x * s.unsqueeze(-1).unsqueeze(-1);                       // excite: [B, C, H, W]
}

AffineImpl::AffineImpl(int64_t features, AffineOptions options) : options_(options) {
  if (features <= 0) throw Error("Affine: features must be positive, got " + std::to_string(features));
  scale = register_parameter("scale", torch::full({features}, options.scale_init));
  if (options.use_bias) bias = register_parameter("bias", torch::full({features}, options.bias_init));
}

torch::Tensor AffineImpl::forward(const torch::Tensor& x) {
  const int64_t dim = options_.channel_dim < 0 ? options_.channel_dim + x.dim() : options_.channel_dim;
  if (dim < 0 || dim >= x.dim() || x.size(dim) != scale.size(0))
    throw Error("Affine: axis " + std::to_string(options_.channel_dim) + " of " + shape_str(x.sizes()) +
                " must have " + std::to_string(scale.size(0)) + " channels");
  std::vector<int64_t> shape(x.dim(), 1);  // broadcast the [n] parameters along `dim`
  shape[dim] = scale.size(0);
  auto y = x * scale.view(shape);
  return bias.defined() ? y + bias.view(shape) : y;
}

}  // namespace scenic::model
