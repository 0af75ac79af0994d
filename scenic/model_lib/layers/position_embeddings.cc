#include "scenic/model_lib/layers/position_embeddings.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::model {

namespace {
std::string shape_str(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}
}  // namespace

PosembInit normal_posemb_init(double stddev) {
  return [stddev](torch::Tensor& t) {
    torch::NoGradGuard no_grad;
    t.normal_(0.0, stddev);
  };
}

torch::Tensor sinusoidal_init(int64_t max_len, int64_t d_feature, double max_timescale) {
  if (max_len <= 0 || d_feature <= 0 || d_feature % 2 != 0)
    throw Error("sinusoidal_init: needs max_len > 0 and an even feature width, got max_len " +
                std::to_string(max_len) + ", d_feature " + std::to_string(d_feature));
  // Computed in double and stored as float32, as Scenic's numpy version does.
  auto position = torch::arange(max_len, torch::kDouble).unsqueeze(1);  // [L, 1]
  auto div_term = torch::exp(torch::arange(0, d_feature, 2, torch::kDouble) *
                             -(std::log(max_timescale) / static_cast<double>(d_feature)));  // [d/2]
  auto arg = position * div_term;                                                   // [L, d/2]
  // Interleave: column 2i is sin, 2i + 1 is cos.
  auto pe = torch::stack({torch::sin(arg), torch::cos(arg)}, -1).reshape({max_len, d_feature});
  return pe.unsqueeze(0).to(torch::kFloat);  // [1, L, d]
}

torch::Tensor resize_grid_bilinear(const torch::Tensor& grid, int64_t new_h, int64_t new_w,
                                   bool align_corners) {
  if (grid.dim() != 3 || new_h <= 0 || new_w <= 0)
    throw Error("resize_grid_bilinear: needs a grid [h, w, C] and a positive size, got " +
                shape_str(grid) + " -> (" + std::to_string(new_h) + ", " + std::to_string(new_w) + ")");
  if (grid.size(0) == new_h && grid.size(1) == new_w) return grid;
  namespace F = torch::nn::functional;
  auto x = grid.permute({2, 0, 1}).unsqueeze(0);  // [1, C, h, w]
  auto y = F::interpolate(x, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{new_h, new_w})
                                 .mode(torch::kBilinear)
                                 .align_corners(align_corners));
  return y.squeeze(0).permute({1, 2, 0});  // [new_h, new_w, C]
}

Add1DPositionEmbeddingImpl::Add1DPositionEmbeddingImpl(int64_t features,
                                                       Add1DPositionEmbeddingOptions options)
    : features_(features), options_(std::move(options)) {
  if (options_.posemb_init) {
    const int64_t length = options_.rescale_from.value_or(options_.max_len);
    if (length <= 0)
      throw Error("Add1DPositionEmbedding: a learned table needs max_len (or rescale_from) > 0");
    pos_embedding = register_parameter(options_.param_name, torch::empty({1, length, features}));
    torch::NoGradGuard no_grad;
    options_.posemb_init(pos_embedding);
  } else if (features % 2 != 0) {
    throw Error("Add1DPositionEmbedding: the sinusoidal table needs an even width, got " +
                std::to_string(features));
  }
}

torch::Tensor Add1DPositionEmbeddingImpl::forward(const torch::Tensor& inputs) {
  if (inputs.dim() != 3 || inputs.size(2) != features_)
    throw Error("Add1DPositionEmbedding: expected inputs [B, L, " + std::to_string(features_) +
                "], got " + shape_str(inputs));
  const int64_t length = inputs.size(1);
  const int64_t max_len = options_.max_len > 0 ? options_.max_len : length;
  const int64_t embedding_length = options_.rescale_from.value_or(max_len);
  auto table = pos_embedding.defined()
                   ? pos_embedding
                   : sinusoidal_init(embedding_length, features_).to(inputs.options());  // [1, E, D]
  auto pe = table.slice(1, 0, length);
  // A [1, L', D] table is a 1 x L' grid; resizing to 1 x max_len is linear along L.
  if (max_len != embedding_length) pe = resize_grid_bilinear(pe, 1, max_len, /*align_corners=*/false);
  if (pe.size(1) != length)
    throw Error("Add1DPositionEmbedding: position table of length " + std::to_string(pe.size(1)) +
                " (max_len " + std::to_string(max_len) + ", stored length " +
                std::to_string(embedding_length) + ") does not fit inputs " + shape_str(inputs));
  return inputs + pe;
}

