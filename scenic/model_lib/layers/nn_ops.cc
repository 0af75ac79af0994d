#include "scenic/model_lib/layers/nn_ops.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

using Pair = std::pair<int64_t, int64_t>;

std::string shape_str(torch::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

void check_image(const torch::Tensor& x, const char* op) {
  if (x.dim() != 4) throw Error(std::string(op) + ": expected an NCHW image [B, C, H, W], got shape " + shape_str(x.sizes()));
}

void check_positive(Pair p, const char* what, const char* op) {
  if (p.first <= 0 || p.second <= 0)
    throw Error(std::string(op) + ": " + what + " must be positive, got (" + std::to_string(p.first) + ", " +
                std::to_string(p.second) + ")");
}

// Pads x [B, C, H, W] for a window, then returns it with the resolved pads applied.
torch::Tensor pad_for_window(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding,
                             double value) {
  const int64_t in[2] = {x.size(2), x.size(3)};
  const int64_t win[2] = {window.first, window.second};
  const int64_t str[2] = {strides.first, strides.second};
  return pad_spatial(x, resolve_padding(padding, in, win, str), value);
}

void check_output_size(const torch::Tensor& padded, Pair window, const char* op) {
  if (padded.size(2) < window.first || padded.size(3) < window.second)
    throw Error(std::string(op) + ": window (" + std::to_string(window.first) + ", " + std::to_string(window.second) +
                ") is larger than the (padded) input " + shape_str(padded.sizes()));
}

}  // namespace

Padding::Padding(const char* name) : Padding(std::string(name)) {}

Padding::Padding(const std::string& name) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  if (upper == "VALID") {
    kind = Kind::kValid;
  } else if (upper == "SAME") {
    kind = Kind::kSame;
  } else {
    throw Error("unrecognized padding '" + name + "': expected 'VALID', 'SAME' or (low, high) pairs");
  }
}

Padding::Padding(std::vector<std::pair<int64_t, int64_t>> explicit_pads)
    : kind(Kind::kExplicit), pads(std::move(explicit_pads)) {}

std::string Padding::to_string() const {
  if (kind == Kind::kValid) return "VALID";
  if (kind == Kind::kSame) return "SAME";
  std::string s = "[";
  for (size_t i = 0; i < pads.size(); ++i)
    s += (i ? ", (" : "(") + std::to_string(pads[i].first) + ", " + std::to_string(pads[i].second) + ")";
  return s + "]";
}

std::vector<std::pair<int64_t, int64_t>> resolve_padding(const Padding& padding, torch::IntArrayRef in,
                                                         torch::IntArrayRef window, torch::IntArrayRef strides) {
  const size_t n = in.size();
  if (window.size() != n || strides.size() != n)
    throw Error("padding: window " + shape_str(window) + " and strides " + shape_str(strides) + " must have " +
                std::to_string(n) + " entries");
  switch (padding.kind) {
    case Padding::Kind::kValid:
      return std::vector<Pair>(n, {0, 0});
    case Padding::Kind::kSame: {
      std::vector<Pair> pads;
      for (size_t i = 0; i < n; ++i) {
        const int64_t out = (in[i] + strides[i] - 1) / strides[i];  // ceil(in / stride)
        const int64_t total = std::max<int64_t>((out - 1) * strides[i] + window[i] - in[i], 0);
        pads.emplace_back(total / 2, total - total / 2);
      }
      return pads;
    }
    case Padding::Kind::kExplicit:
      if (padding.pads.size() != n)
        throw Error("padding: expected " + std::to_string(n) + " (low, high) pairs, got " + padding.to_string());
      return padding.pads;
  }
  return {};
}

torch::Tensor pad_spatial(const torch::Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads,
                          double value) {
  if (pads.size() != 2) throw Error("pad_spatial: expected 2 (low, high) pairs for [B, C, H, W]");
  if (std::all_of(pads.begin(), pads.end(), [](const Pair& p) { return p.first == 0 && p.second == 0; })) return x;
  // torch's pad lists the last dim first.
  return torch::constant_pad_nd(x, {pads[1].first, pads[1].second, pads[0].first, pads[0].second}, value);
}

torch::Tensor extract_image_patches(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding,
                                    Pair dilation) {
  check_image(x, "extract_image_patches");
  check_positive(window, "window", "extract_image_patches");
  check_positive(strides, "strides", "extract_image_patches");
  check_positive(dilation, "dilation", "extract_image_patches");
  const Pair eff{(window.first - 1) * dilation.first + 1, (window.second - 1) * dilation.second + 1};
  auto padded = pad_for_window(x, eff, strides, padding, 0.0);
  check_output_size(padded, eff, "extract_image_patches");
  // Views, no copy: [B, C, oh, ow, eff_h, eff_w], then keep every dilation-th tap.
  auto p = padded.unfold(2, eff.first, strides.first).unfold(3, eff.second, strides.second);
  using torch::indexing::None;
  using torch::indexing::Slice;
  p = p.index({Slice(), Slice(), Slice(), Slice(), Slice(None, None, dilation.first),
               Slice(None, None, dilation.second)});
  return p.permute({0, 2, 3, 1, 4, 5});  // [B, oh, ow, C, kh, kw]
}

