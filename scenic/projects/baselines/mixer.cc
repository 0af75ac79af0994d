#include "scenic/projects/baselines/mixer.h"

#include <torch/torch.h>

#include <map>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/bias_gelu.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/patch_embedding.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::baselines {

const char* const kMixerDefaultConfig = R"(
patch_size: [4, 4]
hidden_size: 16
num_layers: 1
channels_mlp_dim: 32
sequence_mlp_dim: 32
dropout_rate: 0.0
stochastic_depth: 0.0
)";

MixerOptions MixerOptions::variant(const std::string& name) {
  struct Size {
    int64_t hidden, channels_mlp, sequence_mlp, layers;
  };
  // Scenic's imagenet_augreg_mixer_config.py.
  static const std::map<std::string, Size> kSizes{{"Ti", {192, 768, 96, 12}},
                                                  {"S", {384, 1536, 192, 12}},
                                                  {"B", {768, 3072, 384, 12}},
                                                  {"L", {1024, 4096, 512, 24}},
                                                  {"H", {1280, 5120, 640, 32}}};
  const auto slash = name.find('/');
  const auto it = kSizes.find(name.substr(0, slash));
  int64_t patch = 0;
  if (slash != std::string::npos) {
    try {
      size_t used = 0;
      patch = std::stoll(name.substr(slash + 1), &used);
      if (used != name.size() - slash - 1) patch = 0;
    } catch (const std::exception&) {
      patch = 0;
    }
  }
  if (it == kSizes.end() || patch <= 0)
    throw Error("Mixer variant '" + name + "': expected <size>/<patch> with size Ti, S, B, L or H (e.g. 'B/16')");
  MixerOptions o;
  o.patch_size = {patch, patch};
  o.hidden_size = it->second.hidden;
  o.channels_mlp_dim = it->second.channels_mlp;
  o.sequence_mlp_dim = it->second.sequence_mlp;
  o.num_layers = it->second.layers;
  return o;
}

MixerOptions MixerOptions::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  const auto variant_name = c.get_optional<std::string>("variant");
  MixerOptions o = variant_name ? variant(*variant_name) : MixerOptions{};
  const bool v = variant_name.has_value();  // with a variant every size key is optional
  auto size = [&](const char* key, int64_t fallback) {
    return v ? c.get<int64_t>(key, fallback) : c.get<int64_t>(key);
  };
  o.patch_size = v ? c.get<std::vector<int64_t>>("patch_size", o.patch_size) : c.get<std::vector<int64_t>>("patch_size");
  if (o.patch_size.size() == 1) o.patch_size.push_back(o.patch_size[0]);
  if (o.patch_size.size() != 2)
    throw Error("config key 'model.patch_size' must be [ph, pw], got " + std::to_string(o.patch_size.size()) +
                " values");
  o.hidden_size = size("hidden_size", o.hidden_size);
  o.num_layers = size("num_layers", o.num_layers);
  o.channels_mlp_dim = size("channels_mlp_dim", o.channels_mlp_dim);
  o.sequence_mlp_dim = size("sequence_mlp_dim", o.sequence_mlp_dim);
  o.dropout_rate = c.get<double>("dropout_rate", 0.1);
  o.stochastic_depth = c.get<double>("stochastic_depth", 0.0);
  o.layer_scale = c.get_optional<double>("layer_scale");
  o.num_classes = meta.num_classes;
  o.input_shape = meta.input_shape;
  if (o.input_shape.size() != 4)
    throw Error("Mixer needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(o.input_shape.size()) + " dims");
  if (o.input_shape[2] % o.patch_size[0] || o.input_shape[3] % o.patch_size[1])
    throw Error("Mixer: image " + std::to_string(o.input_shape[2]) + "x" + std::to_string(o.input_shape[3]) +
                " is not divisible by model.patch_size " + std::to_string(o.patch_size[0]) + "x" +
                std::to_string(o.patch_size[1]));
  return o;
}

namespace {
torch::nn::LayerNorm layer_norm(int64_t d) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6));  // Flax's epsilon
}
model::MlpBlock mlp(int64_t in, int64_t hidden, double dropout) {
  model::MlpBlockOptions o;
  o.mlp_dim = hidden;
  o.dropout_rate = dropout;
  return model::MlpBlock(in, o);
}
}  // namespace

MixerBlockImpl::MixerBlockImpl(int64_t num_tokens, const MixerOptions& o, double stochastic_depth)
    : stochastic_depth_(stochastic_depth), dropout_rate_(o.dropout_rate) {
  const int64_t d = o.hidden_size;
  LayerNorm_0 = register_module("LayerNorm_0", layer_norm(d));
  token_mixing = register_module("token_mixing", mlp(num_tokens, o.sequence_mlp_dim, o.dropout_rate));
  if (o.layer_scale) {
    model::AffineOptions a;
    a.use_bias = false;
    a.scale_init = *o.layer_scale;
    Affine_0 = register_module("Affine_0", model::Affine(d, a));
    Affine_1 = register_module("Affine_1", model::Affine(d, a));
  }
  LayerNorm_1 = register_module("LayerNorm_1", layer_norm(d));
  channel_mixing = register_module("channel_mixing", mlp(d, o.channels_mlp_dim, o.dropout_rate));
}