Add2DPositionEmbeddingImpl::Add2DPositionEmbeddingImpl(std::array<int64_t, 2> grid, int64_t channels,
                                                       Add2DPositionEmbeddingOptions options) {
  if (channels <= 0 || channels % 2 != 0)
    throw Error("Add2DPositionEmbedding: needs an even channel count, got " + std::to_string(channels));
  const auto [h, w] = options.rescale_from.value_or(grid);
  if (h <= 0 || w <= 0)
    throw Error("Add2DPositionEmbedding: grid must be positive, got (" + std::to_string(h) + ", " +
                std::to_string(w) + ")");
  row_pos_embedding = register_parameter("row_pos_embedding", torch::empty({w, channels / 2}));
  col_pos_embedding = register_parameter("col_pos_embedding", torch::empty({h, channels / 2}));
  const PosembInit init = options.posemb_init ? options.posemb_init : normal_posemb_init(0.02);
  torch::NoGradGuard no_grad;
  init(row_pos_embedding);
  init(col_pos_embedding);
}

torch::Tensor Add2DPositionEmbeddingImpl::table() const {
  const int64_t h = col_pos_embedding.size(0), w = row_pos_embedding.size(0);
  const int64_t half = row_pos_embedding.size(1);
  auto x_pos = row_pos_embedding.unsqueeze(0).expand({h, w, half});  // [h, w, c/2]: row[j]
  auto y_pos = col_pos_embedding.unsqueeze(1).expand({h, w, half});  // [h, w, c/2]: col[i]
  return torch::cat({x_pos, y_pos}, -1);                             // [h, w, c]
}

torch::Tensor Add2DPositionEmbeddingImpl::forward(const torch::Tensor& inputs) {
  const int64_t channels = 2 * row_pos_embedding.size(1);
  if (inputs.dim() != 4 || inputs.size(3) != channels)
    throw Error("Add2DPositionEmbedding: expected inputs [B, h, w, " + std::to_string(channels) +
                "], got " + shape_str(inputs));
  auto pos = resize_grid_bilinear(table(), inputs.size(1), inputs.size(2), /*align_corners=*/false);
  return inputs + pos.unsqueeze(0);
}

torch::Tensor get_fixed_sincos_position_embedding(const std::vector<int64_t>& x_shape,
                                                  double temperature) {
  if (x_shape.size() != 4 && x_shape.size() != 5)
    throw Error("get_fixed_sincos_position_embedding: unsupported input rank " +
                std::to_string(x_shape.size()) + " (expected [B, h, w, C] or [B, t, h, w, C])");
  const int64_t num_parts = x_shape.size() == 4 ? 4 : 6;
  const int64_t channels = x_shape.back();
  if (channels <= 0 || channels % num_parts != 0)
    throw Error("get_fixed_sincos_position_embedding: channels (" + std::to_string(channels) +
                ") must be a multiple of " + std::to_string(num_parts));
  const int64_t n = channels / num_parts;
  auto omega = torch::arange(n, torch::kDouble) / static_cast<double>(n);
  omega = 1.0 / torch::pow(temperature, omega);  // [n]
  // Row-major coordinates of every position of the grid.
  const int64_t w = x_shape[x_shape.size() - 2], h = x_shape[x_shape.size() - 3];
  const int64_t t = x_shape.size() == 5 ? x_shape[1] : 1;
  auto idx = torch::arange(t * h * w, torch::kLong);
  auto coord = [&](const torch::Tensor& c) { return torch::outer(c.to(torch::kDouble), omega); };
  auto x = coord(idx % w), y = coord(idx.div(w, "floor") % h);  // [M, n]
  std::vector<torch::Tensor> parts;
  if (x_shape.size() == 5) {
    auto z = coord(idx.div(h * w, "floor"));
    parts = {torch::sin(z), torch::cos(z), torch::sin(x), torch::cos(x), torch::sin(y), torch::cos(y)};
  } else {
    parts = {torch::sin(x), torch::cos(x), torch::sin(y), torch::cos(y)};
  }
  std::vector<int64_t> shape{1};
  shape.insert(shape.end(), x_shape.begin() + 1, x_shape.end());
  return torch::cat(parts, 1).to(torch::kFloat).reshape(shape);
}