torch::Tensor extract_patches(const torch::Tensor& x, Pair size, Pair strides) {
  return extract_image_patches(x, size, strides, Padding("VALID"));
}

torch::Tensor patch_image(const torch::Tensor& inputs, torch::IntArrayRef image_shape, Pair patch_size,
                          std::optional<Pair> strides_opt, const Padding& padding, const std::string& mode) {
  const Pair strides = strides_opt.value_or(patch_size);
  check_positive(patch_size, "patch_size", "patch_image");
  if (mode == "i2p") {
    check_image(inputs, "patch_image(i2p)");
    if (inputs.size(2) < patch_size.first || inputs.size(3) < patch_size.second)
      throw Error("patch_image: patch (" + std::to_string(patch_size.first) + ", " + std::to_string(patch_size.second) +
                  ") is larger than the image " + shape_str(inputs.sizes()));
    return extract_image_patches(inputs, patch_size, strides, padding);
  }
  if (mode != "p2i") throw Error("patch_image: mode must be 'i2p' or 'p2i', got '" + mode + "'");
  if (image_shape.size() != 4) throw Error("patch_image(p2i): image_shape must be [B, C, H, W], got " + shape_str(image_shape));
  const int64_t b = image_shape[0], c = image_shape[1], h = image_shape[2], w = image_shape[3];
  const int64_t in[2] = {h, w};
  const int64_t win[2] = {patch_size.first, patch_size.second};
  const int64_t str[2] = {strides.first, strides.second};
  const auto pads = resolve_padding(padding, in, win, str);
  const int64_t hp = h + pads[0].first + pads[0].second, wp = w + pads[1].first + pads[1].second;
  const int64_t nh = (hp - patch_size.first) / strides.first + 1, nw = (wp - patch_size.second) / strides.second + 1;
  const std::vector<int64_t> expected{b, nh, nw, c, patch_size.first, patch_size.second};
  if (inputs.sizes() != torch::IntArrayRef(expected))
    throw Error("patch_image(p2i): patches have shape " + shape_str(inputs.sizes()) + ", expected " +
                shape_str(expected) + " for image " + shape_str(image_shape));
  // fold() sums every patch back into place; dividing by the same sum of ones averages
  // overlaps (Scenic gets the same from the VJP of i2p).
  namespace F = torch::nn::functional;
  const auto fold = F::FoldFuncOptions({hp, wp}, {patch_size.first, patch_size.second})
                        .stride({strides.first, strides.second});
  auto cols = inputs.permute({0, 3, 4, 5, 1, 2}).reshape({b, c * patch_size.first * patch_size.second, nh * nw});
  auto sums = F::fold(cols, fold);                           // [B, C, Hp, Wp]
  auto counts = F::fold(torch::ones_like(cols.narrow(0, 0, 1)), fold);  // [1, C, Hp, Wp]
  auto image = sums / counts.clamp_min(1);  // uncovered pixels: 0 / 1
  return image.narrow(2, pads[0].first, h).narrow(3, pads[1].first, w);
}

torch::Tensor space_to_depth(const torch::Tensor& x, Pair window, std::optional<Pair> strides, const Padding& padding) {
  auto p = extract_image_patches(x, window, strides.value_or(window), padding);  // [B, oh, ow, C, kh, kw]
  const int64_t oh = p.size(1), ow = p.size(2);
  return p.permute({0, 4, 5, 3, 1, 2}).reshape({x.size(0), -1, oh, ow});  // [B, kh * kw * C, oh, ow]
}

torch::Tensor max_pool(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding) {
  check_image(x, "max_pool");
  check_positive(window, "window", "max_pool");
  check_positive(strides, "strides", "max_pool");
  auto padded = pad_for_window(x, window, strides, padding, -std::numeric_limits<double>::infinity());
  check_output_size(padded, window, "max_pool");
  return torch::max_pool2d(padded, {window.first, window.second}, {strides.first, strides.second});
}

torch::Tensor sum_pool(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding) {
  check_image(x, "sum_pool");
  check_positive(window, "window", "sum_pool");
  check_positive(strides, "strides", "sum_pool");
  auto padded = pad_for_window(x, window, strides, padding, 0.0);
  check_output_size(padded, window, "sum_pool");
  return torch::avg_pool2d(padded, {window.first, window.second}, {strides.first, strides.second}, /*padding=*/{0, 0},
                           /*ceil_mode=*/false, /*count_include_pad=*/true, /*divisor_override=*/1);
}

torch::Tensor avg_pool(const torch::Tensor& x, Pair window, Pair strides, const Padding& padding) {
  return sum_pool(x, window, strides, padding) / static_cast<double>(window.first * window.second);
}