torch::Tensor MixerBlockImpl::forward(const torch::Tensor& inputs) {
  if (inputs.dim() != 3)
    throw Error("MixerBlock: input should be of shape [batch, tokens, channels], got " +
                std::to_string(inputs.dim()) + " dims");
  const bool train = is_training();
  if (Affine_0.is_empty() && (!train || (dropout_rate_ == 0.0 && stochastic_depth_ == 0.0))) {
    // Nothing between each MLP's last Dense and its residual add: the adds go into the GEMMs.
    auto x = mix_tokens(LayerNorm_0(inputs), inputs);
    return channel_mixing->forward_add(LayerNorm_1(x), x);
  }
  // Token mixing: an MLP across the N tokens, per channel.
  auto x = mix_tokens(LayerNorm_0(inputs));  // [B, N, D]
  if (!Affine_0.is_empty()) x = Affine_0(x);
  x = model::stochastic_depth_add(x, stochastic_depth_, train, inputs);
  // Channel mixing: an MLP across the D channels, per token.
  auto y = channel_mixing(LayerNorm_1(x));  // [B, N, D]
  if (!Affine_1.is_empty()) x = Affine_1(x);  // Scenic scales x here, not y (see mixer.h)
  return model::stochastic_depth_add(y, stochastic_depth_, train, x);
}

// Scenic applies token_mixing to x transposed to [B, D, N] and transposes back. The same
// function without either transpose: a Dense over the token axis is the left product
// W [S, N] x x_b for each batch element b, so each Dense runs as one batched GEMM with W
// broadcast over the batch (stride 0, no copy) and its bias (along dim 1 now) as
// baddbmm's addend; the result stays [B, *, D] and contiguous, so the residual add and
// LayerNorm_1 that follow read it in order too. Same parameters (Dense_0.weight [S, N],
// Dense_1.weight [N, S]). On Mixer-S/16's shapes (B 8, N 196, D 384, S 192, one CPU
// thread) the token MLP + residual + LayerNorm took 6.6 ms instead of 8.4 ms forward and
// 19.3 instead of 22.4 ms forward + backward (bench/README.md). With a residual (dropout
// off) the second product accumulates into residual + bias in place (beta = 1), which
// saves the separate residual-add pass.
torch::Tensor MixerBlockImpl::mix_tokens(const torch::Tensor& x, const torch::Tensor& residual) {
  const int64_t b = x.size(0), d = x.size(2);
  auto dense = [&](const torch::nn::Linear& l, const torch::Tensor& in) {  // [B, K, D] -> [B, M, D]
    const int64_t m = l->weight.size(0), k = l->weight.size(1);
    return torch::baddbmm(l->bias.view({1, m, 1}).expand({b, m, d}), l->weight.unsqueeze(0).expand({b, m, k}), in);
  };
  const bool train = is_training();
  auto h = model::bias_gelu(dense(token_mixing->Dense_0, x), torch::Tensor());  // the bias is already in
  h = model::dropout(h, dropout_rate_, train);
  const auto& l = token_mixing->Dense_1;
  // Not under autocast (h is then in a lower precision than the float32 accumulator).
  if (residual.defined() && (!train || dropout_rate_ == 0.0) && residual.sizes() == x.sizes() &&
      h.scalar_type() == residual.scalar_type() && l->weight.scalar_type() == residual.scalar_type()) {
    const int64_t m = l->weight.size(0), k = l->weight.size(1);
    auto acc = residual + l->bias.view({1, m, 1});  // a fresh [B, N, D] tensor
    return acc.baddbmm_(l->weight.unsqueeze(0).expand({b, m, k}), h);
  }
  auto y = model::dropout(dense(l, h), dropout_rate_, train);
  return residual.defined() ? y + residual : y;
}

Mixer::Mixer(const MixerOptions& o) : options_(o) {
  const int64_t ph = o.patch_size.at(0), pw = o.patch_size.at(1);
  embedding = register_module(
      "embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.input_shape[1], o.hidden_size, {ph, pw})
                                         .stride({ph, pw})));
  model::init::lecun_normal_(embedding->weight);
  torch::nn::init::zeros_(embedding->bias);
  const int64_t num_tokens = (o.input_shape[2] / ph) * (o.input_shape[3] / pw);
  for (int64_t i = 0; i < o.num_layers; ++i) {
    const double p = o.stochastic_depth * static_cast<double>(i) / std::max<int64_t>(o.num_layers - 1, 1);
    blocks.push_back(register_module("mixerblock_" + std::to_string(i), MixerBlock(num_tokens, o, p)));
  }
  pre_logits_norm = register_module("pre_logits_norm", layer_norm(o.hidden_size));
  output_projection = register_module("output_projection", torch::nn::Linear(o.hidden_size, o.num_classes));
  torch::nn::init::zeros_(output_projection->weight);
  torch::nn::init::zeros_(output_projection->bias);
}

std::shared_ptr<model::Network> Mixer::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  return std::make_shared<Mixer>(MixerOptions::from_config(c, meta));
}

torch::Tensor Mixer::forward(const torch::Tensor& inputs) {
  const auto& shape = options_.input_shape;
  if (inputs.dim() != 4 || inputs.size(1) != shape[1] || inputs.size(2) != shape[2] || inputs.size(3) != shape[3])
    throw Error("Mixer: expected inputs [B, " + std::to_string(shape[1]) + ", " + std::to_string(shape[2]) + ", " +
                std::to_string(shape[3]) + "] (the token-mixing MLPs fix the number of patches)");
  auto x = model::embed_patches(embedding, inputs);  // [B, N, D], the conv as one GEMM
  for (auto& block : blocks) x = block(x);
  x = pre_logits_norm(x).mean(1);        // [B, D]; pre_logits
  return output_projection(x);           // [B, K]
}

}  // namespace scenic::baselines
