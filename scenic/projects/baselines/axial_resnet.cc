#include "scenic/projects/baselines/axial_resnet.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/nn_ops.h"
#include "scenic/projects/baselines/resnet.h"

namespace scenic::baselines {

const char* const kAxialResNetDefaultConfig =
    "width_factor: 1\nnum_layers: 5\naxial_attention_configs:\n  num_heads: 2\n";

namespace {

constexpr int64_t kGroups = 32;  // Flax GroupNorm's default, as Scenic leaves it

model::masked::GroupNorm group_norm(int64_t channels, bool zero_scale = false) {
  model::masked::GroupNormOptions o;
  o.num_groups = kGroups;
  o.epsilon = 1e-4;
  model::masked::GroupNorm gn(channels, o);
  if (zero_scale) {
    torch::NoGradGuard no_grad;
    gn->scale.zero_();
  }
  return gn;
}

int64_t ceil_half(int64_t n) { return (n + 1) / 2; }

std::string shape_str(torch::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

torch::Tensor relative_attention_logits(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& rel) {
  const int64_t half = q.size(2);                // d/2
  auto rel_q = rel.narrow(0, 0, half);           // [d/2, L, L]
  auto rel_k = rel.narrow(0, half, half);        // [d/2, L, L]
  auto qk = torch::matmul(q.transpose(-1, -2), k);         // [N, h, L, L]: q_i . k_j
  auto qr = torch::einsum("bhdi,dij->bhij", {q, rel_k});   // q_i . r_k[:, i, j]
  auto kr = torch::einsum("bhdi,dij->bhij", {k, rel_q});   // k_i . r_q[:, i, j]
  return qk + qr + kr;
}

torch::Tensor relative_attention_values(const torch::Tensor& weights, const torch::Tensor& v, const torch::Tensor& rel) {
  auto rel_v = rel.narrow(0, rel.size(0) - v.size(2), v.size(2));  // [d, L, L]
  auto wv = torch::matmul(v, weights.transpose(-1, -2));             // [N, h, d, L]
  auto wve = torch::einsum("bhij,dij->bhdi", {weights, rel_v});      // [N, h, d, L]
  return wv + wve;
}

SelfAttentionWith1DRelativePosImpl::SelfAttentionWith1DRelativePosImpl(int64_t features, int64_t num_heads,
                                                                       int64_t length)
    : features_(features), num_heads_(num_heads), length_(length) {
  if (num_heads <= 0 || features <= 0 || features % (2 * num_heads) != 0)
    throw Error("SelfAttentionWith1DRelativePos: input feature dimension " + std::to_string(features) +
                " must be divisible by 2 * num_heads = " + std::to_string(2 * num_heads));
  if (features % kGroups != 0)
    throw Error("SelfAttentionWith1DRelativePos: input feature dimension " + std::to_string(features) +
                " must be a multiple of the " + std::to_string(kGroups) + " GroupNorm groups");
  if (length < 1)
    throw Error("SelfAttentionWith1DRelativePos: length must be >= 1, got " + std::to_string(length));
  const int64_t d = features / num_heads;
  Dense_0 = register_module("Dense_0", torch::nn::Linear(torch::nn::LinearOptions(features, 2 * features).bias(false)));
  {
    torch::NoGradGuard no_grad;
    Dense_0->weight.normal_(0.0, 1.0 / static_cast<double>(features));  // stddev 1/C, as Scenic
  }
  gn_qkv = register_module("gn_qkv", group_norm(2 * features));
  relative_pos_emb = register_parameter("relative_pos_emb",
                                        torch::randn({2 * d, 2 * length - 1}) / static_cast<double>(d));
  gn_out = register_module("gn_out", group_norm(features));
  rel_index_ = model::compute_1d_relative_distance(length, length).reshape({-1});  // [L*L]
}

torch::Tensor SelfAttentionWith1DRelativePosImpl::gathered_relative_emb() const {
  const auto index = rel_index_.to(relative_pos_emb.device());
  return relative_pos_emb.index_select(1, index).view({relative_pos_emb.size(0), length_, length_});
}

torch::Tensor SelfAttentionWith1DRelativePosImpl::forward_channels_first(const torch::Tensor& x) {
  if (x.dim() != 3 || x.size(1) != features_ || x.size(2) != length_)
    throw Error("SelfAttentionWith1DRelativePos: expected input [N, C=" + std::to_string(features_) +
                ", L=" + std::to_string(length_) + "] (channels first), got " + shape_str(x.sizes()) +
                "; the relative-position table was built for length " + std::to_string(length_));
  const int64_t n = x.size(0), d = features_ / num_heads_;
  auto qkv = torch::matmul(Dense_0->weight, x);                 // [N, 2C, L]
  qkv = gn_qkv(qkv).first.reshape({n, num_heads_, 2 * d, length_});  // [N, h, 2d, L]
  auto q = qkv.narrow(2, 0, d / 2);                            // [N, h, d/2, L]
  auto k = qkv.narrow(2, d / 2, d / 2);                        // [N, h, d/2, L]
  auto v = qkv.narrow(2, d, d);                                // [N, h, d, L]
  auto rel = gathered_relative_emb();                          // [2d, L, L]
  auto weights = torch::softmax(relative_attention_logits(q, k, rel), -1);  // [N, h, L, L]
  auto out = relative_attention_values(weights, v, rel);       // [N, h, d, L]
  return gn_out(out.reshape({n, features_, length_})).first;   // [N, C, L]
}

torch::Tensor SelfAttentionWith1DRelativePosImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 3)
    throw Error("SelfAttentionWith1DRelativePos: expected input [N, L, C], got " + shape_str(x.sizes()));
  return forward_channels_first(x.transpose(1, 2)).transpose(1, 2);  // [N, L, C]
}

AxialSelfAttentionImpl::AxialSelfAttentionImpl(int64_t attention_axis, int64_t channels, int64_t num_heads,
                                               int64_t length)
    : axis_(attention_axis) {
  if (attention_axis != 1 && attention_axis != 2)
    throw Error("AxialSelfAttention: only attention over rows (axis 1, along H) or columns (axis 2, along W) "
                "is supported, got attention_axis " + std::to_string(attention_axis));
  SelfAttentionWith1DRelativePos_0 = register_module(
      "SelfAttentionWith1DRelativePos_0", SelfAttentionWith1DRelativePos(channels, num_heads, length));
}

torch::Tensor AxialSelfAttentionImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 4) throw Error("AxialSelfAttention: expected [B, C, H, W], got " + shape_str(x.sizes()));
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (axis_ == 1) {  // every column attends along H
    auto seq = x.permute({0, 3, 1, 2}).reshape({b * w, c, h});            // [B*W, C, H]
    auto y = SelfAttentionWith1DRelativePos_0->forward_channels_first(seq);
    return y.view({b, w, c, h}).permute({0, 2, 3, 1});                     // [B, C, H, W]
  }
  auto seq = x.permute({0, 2, 1, 3}).reshape({b * h, c, w});               // [B*H, C, W]
  auto y = SelfAttentionWith1DRelativePos_0->forward_channels_first(seq);
  return y.view({b, h, c, w}).permute({0, 2, 1, 3});                       // [B, C, H, W]
}

