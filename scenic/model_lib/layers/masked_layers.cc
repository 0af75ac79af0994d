#include "scenic/model_lib/layers/masked_layers.h"

#include <torch/torch.h>

#include <limits>
#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"

namespace scenic::model::masked {
namespace {

using Pair = std::pair<int64_t, int64_t>;

std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

// Checks spatial_shape [B, n] against x [B, C, spatial...] and returns it as int64.
torch::Tensor checked_shape(const torch::Tensor& x, const torch::Tensor& spatial_shape, const char* op) {
  const int64_t n = x.dim() - 2;
  if (spatial_shape.dim() != 2 || spatial_shape.size(0) != x.size(0) || spatial_shape.size(1) != n ||
      spatial_shape.is_floating_point() || spatial_shape.scalar_type() == torch::kBool)
    throw Error(std::string(op) + ": spatial_shape must be an integer tensor [B, " + std::to_string(n) +
                "] for inputs " + shape_str(x.sizes()) + ", got " + shape_str(spatial_shape.sizes()) + " " +
                std::string(c10::toString(spatial_shape.scalar_type())));
  return spatial_shape.to(x.device(), torch::kLong);
}

void check_channels_first(const torch::Tensor& x, int64_t channels, const char* op) {
  if (x.dim() < 2 || x.size(1) != channels)
    throw Error(std::string(op) + ": expected [B, " + std::to_string(channels) + ", spatial...], got " +
                shape_str(x.sizes()));
}

// Scenic refuses 'SAME' windows larger than 1 once a spatial shape is given: the amount
// padded on each side would depend on every example's own size.
void check_not_same(const Padding& padding, Pair window, const char* op) {
  if (padding.is_same() && (window.first != 1 || window.second != 1))
    throw Error(std::string(op) + ": padding 'SAME' with a window of (" + std::to_string(window.first) + ", " +
                std::to_string(window.second) + ") is not supported with a spatial_shape; use 'VALID' or explicit pads");
}

// The shape [1, C, 1, ...] that broadcasts a per-channel [C] tensor over x.
std::vector<int64_t> channel_shape(const torch::Tensor& x) {
  std::vector<int64_t> s(x.dim(), 1);
  s[1] = x.size(1);
  return s;
}

torch::ScalarType compute_dtype(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
}

}  // namespace

torch::Tensor mask_from_spatial(torch::IntArrayRef padded_shape, const torch::Tensor& spatial_shape) {
  const int64_t n = static_cast<int64_t>(padded_shape.size());
  if (spatial_shape.dim() != 2 || spatial_shape.size(1) != n)
    throw Error("mask_from_spatial: spatial_shape must be [B, " + std::to_string(n) + "] for padded shape " +
                shape_str(padded_shape) + ", got " + shape_str(spatial_shape.sizes()));
  const auto shapes = spatial_shape.to(torch::kLong);
  const int64_t b = shapes.size(0);
  torch::Tensor mask;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> idx_shape(n + 1, 1), thr_shape(n + 1, 1);
    idx_shape[i + 1] = padded_shape[i];
    thr_shape[0] = b;
    auto m = torch::arange(padded_shape[i], shapes.options()).view(idx_shape) < shapes.select(1, i).view(thr_shape);
    mask = mask.defined() ? mask.logical_and(m) : m;  // broadcasts to [B, padded...]
  }
  std::vector<int64_t> full{b};
  full.insert(full.end(), padded_shape.begin(), padded_shape.end());
  return mask.defined() ? mask.expand(full) : torch::ones({b}, shapes.options().dtype(torch::kBool));
}

torch::Tensor apply_spatial_mask(const torch::Tensor& x, const torch::Tensor& spatial_shape, double value) {
  if (x.dim() < 2) throw Error("apply_spatial_mask: expected [B, C, spatial...], got " + shape_str(x.sizes()));
  auto shapes = checked_shape(x, spatial_shape, "apply_spatial_mask");
  auto mask = mask_from_spatial(x.sizes().slice(2), shapes).unsqueeze(1);  // [B, 1, spatial...]
  return torch::where(mask, x, torch::scalar_tensor(value, x.options()));
}

torch::Tensor conv_output_shape(const torch::Tensor& spatial_shape, Pair kernel, Pair strides, const Padding& padding,
                                Pair kernel_dilation) {
  if (spatial_shape.dim() != 2 || spatial_shape.size(1) != 2)
    throw Error("conv_output_shape: spatial_shape must be [B, 2], got " + shape_str(spatial_shape.sizes()));
  auto in = spatial_shape.to(torch::kLong);  // [B, 2]
  const int64_t k[2] = {(kernel.first - 1) * kernel_dilation.first + 1,
                        (kernel.second - 1) * kernel_dilation.second + 1};
  const int64_t s[2] = {strides.first, strides.second};
  std::vector<torch::Tensor> out;
  for (int i = 0; i < 2; ++i) {
    auto n = in.select(1, i);  // [B]
    torch::Tensor padded;
    if (padding.kind == Padding::Kind::kSame) {
      auto o = torch::div(n + (s[i] - 1), s[i], "floor");  // ceil(n / s)
      padded = n + ((o - 1) * s[i] + k[i] - n).clamp_min(0);
    } else if (padding.kind == Padding::Kind::kExplicit) {
      if (padding.pads.size() != 2)
        throw Error("conv_output_shape: expected 2 (low, high) pairs, got " + padding.to_string());
      padded = n + (padding.pads[i].first + padding.pads[i].second);
    } else {
      padded = n;
    }
    out.push_back((torch::div(padded - k[i], s[i], "floor") + 1).clamp_min(0));
  }
  return torch::stack(out, 1);  // [B, 2]
}

