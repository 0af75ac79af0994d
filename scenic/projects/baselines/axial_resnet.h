// Axial-ResNet: BiT-ResNet whose 3x3 convolutions are replaced by axial self-attention
// (Scenic's projects/baselines/axial_resnet.py, after arXiv 2003.07853 / axial-deeplab).
//
// Root as BiT (`conv_root` StdConv 7x7/2 SAME -> `gn_root` -> relu -> max-pool 3x3/2
// SAME); stages `block1`..`blockN` of `unit1`..`unitM` (AxialResidualUnit: [`conv_proj`
// 1x1/s + `gn_proj`] when C_in != output width or stride != 1; bottleneck: `conv1` 1x1 +
// `gn1` + relu; then attention along H (`AxialSelfAttention_0`) and along W
// (`AxialSelfAttention_1`); stride 2: avg-pool 2x2/2 SAME (padding counted as zeros, as
// Flax); relu; `conv3` (1x1, 3x3 for basic units) + `gn3` (scale starts at 0);
// relu(shortcut + y)); width 64 * width_factor, doubled per stage; GAP -> `pre_logits`
// (identity) -> `output_projection` (zero kernel, zero bias). Without bottleneck the
// attention runs on the unit's input channels (Scenic has no conv1 then).
//
// SelfAttentionWith1DRelativePos (on [N, L, C], heads h, d = C / h): `Dense_0` C -> 2C
// without bias, kernel ~ N(0, stddev 1/C); `gn_qkv` GroupNorm; per head the 2d channels
// split into q (d/2), k (d/2), v (d); `relative_pos_emb` [2d, 2L-1] ~ N(0, stddev 1/d),
// shared by the heads, gathered as r[:, i, j] = emb[:, j - i + L - 1] and split likewise
// into r_q, r_k, r_v; logits[i, j] = q_i.k_j + q_i.r_k[i, j] + k_i.r_q[i, j] (no
// 1/sqrt(d) scaling; the third term pairs the key at position i with r_q, exactly as
// Scenic's einsum does); softmax over j; out_i = sum_j w_ij (v_j + r_v[i, j]); `gn_out`
// GroupNorm. Every GroupNorm has 32 groups and eps 1e-4 (Flax's GroupNorm as Scenic
// calls it), so C must be a multiple of 32 as well as of 2 * num_heads.
//
// The spatial length L. Flax creates `relative_pos_emb` lazily from the first input, so
// Scenic's L is the input resolution at init. Our modules own their parameters from
// construction (the optimizer is built before any batch), so each attention layer is
// given its L up front: the model derives the per-unit resolutions from the dataset meta
// data `input_shape` [-1, C, H, W] (stem: ceil(H/2) then ceil(./2); a strided unit attends
// at its input resolution and halves it after: ceil(./2)), the attention along H uses
// L = H' and the one along W uses L = W'. Like Scenic's trained parameters, the model
// then only takes inputs of that size: any other size raises scenic::Error naming both.
//
// Config keys (Scenic's, at the top level; the registration also accepts them under
// `model:`): `num_layers` (as ResNet), `width_factor` (default 1),
// `axial_attention_configs.num_heads`. Scenic's testing default: width_factor 1,
// num_layers 5, num_heads 2. Inputs are NCHW. No BatchNorm, so no state.
#pragma once

#include <torch/nn/modules/linear.h>

#include <map>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/masked_layers.h"
#include "scenic/projects/baselines/bit_resnet.h"

namespace scenic::baselines {

// The relative-position terms, exposed for tests. q, k [N, h, d/2, L]; rel [2d, L, L]
// (the gathered table: rel[:, i, j] = emb[:, j - i + L - 1]).
// Returns the logits [N, h, L, L]: q_i.k_j + q_i.rel_k[:, i, j] + k_i.rel_q[:, i, j].
torch::Tensor relative_attention_logits(const torch::Tensor& q, const torch::Tensor& k,
                                        const torch::Tensor& rel);
// weights [N, h, L, L], v [N, h, d, L] -> [N, h, d, L]: sum_j w_ij (v_j + rel_v[:, i, j]).
torch::Tensor relative_attention_values(const torch::Tensor& weights, const torch::Tensor& v,
                                        const torch::Tensor& rel);

class SelfAttentionWith1DRelativePosImpl : public torch::nn::Module {
 public:
  // Throws scenic::Error when `features` is not a multiple of 2 * num_heads (Scenic's
  // check) or of the 32 GroupNorm groups, or when length < 1.
  SelfAttentionWith1DRelativePosImpl(int64_t features, int64_t num_heads, int64_t length);
  torch::Tensor forward(const torch::Tensor& x);  // [N, L, C] -> [N, L, C] (Scenic's layout)
  // The same on channels-first input, as the axial layers call it: [N, C, L] -> [N, C, L].
  torch::Tensor forward_channels_first(const torch::Tensor& x);
  // The gathered table rel [2d, L, L] of relative_attention_logits.
  torch::Tensor gathered_relative_emb() const;

