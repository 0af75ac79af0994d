// Parameter-free tensor operations for vision models (Scenic's model_lib/layers/nn_ops.py):
// patch extraction and the image <-> patches round trip, space-to-depth, weighted
// pooling, nearest-neighbour 2x upscaling, central crop, and the relative-position tables
// used by relative attention.
//
// Layout: images are NCHW here ([B, C, H, W], LibTorch's convention) where Scenic uses
// NHWC. Where Scenic returns per-patch tensors laid out [.., h, w, C] we return
// [.., C, h, w] (each patch is itself a CHW image); space_to_depth keeps Scenic's
// channel order (see there) so weights trained after it in Flax still line up.
// Padding follows XLA/Flax: 'VALID', 'SAME' (total pad max((ceil(n/s)-1)*s + k - n, 0),
// the smaller half before) or explicit (low, high) pairs per spatial dimension.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace scenic::model {

// Padding of the spatial dimensions of a convolution or pooling window.
struct Padding {
  enum class Kind { kValid, kSame, kExplicit };
  Kind kind = Kind::kValid;
  std::vector<std::pair<int64_t, int64_t>> pads;  // (low, high) per spatial dim; kExplicit only

  Padding() = default;
  // "VALID" or "SAME" (any case); anything else throws scenic::Error.
  Padding(const char* name);         // NOLINT(google-explicit-constructor): "SAME" reads well
  Padding(const std::string& name);  // NOLINT(google-explicit-constructor)
  Padding(std::vector<std::pair<int64_t, int64_t>> explicit_pads);  // NOLINT
  bool is_same() const { return kind == Kind::kSame; }
  std::string to_string() const;
};

// The (low, high) pads per spatial dimension for inputs of spatial size `in` (XLA's
// padtype_to_pads). `window` is the effective (dilated) window. Throws when an explicit
// padding has the wrong number of pairs.
std::vector<std::pair<int64_t, int64_t>> resolve_padding(const Padding& padding,
                                                         torch::IntArrayRef in,
                                                         torch::IntArrayRef window,
                                                         torch::IntArrayRef strides);

// Pads the last two dims of x [B, C, H, W] with `value` as `pads` says.
torch::Tensor pad_spatial(const torch::Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& pads,
                          double value = 0.0);

// Sliding windows of x [B, C, H, W] (TF's extract_image_patches, Scenic's
// extract_image_patches with rhs_dilation): returns [B, oh, ow, C, kh, kw]. Pads are zeros.
torch::Tensor extract_image_patches(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                                    std::pair<int64_t, int64_t> strides = {1, 1},
                                    const Padding& padding = {},
                                    std::pair<int64_t, int64_t> dilation = {1, 1});

// Scenic's extract_patches: VALID windows of size (h, w) with `strides`;
// x [B, C, H, W] -> [B, (H - h) / s1 + 1, (W - w) / s2 + 1, C, h, w].
torch::Tensor extract_patches(const torch::Tensor& x, std::pair<int64_t, int64_t> size,
                              std::pair<int64_t, int64_t> strides = {1, 1});

// Scenic's patch_image. mode "i2p": image [B, C, H, W] -> patches [B, nh, nw, C, ph, pw]
// (strides default to the patch size). mode "p2i": patches -> image of `image_shape`
// [B, C, H, W], each pixel the mean of the patch entries that cover it (overlaps
// averaged). A pixel no patch covers is 0 (Scenic divides 0 by a zero count: NaN).
// Unlike Scenic, the computation stays in the input's dtype (Scenic casts to float64).
torch::Tensor patch_image(const torch::Tensor& inputs, torch::IntArrayRef image_shape,
                          std::pair<int64_t, int64_t> patch_size,
                          std::optional<std::pair<int64_t, int64_t>> strides = std::nullopt,
                          const Padding& padding = {}, const std::string& mode = "i2p");

// Scenic's space_to_depth: x [B, C, H, W] -> [B, kh * kw * C, oh, ow]. Output channel
// (i * kw + j) * C + c holds input channel c at window offset (i, j): Scenic's NHWC
// order (kh, kw, C), C fastest; note torch's pixel_unshuffle uses (C, kh, kw) instead.
// Strides default to the window.
torch::Tensor space_to_depth(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                             std::optional<std::pair<int64_t, int64_t>> strides = std::nullopt,
                             const Padding& padding = {});

// Plain max / average pooling with XLA padding semantics on x [B, C, H, W]. Strides
// default to 1 (Flax). avg_pool divides by the full window size, padded entries counting
// as zeros (Flax's nn.avg_pool).
torch::Tensor max_pool(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                       std::pair<int64_t, int64_t> strides = {1, 1}, const Padding& padding = {});
torch::Tensor avg_pool(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                       std::pair<int64_t, int64_t> strides = {1, 1}, const Padding& padding = {});
// Window sums (Flax's nn.pool with lax.add).
torch::Tensor sum_pool(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                       std::pair<int64_t, int64_t> strides = {1, 1}, const Padding& padding = {});

// Scenic's pooling(): pooling_type "avg_pooling" | "max_pooling" | "space_to_depth";
// strides default to the window.
torch::Tensor pooling(const torch::Tensor& x, std::pair<int64_t, int64_t> window,
                      const std::string& pooling_type,
                      std::optional<std::pair<int64_t, int64_t>> strides = std::nullopt,
                      const Padding& padding = {});

// Scenic's weighted_max_pool / weighted_avg_pool. x [B, C, H, W], weights [B, H, W].
// max: max over the window of x * w; pooled weights = max of w, [B, oh, ow].
// avg: sum(x * w) / sum(w) over the window; pooled weights = sum(w) / window size
// (a window whose weights sum to 0 gives 0/0, as in Scenic). Strides default to 1.
struct WeightedPoolResult {
  torch::Tensor outputs;         // [B, C, oh, ow]
  torch::Tensor pooled_weights;  // [B, oh, ow]
};
WeightedPoolResult weighted_max_pool(const torch::Tensor& x, const torch::Tensor& weights,
                                     std::pair<int64_t, int64_t> window,
                                     std::pair<int64_t, int64_t> strides = {1, 1},
                                     const Padding& padding = {});
WeightedPoolResult weighted_avg_pool(const torch::Tensor& x, const torch::Tensor& weights,
                                     std::pair<int64_t, int64_t> window,
                                     std::pair<int64_t, int64_t> strides = {1, 1},
                                     const Padding& padding = {});

// Repeats every pixel 2x2: [B, C, H, W] -> [B, C, 2H, 2W].
torch::Tensor upscale2x_nearest_neighbor(const torch::Tensor& x);

// The central (h, w) window of x [B, C, H, W] (offsets floor((H - h) / 2), floor((W - w) / 2)).
// Scenic takes a full NHWC target shape and reads [1:3]; here just (h, w).
torch::Tensor central_crop(const torch::Tensor& x, std::pair<int64_t, int64_t> target_hw);

// [q_len, k_len] int64: entry (i, j) = j - i + q_len - 1 (shifted so the smallest is 0).
torch::Tensor compute_1d_relative_distance(int64_t query_len, int64_t key_len);

// Per-axis relative positions of every query/key pair for N-d shapes, int64
// [len(axes), q_shape[axes]..., k_shape[axes]...]: k_coord - q_coord along each axis,
// shifted so each axis' smallest value is 0. `spatial_axis` empty means all axes.
torch::Tensor compute_relative_positions(const std::vector<int64_t>& query_shape,
                                         const std::vector<int64_t>& key_shape,
                                         const std::vector<int64_t>& spatial_axis = {});

}  // namespace scenic::model