Masked avg_pool(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding,
                const torch::Tensor& spatial_shape) {
  if (!spatial_shape.defined()) return {model::avg_pool(x, window, strides, padding), {}};
  check_not_same(padding, window, "masked avg_pool");
  auto shapes = checked_shape(x, spatial_shape, "masked avg_pool");
  // Zero the padding so explicit pads past the real border behave like zero padding.
  auto y = model::avg_pool(apply_spatial_mask(x, shapes), window, strides, padding);
  auto out_shape = conv_output_shape(shapes, window, strides, padding);
  return {apply_spatial_mask(y, out_shape), out_shape};
}

Masked max_pool(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding,
                const torch::Tensor& spatial_shape) {
  if (!spatial_shape.defined()) return {model::max_pool(x, window, strides, padding), {}};
  check_not_same(padding, window, "masked max_pool");
  auto shapes = checked_shape(x, spatial_shape, "masked max_pool");
  // Padding must never win a max: -inf before pooling (Scenic does the same).
  auto y = model::max_pool(apply_spatial_mask(x, shapes, -std::numeric_limits<double>::infinity()), window, strides,
                           padding);
  auto out_shape = conv_output_shape(shapes, window, strides, padding);
  return {apply_spatial_mask(y, out_shape), out_shape};
}

BatchNormImpl::BatchNormImpl(int64_t num_features, BatchNormOptions options) : options_(options) {
  if (num_features <= 0) throw Error("masked BatchNorm: num_features must be positive");
  if (options.use_scale) scale = register_parameter("scale", torch::ones({num_features}));
  if (options.use_bias) bias = register_parameter("bias", torch::zeros({num_features}));
  mean = register_buffer("mean", torch::zeros({num_features}));
  var = register_buffer("var", torch::ones({num_features}));
}

Masked BatchNormImpl::forward(const torch::Tensor& x_in, const torch::Tensor& spatial_shape) {
  check_channels_first(x_in, mean.size(0), "masked BatchNorm");
  torch::Tensor shapes;
  if (spatial_shape.defined()) shapes = checked_shape(x_in, spatial_shape, "masked BatchNorm");
  auto x = x_in.to(compute_dtype(x_in));
  if (shapes.defined()) x = apply_spatial_mask(x, shapes);  // padded positions add 0 to the sums
  const auto cshape = channel_shape(x);
  torch::Tensor mu, sigma2;  // [C]
  if (is_training()) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    auto sum = x.sum(dims), sum2 = x.square().sum(dims);
    // The number of real positions per channel: all of them, or sum_b prod(spatial_shape[b]).
    auto count = shapes.defined() ? shapes.prod(1).sum().to(x.scalar_type()).clamp_min(1.0)
                                  : torch::scalar_tensor(std::max<double>(1.0, x.numel() / x.size(1)), x.options());
    mu = sum / count;
    sigma2 = (sum2 / count - mu.square()).clamp_min(0.0);  // biased, as Flax
    torch::NoGradGuard no_grad;
    const double m = options_.momentum;
    mean.mul_(m).add_(mu.detach().to(mean.dtype()), 1.0 - m);
    var.mul_(m).add_(sigma2.detach().to(var.dtype()), 1.0 - m);
  } else {
    mu = mean.to(x.scalar_type());
    sigma2 = var.to(x.scalar_type());
  }
  auto mul = torch::rsqrt(sigma2 + options_.epsilon);
  if (scale.defined()) mul = mul * scale.to(x.scalar_type());
  auto y = (x - mu.view(cshape)) * mul.view(cshape);
  if (bias.defined()) y = y + bias.to(x.scalar_type()).view(cshape);
  if (shapes.defined()) y = apply_spatial_mask(y, shapes);
  return {y.to(x_in.scalar_type()), spatial_shape};
}

GroupNormImpl::GroupNormImpl(int64_t num_channels, GroupNormOptions options)
    : options_(options), channels_(num_channels) {
  if (options.num_groups.has_value() == options.group_size.has_value())
    throw Error("masked GroupNorm: either num_groups or group_size should be specified, but not both");
  if (options.group_size) {
    if (*options.group_size <= 0 || num_channels % *options.group_size != 0)
      throw Error("masked GroupNorm: number of channels (" + std::to_string(num_channels) +
                  ") is not a multiple of the group size (" + std::to_string(*options.group_size) + ")");
    groups_ = num_channels / *options.group_size;
  } else {
    groups_ = *options.num_groups;
  }
  if (groups_ <= 0 || num_channels % groups_ != 0)
    throw Error("masked GroupNorm: number of groups (" + std::to_string(groups_) +
                ") does not divide the number of channels (" + std::to_string(num_channels) + ")");
  if (options.use_scale) scale = register_parameter("scale", torch::ones({num_channels}));
  if (options.use_bias) bias = register_parameter("bias", torch::zeros({num_channels}));
}

