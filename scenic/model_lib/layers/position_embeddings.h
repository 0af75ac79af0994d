// Position embeddings: fixed sinusoidal (1-D, 2-D and 3-D sin-cos), learned 1-D and 2-D
// tables, factorized relative attention bias, and the resize of a ViT position embedding
// to a new patch grid.
//
// Mirrors the position-embedding part of Scenic's model_lib/layers/attention_layers.py
// (sinusoidal_init, Add1DPositionEmbedding, Add2DPositionEmbedding,
// get_fixed_sincos_position_embedding, AddFixedSinCosPositionEmbedding,
// RelativeAttentionBias) and the position-embedding surgery of Scenic's ViT checkpoint
// loader (vit.init_vit_from_train_state). Token grids are channel-last here, as in Scenic:
// [B, N, D] sequences, [B, h, w, D] and [B, t, h, w, D] grids (these are token grids,
// not images, so the library's NCHW image convention does not apply).
//
// Flax creates parameters lazily from the first input's shape; LibTorch needs them at
// construction, so the modules take the embedding length/grid up front and resize
// (bilinear, half-pixel centres as jax.image.resize) when the input differs from it.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace scenic::model {

// Fills a freshly created parameter (Flax's `posemb_init` / `initializer`).
using PosembInit = std::function<void(torch::Tensor&)>;
// N(0, stddev), Flax's nn.initializers.normal(stddev).
PosembInit normal_posemb_init(double stddev = 0.02);

// The classic Transformer table [1, max_len, d_feature] (d_feature even):
// pe[p, 2i] = sin(p * w_i), pe[p, 2i + 1] = cos(p * w_i), w_i = max_timescale^(-2i / d).
torch::Tensor sinusoidal_init(int64_t max_len, int64_t d_feature, double max_timescale = 1.0e4);

// Bilinear resize of a channel-last grid [h, w, C] -> [new_h, new_w, C].
// align_corners = false: half-pixel centres (jax.image.resize 'bilinear' without
// antialias, torch's align_corners=False); true: end points kept (scipy.ndimage.zoom with
// order=1, what Scenic's checkpoint loaders use).
torch::Tensor resize_grid_bilinear(const torch::Tensor& grid, int64_t new_h, int64_t new_w,
                                   bool align_corners);

struct Add1DPositionEmbeddingOptions {
  // The length positions are made for; 0: the input's length (fixed table only).
  int64_t max_len = 0;
  // Length of the stored table when it was trained at another length; the table is then
  // linearly resized to max_len (Scenic slices it to the input length first; so do we).
  std::optional<int64_t> rescale_from;
  PosembInit posemb_init;  // null: fixed sinusoidal table, no parameter
  std::string param_name = "pos_embedding";
};

// inputs [B, L, D] -> inputs + pe[:, :L] (resized when rescaling).
class Add1DPositionEmbeddingImpl : public torch::nn::Module {
 public:
  Add1DPositionEmbeddingImpl(int64_t features, Add1DPositionEmbeddingOptions options);
  torch::Tensor forward(const torch::Tensor& inputs);

  torch::Tensor pos_embedding;  // [1, E, D], learned tables only

 private:
  int64_t features_;
  Add1DPositionEmbeddingOptions options_;
};
TORCH_MODULE(Add1DPositionEmbedding);

struct Add2DPositionEmbeddingOptions {
  // Grid (h, w) of the stored parameters when they were trained at another grid.
  std::optional<std::array<int64_t, 2>> rescale_from;
  PosembInit posemb_init;  // null: N(0, 0.02) (BERT's)
};

// Learned `row_pos_embedding` [w, c/2] and `col_pos_embedding` [h, c/2]; position (i, j)
// gets concat(row[j], col[i]). inputs [B, h, w, c] (c even) -> inputs + pos; pos is
// resized bilinearly when the input grid differs from the stored one.
class Add2DPositionEmbeddingImpl : public torch::nn::Module {
 public:
  Add2DPositionEmbeddingImpl(std::array<int64_t, 2> grid, int64_t channels,
                             Add2DPositionEmbeddingOptions options = {});
  torch::Tensor forward(const torch::Tensor& inputs);
  // The [h, w, c] table before any resize.
  torch::Tensor table() const;

  torch::Tensor row_pos_embedding, col_pos_embedding;
};
TORCH_MODULE(Add2DPositionEmbedding);

// Fixed sin-cos embedding for x_shape [B, h, w, C] (C % 4 == 0; parts sin x, cos x, sin y,
// cos y) or [B, t, h, w, C] (C % 6 == 0; parts sin z, cos z, sin x, cos x, sin y, cos y),
// each part C/k wide with frequencies temperature^(-i / (C/k)). Returns [1, ...] float32.
torch::Tensor get_fixed_sincos_position_embedding(const std::vector<int64_t>& x_shape,
                                                  double temperature = 10000.0);

// inputs [B, h, w, C] or [B, t, h, w, C] -> inputs + the fixed sin-cos embedding.
class AddFixedSinCosPositionEmbeddingImpl : public torch::nn::Module {
 public:
  explicit AddFixedSinCosPositionEmbeddingImpl(double temperature = 10000.0)
      : temperature_(temperature) {}
  torch::Tensor forward(const torch::Tensor& inputs);

 private:
  double temperature_;
};
TORCH_MODULE(AddFixedSinCosPositionEmbedding);

// Learnable relative attention bias that factorizes over the axes of `nd_shape`
// (e.g. (h, w) for images): one parameter `bias_i` [heads, 2 * l_i] per axis with
// l_i > 1, and bias[h, q, k] = sum_i bias_i[h, k_i - q_i + l_i - 1] where q_i, k_i are
// the row-major coordinates of the flat positions q, k. forward() -> [heads, N, N],
// N = prod(nd_shape); add it to the attention logits (attention_bias).
class RelativeAttentionBiasImpl : public torch::nn::Module {
 public:
  RelativeAttentionBiasImpl(int64_t num_heads, std::vector<int64_t> nd_shape,
                            PosembInit initializer = nullptr);  // null: zeros
  torch::Tensor forward();

 private:
  int64_t num_heads_;
  std::vector<int64_t> nd_shape_;
  std::vector<std::pair<int64_t, torch::Tensor>> biases_;  // (axis, bias_axis)
};
TORCH_MODULE(RelativeAttentionBias);

// Resizes a learned ViT position embedding posemb [1, N, D] (N = [1 +] g_h * g_w) to the
// grid `new_grid` (h, w), keeping the class token (the first row) when has_class_token,
// as Scenic's ViT checkpoint loader does: the grid part is reshaped to [g_h, g_w, D] and
// zoomed with scipy.ndimage.zoom(order=1) semantics (bilinear, corners aligned). The old
// grid is square unless `old_grid` says otherwise. Returns [1, [1 +] h * w, D]; the input
// unchanged when the grids are equal.
torch::Tensor resize_posemb(const torch::Tensor& posemb, std::array<int64_t, 2> new_grid,
                            bool has_class_token,
                            std::optional<std::array<int64_t, 2>> old_grid = std::nullopt);

}  // namespace scenic::model