  int64_t length() const { return length_; }

  torch::nn::Linear Dense_0{nullptr};  // weight [2C, C] (torch's [out, in]), no bias
  model::masked::GroupNorm gn_qkv{nullptr}, gn_out{nullptr};
  torch::Tensor relative_pos_emb;      // [2d, 2L - 1]

 private:
  int64_t features_, num_heads_, length_;
  torch::Tensor rel_index_;  // int64 [L * L]: j - i + L - 1 (not a parameter or buffer)
};
TORCH_MODULE(SelfAttentionWith1DRelativePos);

// Attention along one spatial axis of x [B, C, H, W]: axis 1 attends along H (over the
// rows of each column; Scenic's "row attention", attention_axis 1 of NHWC), axis 2
// along W. Any other axis throws scenic::Error. `length` is H for axis 1, W for axis 2.
class AxialSelfAttentionImpl : public torch::nn::Module {
 public:
  AxialSelfAttentionImpl(int64_t attention_axis, int64_t channels, int64_t num_heads, int64_t length);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, C, H, W]

  SelfAttentionWith1DRelativePos SelfAttentionWith1DRelativePos_0{nullptr};

 private:
  int64_t axis_;
};
TORCH_MODULE(AxialSelfAttention);

class AxialResidualUnitImpl : public torch::nn::Module {
 public:
  // `nout` is the bottleneck width (output 4 * nout) or, for basic units, the output
  // width; stride 1 or 2; (height, width) the spatial size of the unit's input.
  AxialResidualUnitImpl(int64_t in_channels, int64_t nout, int64_t stride, bool bottleneck,
                        int64_t num_heads, int64_t height, int64_t width);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C_in, H, W] -> [B, C_out, ceil(H/s), ceil(W/s)]
  int64_t out_channels() const { return out_channels_; }

  StdConv conv_proj{nullptr}, conv1{nullptr}, conv3{nullptr};
  model::masked::GroupNorm gn_proj{nullptr}, gn1{nullptr}, gn3{nullptr};
  AxialSelfAttention AxialSelfAttention_0{nullptr}, AxialSelfAttention_1{nullptr};

 private:
  int64_t out_channels_, stride_;
};
TORCH_MODULE(AxialResidualUnit);

// `unit1` (first_stride) then `unit2`.. (stride 1). (height, width): the stage's input size.
class AxialResNetStageImpl : public torch::nn::Module {
 public:
  AxialResNetStageImpl(int64_t in_channels, int64_t block_size, int64_t nout, int64_t first_stride,
                       bool bottleneck, int64_t num_heads, int64_t height, int64_t width);
  torch::Tensor forward(torch::Tensor x);
  int64_t out_channels() const { return units.back()->out_channels(); }

  std::vector<AxialResidualUnit> units;
};
TORCH_MODULE(AxialResNetStage);

struct AxialResNetOptions {
  int64_t num_layers = 50;
  double width_factor = 1.0;
  int64_t num_heads = 8;       // axial_attention_configs.num_heads
  int64_t in_channels = 3;
  int64_t height = 224, width = 224;  // the input size the attention lengths follow
  int64_t num_classes = 1000;  // <= 0: no head (forward returns the pooled features)
};

class AxialResNet : public model::Network {
 public:
  explicit AxialResNet(const AxialResNetOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c,
                                                     const dataset::MetaData& meta);
  torch::Tensor forward(const torch::Tensor& inputs) override;         // [B, C, H, W] -> [B, K]
  torch::Tensor representation(const torch::Tensor& inputs) override;  // pre_logits [B, D]
  // `stem` and `stage_1`..`stage_n`.
  std::map<std::string, torch::Tensor> forward_features(const torch::Tensor& inputs);

  StdConv conv_root{nullptr};
  model::masked::GroupNorm gn_root{nullptr};
  std::vector<AxialResNetStage> stages;  // `block1`..
  torch::nn::Linear output_projection{nullptr};

 private:
  AxialResNetOptions options_;
};

// Scenic's default_flax_model_config: width_factor 1, num_layers 5, num_heads 2.
extern const char* const kAxialResNetDefaultConfig;

}  // namespace scenic::baselines