torch::Tensor pooling(const torch::Tensor& x, Pair window, const std::string& pooling_type,
                      std::optional<Pair> strides_opt, const Padding& padding) {
  const Pair strides = strides_opt.value_or(window);
  if (pooling_type == "avg_pooling") return avg_pool(x, window, strides, padding);
  if (pooling_type == "max_pooling") return max_pool(x, window, strides, padding);
  if (pooling_type == "space_to_depth") return space_to_depth(x, window, strides, padding);
  throw Error("pooling: pooling_type '" + pooling_type +
              "' is not defined (expected avg_pooling, max_pooling or space_to_depth)");
}

namespace {
void check_weights(const torch::Tensor& x, const torch::Tensor& weights, const char* op) {
  check_image(x, op);
  if (weights.dim() != 3 || weights.size(0) != x.size(0) || weights.size(1) != x.size(2) ||
      weights.size(2) != x.size(3))
    throw Error(std::string(op) + ": weights must be [B, H, W] for inputs " + shape_str(x.sizes()) + ", got " +
                shape_str(weights.sizes()));
}
}  // namespace

WeightedPoolResult weighted_max_pool(const torch::Tensor& x, const torch::Tensor& weights, Pair window, Pair strides,
                                     const Padding& padding) {
  check_weights(x, weights, "weighted_max_pool");
  auto w = weights.unsqueeze(1);  // [B, 1, H, W]
  return {max_pool(x * w, window, strides, padding), max_pool(w, window, strides, padding).squeeze(1)};
}

WeightedPoolResult weighted_avg_pool(const torch::Tensor& x, const torch::Tensor& weights, Pair window, Pair strides,
                                     const Padding& padding) {
  check_weights(x, weights, "weighted_avg_pool");
  auto w = weights.unsqueeze(1);  // [B, 1, H, W]
  auto pooled = sum_pool(w, window, strides, padding);  // [B, 1, oh, ow]
  auto out = sum_pool(x * w, window, strides, padding) / pooled;
  return {out, pooled.squeeze(1) / static_cast<double>(window.first * window.second)};
}

torch::Tensor upscale2x_nearest_neighbor(const torch::Tensor& x) {
  check_image(x, "upscale2x_nearest_neighbor");
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.unsqueeze(3).unsqueeze(5).expand({b, c, h, 2, w, 2}).reshape({b, c, 2 * h, 2 * w});
}

torch::Tensor central_crop(const torch::Tensor& x, Pair target_hw) {
  check_image(x, "central_crop");
  const auto [h, w] = target_hw;
  if (h < 0 || w < 0 || h > x.size(2) || w > x.size(3))
    throw Error("central_crop: target (" + std::to_string(h) + ", " + std::to_string(w) +
                ") does not fit in the image " + shape_str(x.sizes()));
  return x.narrow(2, (x.size(2) - h) / 2, h).narrow(3, (x.size(3) - w) / 2, w);
}

torch::Tensor compute_1d_relative_distance(int64_t query_len, int64_t key_len) {
  if (query_len <= 0 || key_len <= 0)
    throw Error("compute_1d_relative_distance: lengths must be positive, got " + std::to_string(query_len) + " and " +
                std::to_string(key_len));
  auto rel = torch::arange(key_len, torch::kLong).unsqueeze(0) - torch::arange(query_len, torch::kLong).unsqueeze(1);
  return rel - rel.min();  // [q, k]
}

torch::Tensor compute_relative_positions(const std::vector<int64_t>& query_shape, const std::vector<int64_t>& key_shape,
                                         const std::vector<int64_t>& spatial_axis) {
  if (query_shape.size() != key_shape.size())
    throw Error("compute_relative_positions: query shape " + shape_str(query_shape) + " and key shape " +
                shape_str(key_shape) + " must have the same rank");
  std::vector<int64_t> axes = spatial_axis;
  if (axes.empty())
    for (size_t i = 0; i < query_shape.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  for (int64_t a : axes)
    if (a < 0 || a >= static_cast<int64_t>(query_shape.size()))
      throw Error("compute_relative_positions: spatial axis " + std::to_string(a) + " is not in [0, " +
                  std::to_string(query_shape.size()) + ")");
  for (size_t i = 0; i < query_shape.size(); ++i)
    if (query_shape[i] <= 0 || key_shape[i] <= 0)
      throw Error("compute_relative_positions: shapes must be positive, got " + shape_str(query_shape) + " and " +
                  shape_str(key_shape));
  const int64_t n = static_cast<int64_t>(axes.size());
  std::vector<int64_t> full;  // q_shape[axes]..., k_shape[axes]...
  for (int64_t a : axes) full.push_back(query_shape[a]);
  for (int64_t a : axes) full.push_back(key_shape[a]);
  std::vector<torch::Tensor> per_axis;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int64_t> qv(2 * n, 1), kv(2 * n, 1);
    qv[i] = full[i];
    kv[n + i] = full[n + i];
    auto rel = torch::arange(full[n + i], torch::kLong).view(kv) - torch::arange(full[i], torch::kLong).view(qv);
    rel = rel.expand(full);
    per_axis.push_back(rel - rel.min());
  }
  return torch::stack(per_axis);  // [n, q..., k...]
}

}  // namespace scenic::model