torch::Tensor AddFixedSinCosPositionEmbeddingImpl::forward(const torch::Tensor& inputs) {
  return inputs + get_fixed_sincos_position_embedding(inputs.sizes().vec(), temperature_)
                      .to(inputs.options());
}

RelativeAttentionBiasImpl::RelativeAttentionBiasImpl(int64_t num_heads, std::vector<int64_t> nd_shape,
                                                     PosembInit initializer)
    : num_heads_(num_heads), nd_shape_(std::move(nd_shape)) {
  if (num_heads <= 0 || nd_shape_.empty())
    throw Error("RelativeAttentionBias: needs num_heads > 0 and a non-empty nd_shape");
  for (size_t i = 0; i < nd_shape_.size(); ++i) {
    const int64_t l = nd_shape_[i];
    if (l <= 0) throw Error("RelativeAttentionBias: nd_shape[" + std::to_string(i) + "] must be positive");
    if (l == 1) continue;  // a single position has no relative offsets
    // 2l entries: offsets -(l-1)..l-1 plus one never-read pad, Scenic's parameter shape.
    auto p = register_parameter("bias_" + std::to_string(i), torch::zeros({num_heads, 2 * l}));
    if (initializer) {
      torch::NoGradGuard no_grad;
      initializer(p);
    }
    biases_.emplace_back(static_cast<int64_t>(i), p);
  }
}

torch::Tensor RelativeAttentionBiasImpl::forward() {
  int64_t length = 1;
  for (int64_t l : nd_shape_) length *= l;
  auto opts = biases_.empty() ? torch::TensorOptions() : biases_.front().second.options();
  auto bias = torch::zeros({num_heads_, length, length}, opts);  // [H, N, N]
  auto idx = torch::arange(length, opts.dtype(torch::kLong));
  for (const auto& [axis, p] : biases_) {
    const int64_t l = nd_shape_[axis];
    int64_t stride = 1;
    for (size_t j = axis + 1; j < nd_shape_.size(); ++j) stride *= nd_shape_[j];
    auto c = idx.div(stride, "floor") % l;                 // [N]: coordinate along `axis`
    auto rel = c.unsqueeze(0) - c.unsqueeze(1) + (l - 1);  // [q, k] = k_i - q_i + l - 1
    bias = bias + p.index({torch::indexing::Slice(), rel});
  }
  return bias;
}

torch::Tensor resize_posemb(const torch::Tensor& posemb, std::array<int64_t, 2> new_grid,
                            bool has_class_token, std::optional<std::array<int64_t, 2>> old_grid) {
  if (posemb.dim() != 3 || posemb.size(0) != 1)
    throw Error("resize_posemb: expected posemb [1, N, D], got " + shape_str(posemb));
  const int64_t num_extra = has_class_token ? 1 : 0;
  const int64_t grid_tokens = posemb.size(1) - num_extra;
  std::array<int64_t, 2> old{};
  if (old_grid) {
    old = *old_grid;
  } else {
    const auto gs = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(grid_tokens))));
    old = {gs, gs};
  }
  if (grid_tokens <= 0 || old[0] * old[1] != grid_tokens)
    throw Error("resize_posemb: posemb " + shape_str(posemb) + (has_class_token ? " minus its class token" : "") +
                " is not a " + std::to_string(old[0]) + "x" + std::to_string(old[1]) +
                " grid (pass old_grid for non-square grids)");
  if (new_grid[0] <= 0 || new_grid[1] <= 0)
    throw Error("resize_posemb: new grid must be positive");
  if (old == new_grid) return posemb;
  auto cls = posemb.slice(1, 0, num_extra);                                   // [1, 0|1, D]
  auto grid = posemb[0].slice(0, num_extra).reshape({old[0], old[1], -1});   // [gh, gw, D]
  auto resized = resize_grid_bilinear(grid, new_grid[0], new_grid[1], /*align_corners=*/true)
                     .reshape({1, new_grid[0] * new_grid[1], -1});
  return torch::cat({cls, resized}, 1);
}

}  // namespace scenic::model