AxialResidualUnitImpl::AxialResidualUnitImpl(int64_t in_channels, int64_t nout, int64_t stride, bool bottleneck,
                                             int64_t num_heads, int64_t height, int64_t width)
    : out_channels_(bottleneck ? 4 * nout : nout), stride_(stride) {
  if (stride != 1 && stride != 2)
    throw Error("AxialResidualUnit: stride must be 1 or 2, got " + std::to_string(stride));
  if (in_channels != out_channels_ || stride != 1) {
    conv_proj = register_module("conv_proj", StdConv(in_channels, out_channels_, 1, stride));
    gn_proj = register_module("gn_proj", group_norm(out_channels_));
  }
  int64_t c = in_channels;
  if (bottleneck) {
    conv1 = register_module("conv1", StdConv(c, nout, 1));
    gn1 = register_module("gn1", group_norm(nout));
    c = nout;
  }
  AxialSelfAttention_0 = register_module("AxialSelfAttention_0", AxialSelfAttention(1, c, num_heads, height));
  AxialSelfAttention_1 = register_module("AxialSelfAttention_1", AxialSelfAttention(2, c, num_heads, width));
  conv3 = register_module("conv3", StdConv(c, out_channels_, bottleneck ? 1 : 3));
  gn3 = register_module("gn3", group_norm(out_channels_, /*zero_scale=*/true));
}

torch::Tensor AxialResidualUnitImpl::forward(const torch::Tensor& x) {
  auto residual = conv_proj.is_empty() ? x : gn_proj(conv_proj(x)).first;  // [B, C_out, H/s, W/s]
  auto h = x;
  if (!conv1.is_empty()) h = torch::relu(gn1(conv1(h)).first);             // [B, nout, H, W]
  h = AxialSelfAttention_1(AxialSelfAttention_0(h));                       // along H, then along W
  if (stride_ == 2) h = model::avg_pool(h, {2, 2}, {2, 2}, "SAME");         // [B, c, ceil(H/2), ceil(W/2)]
  h = torch::relu(h);
  h = gn3(conv3(h)).first;
  return torch::relu(residual + h);
}