Masked GroupNormImpl::forward(const torch::Tensor& x_in, const torch::Tensor& spatial_shape) {
  const int64_t channels = channels_;
  check_channels_first(x_in, channels, "masked GroupNorm");
  torch::Tensor shapes;
  if (spatial_shape.defined()) shapes = checked_shape(x_in, spatial_shape, "masked GroupNorm");
  auto x = x_in.to(compute_dtype(x_in));
  if (shapes.defined()) x = apply_spatial_mask(x, shapes);
  std::vector<int64_t> grouped{x.size(0), groups_, channels / groups_};  // [B, G, C/G, spatial...]
  grouped.insert(grouped.end(), x.sizes().begin() + 2, x.sizes().end());
  auto g = x.reshape(grouped);
  std::vector<int64_t> dims;
  for (int64_t d = 2; d < g.dim(); ++d) dims.push_back(d);
  auto mu = g.mean(dims, /*keepdim=*/true);                 // [B, G, 1, ...]
  auto mean_sq = g.square().mean(dims, /*keepdim=*/true);
  if (shapes.defined() && options_.spatial_norm) {
    // The means above divided by the padded extent; rescale to the real one.
    double padded = 1.0;
    for (int64_t d = 2; d < x.dim(); ++d) padded *= static_cast<double>(x.size(d));
    std::vector<int64_t> bshape(mu.dim(), 1);
    bshape[0] = x.size(0);
    auto real = shapes.prod(1).to(x.scalar_type()).clamp_min(1.0).view(bshape);
    mu = mu * (padded / real);
    mean_sq = mean_sq * (padded / real);
  }
  auto var = (mean_sq - mu.square()).clamp_min(0.0);
  auto y = ((g - mu) * torch::rsqrt(var + options_.epsilon)).reshape(x.sizes());
  const auto cshape = channel_shape(x);
  if (scale.defined()) y = y * scale.to(x.scalar_type()).view(cshape);
  if (bias.defined()) y = y + bias.to(x.scalar_type()).view(cshape);
  if (shapes.defined()) y = apply_spatial_mask(y, shapes);
  return {y.to(x_in.scalar_type()), spatial_shape};
}

ConvImpl::ConvImpl(int64_t in_channels, int64_t features, ConvOptions options) : options_(options) {
  const auto [kh, kw] = options.kernel_size;
  if (in_channels <= 0 || features <= 0 || kh <= 0 || kw <= 0 || options.strides.first <= 0 ||
      options.strides.second <= 0 || options.kernel_dilation.first <= 0 || options.kernel_dilation.second <= 0)
    throw Error("masked Conv: channels, kernel size, strides and dilation must be positive");
  kernel = register_parameter("kernel", torch::empty({features, in_channels, kh, kw}));
  init::lecun_normal_(kernel);
  if (options.use_bias) bias = register_parameter("bias", torch::zeros({features}));
}

Masked ConvImpl::forward(const torch::Tensor& x, const torch::Tensor& spatial_shape) {
  if (x.dim() != 4 || x.size(1) != kernel.size(1))
    throw Error("masked Conv: expected NCHW [B, " + std::to_string(kernel.size(1)) + ", H, W], got " +
                shape_str(x.sizes()));
  const auto& o = options_;
  torch::Tensor shapes, in = x;
  if (spatial_shape.defined()) {
    check_not_same(o.padding, o.kernel_size, "masked Conv");
    shapes = checked_shape(x, spatial_shape, "masked Conv");
    in = apply_spatial_mask(x, shapes);  // explicit pads past the real border then read zeros
  }
  const int64_t eff[2] = {(o.kernel_size.first - 1) * o.kernel_dilation.first + 1,
                          (o.kernel_size.second - 1) * o.kernel_dilation.second + 1};
  const int64_t size[2] = {x.size(2), x.size(3)};
  const int64_t str[2] = {o.strides.first, o.strides.second};
  in = pad_spatial(in, resolve_padding(o.padding, size, eff, str));
  if (in.size(2) < eff[0] || in.size(3) < eff[1])
    throw Error("masked Conv: kernel larger than the (padded) input " + shape_str(in.sizes()));
  const std::vector<int64_t> strides{o.strides.first, o.strides.second}, no_pad{0, 0},
      dilation{o.kernel_dilation.first, o.kernel_dilation.second};
  auto y = torch::conv2d(in, kernel, bias, strides, no_pad, dilation);
  if (!shapes.defined()) return {y, {}};
  auto out_shape = conv_output_shape(shapes, o.kernel_size, o.strides, o.padding, o.kernel_dilation);
  return {apply_spatial_mask(y, out_shape), out_shape};
}

}  // namespace scenic::model::masked