AxialResNetStageImpl::AxialResNetStageImpl(int64_t in_channels, int64_t block_size, int64_t nout,
                                           int64_t first_stride, bool bottleneck, int64_t num_heads,
                                           int64_t height, int64_t width) {
  int64_t c = in_channels;
  for (int64_t i = 0; i < block_size; ++i) {
    const int64_t stride = i == 0 ? first_stride : 1;
    AxialResidualUnit unit(c, nout, stride, bottleneck, num_heads, height, width);
    c = unit->out_channels();
    if (stride == 2) height = ceil_half(height), width = ceil_half(width);
    units.push_back(register_module("unit" + std::to_string(i + 1), unit));
  }
}

torch::Tensor AxialResNetStageImpl::forward(torch::Tensor x) {
  for (auto& unit : units) x = unit(x);
  return x;
}

AxialResNet::AxialResNet(const AxialResNetOptions& o) : options_(o) {
  const auto [blocks, bottleneck] = resnet_block_sizes(o.num_layers);
  const auto width = static_cast<int64_t>(64 * o.width_factor);  // Scenic: int(64 * width_factor)
  if (width <= 0 || width % kGroups != 0)
    throw Error("AxialResNet: width 64 * width_factor = " + std::to_string(width) +
                " must be a positive multiple of the " + std::to_string(kGroups) + " GroupNorm groups");
  if (o.height < 1 || o.width < 1)
    throw Error("AxialResNet: the input size must be known to size the relative-position tables, got " +
                std::to_string(o.height) + " x " + std::to_string(o.width));
  conv_root = register_module("conv_root", StdConv(o.in_channels, width, 7, 2));
  gn_root = register_module("gn_root", group_norm(width));
  int64_t c = width;
  int64_t h = ceil_half(ceil_half(o.height)), w = ceil_half(ceil_half(o.width));  // after conv_root, max-pool
  for (size_t i = 0; i < blocks.size(); ++i) {
    const int64_t stride = i == 0 ? 1 : 2;
    AxialResNetStage stage(c, blocks[i], width << i, stride, bottleneck, o.num_heads, h, w);
    c = stage->out_channels();
    if (stride == 2) h = ceil_half(h), w = ceil_half(w);
    stages.push_back(register_module("block" + std::to_string(i + 1), stage));
  }
  if (o.num_classes > 0) {
    output_projection = register_module("output_projection", torch::nn::Linear(c, o.num_classes));
    torch::nn::init::zeros_(output_projection->weight);
    torch::nn::init::zeros_(output_projection->bias);
  }
}

std::shared_ptr<model::Network> AxialResNet::from_config(const common::ConfigDict& c,
                                                         const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("AxialResNet needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(meta.input_shape.size()) + " dims");
  AxialResNetOptions o;
  o.num_layers = c.get<int64_t>("num_layers");
  o.width_factor = c.get<double>("width_factor", 1.0);
  o.num_heads = c.get<int64_t>("axial_attention_configs.num_heads");
  o.in_channels = meta.input_shape[1];
  o.height = meta.input_shape[2];
  o.width = meta.input_shape[3];
  o.num_classes = meta.num_classes;
  return std::make_shared<AxialResNet>(o);
}

std::map<std::string, torch::Tensor> AxialResNet::forward_features(const torch::Tensor& inputs) {
  if (inputs.dim() != 4 || inputs.size(1) != options_.in_channels || inputs.size(2) != options_.height ||
      inputs.size(3) != options_.width)
    throw Error("AxialResNet: expected NCHW inputs [B, " + std::to_string(options_.in_channels) + ", " +
                std::to_string(options_.height) + ", " + std::to_string(options_.width) +
                "] (its relative-position tables are sized for that input), got " + shape_str(inputs.sizes()));
  auto x = torch::relu(gn_root(conv_root(inputs)).first);  // [B, W, H/2, W/2]
  x = max_pool_3x3_same(x);                                // [B, W, H/4, W/4]
  std::map<std::string, torch::Tensor> out{{"stem", x}};
  for (size_t i = 0; i < stages.size(); ++i) {
    x = stages[i](x);
    out["stage_" + std::to_string(i + 1)] = x;
  }
  return out;
}

torch::Tensor AxialResNet::representation(const torch::Tensor& inputs) {
  auto features = forward_features(inputs);
  return features["stage_" + std::to_string(stages.size())].mean({2, 3});  // [B, C]; pre_logits
}

torch::Tensor AxialResNet::forward(const torch::Tensor& inputs) {
  auto x = representation(inputs);
  return output_projection.is_empty() ? x : output_projection(x);  // [B, K]
}

}  // namespace scenic::baselines
