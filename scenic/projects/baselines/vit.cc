#include "scenic/projects/baselines/vit.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/flop_counter.h"
#include <cmath>

#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/position_embeddings.h"
#include "scenic/model_lib/layers/patch_embedding.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::baselines {

const char* const kViTDefaultConfig = R"(
patches: {size: [4, 4]}
hidden_size: 192
mlp_dim: 768
num_heads: 3
num_layers: 12
representation_size: null
classifier: token
dropout_rate: 0.1
attention_dropout_rate: 0.1
)";

namespace {

// Scenic's ViT sizes (hidden_size, mlp_dim, num_heads, num_layers).
struct ViTSize {
  int64_t hidden, mlp, heads, layers;
};
const std::map<std::string, ViTSize>& vit_sizes() {
  static const std::map<std::string, ViTSize> sizes{{"Ti", {192, 768, 3, 12}},
                                                    {"S", {384, 1536, 6, 12}},
                                                    {"B", {768, 3072, 12, 12}},
                                                    {"L", {1024, 4096, 16, 24}},
                                                    {"H", {1280, 5120, 16, 32}}};
  return sizes;
}

}  // namespace

ViTOptions ViTOptions::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  ViTOptions o;
  std::optional<ViTSize> size;
  std::optional<int64_t> variant_patch;
  if (auto variant = c.get_optional<std::string>("variant")) {
    const auto slash = variant->find('/');
    const std::string name = variant->substr(0, slash);
    auto it = vit_sizes().find(name);
    if (it == vit_sizes().end() || slash == std::string::npos || slash + 1 >= variant->size())
      throw Error("config key 'model.variant': '" + *variant + "' is not a ViT variant like 'B/16' (sizes Ti, S, B, L, H)");
    size = it->second;
    try {
      variant_patch = std::stoll(variant->substr(slash + 1));
    } catch (const std::exception&) {
      throw Error("config key 'model.variant': '" + *variant + "' has no patch size after '/'");
    }
  }
  if (variant_patch && !c.get_optional<std::vector<int64_t>>("patches.size")) {
    o.patch_size = {*variant_patch, *variant_patch};
  } else {
    o.patch_size = c.get<std::vector<int64_t>>("patches.size");
  }
  if (o.patch_size.size() == 1) o.patch_size.push_back(o.patch_size[0]);
  if (o.patch_size.size() != 2)
    throw Error("config key 'model.patches.size' must be [ph, pw], got " +
                std::to_string(o.patch_size.size()) + " values");
  o.hidden_size = size ? c.get<int64_t>("hidden_size", size->hidden) : c.get<int64_t>("hidden_size");
  o.mlp_dim = size ? c.get<int64_t>("mlp_dim", size->mlp) : c.get<int64_t>("mlp_dim");
  o.num_heads = size ? c.get<int64_t>("num_heads", size->heads) : c.get<int64_t>("num_heads");
  o.num_layers = size ? c.get<int64_t>("num_layers", size->layers) : c.get<int64_t>("num_layers");
  o.representation_size = c.get_optional<int64_t>("representation_size");
  o.classifier = c.get<std::string>("classifier", "token");
  if (o.classifier == "0") o.classifier = "token";
  o.positional_embedding = c.get<std::string>("positional_embedding", "learned_1d");
  o.dropout_rate = c.get<double>("dropout_rate", 0.1);
  o.attention_dropout_rate = c.get<double>("attention_dropout_rate", 0.1);
  o.stochastic_depth = c.get<double>("stochastic_depth", 0.0);
  o.num_classes = meta.num_classes;
  o.input_shape = meta.input_shape;
  static const std::vector<std::string> classifiers{"token", "gap", "gmp", "gsp", "map", "none"};
  if (std::find(classifiers.begin(), classifiers.end(), o.classifier) == classifiers.end())
    throw Error("config key 'model.classifier': unknown classifier '" + o.classifier +
                "' (supported: token, 0, gap, gmp, gsp, map, none)");
  static const std::vector<std::string> posembs{"learned_1d", "sinusoidal_1d", "sinusoidal_2d", "none"};
  if (std::find(posembs.begin(), posembs.end(), o.positional_embedding) == posembs.end())
    throw Error("config key 'model.positional_embedding': unknown '" + o.positional_embedding +
                "' (supported: learned_1d, sinusoidal_1d, sinusoidal_2d, none)");
  if (o.input_shape.size() != 4)
    throw Error("ViT needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(o.input_shape.size()) + " dims");
  if (o.input_shape[2] % o.patch_size[0] || o.input_shape[3] % o.patch_size[1])
    throw Error("ViT: image " + std::to_string(o.input_shape[2]) + "x" +
                std::to_string(o.input_shape[3]) + " is not divisible by model.patches.size " +
                std::to_string(o.patch_size[0]) + "x" + std::to_string(o.patch_size[1]));
  if (o.hidden_size % o.num_heads)
    throw Error("ViT: model.hidden_size " + std::to_string(o.hidden_size) + " is not divisible by model.num_heads " +
                std::to_string(o.num_heads));
  return o;
}

AddPositionEmbsImpl::AddPositionEmbsImpl(int64_t num_tokens, int64_t width) {
  pos_embedding = register_parameter("pos_embedding", torch::empty({1, num_tokens, width}));
  torch::nn::init::normal_(pos_embedding, 0.0, 0.02);
}

MAPHeadImpl::MAPHeadImpl(int64_t width, int64_t num_heads, int64_t mlp_dim) {
  // Flax's xavier_uniform on a [1, 1, D] parameter: fan_in 1, fan_out D.
  const double limit = std::sqrt(6.0 / (1.0 + static_cast<double>(width)));
  probe = register_parameter("probe", torch::empty({1, 1, width}).uniform_(-limit, limit));
  model::MultiHeadAttentionOptions attn;
  attn.num_heads = num_heads;
  MultiHeadDotProductAttention_0 = register_module("MultiHeadDotProductAttention_0", model::MultiHeadAttention(width, attn));
  LayerNorm_0 = register_module("LayerNorm_0", model::flax_layer_norm(width));
  model::MlpBlockOptions mlp;
  mlp.mlp_dim = mlp_dim;
  mlp.dropout_rate = 0.0;
  MlpBlock_0 = register_module("MlpBlock_0", model::MlpBlock(width, mlp));
}

torch::Tensor MAPHeadImpl::forward(const torch::Tensor& x) {
  auto q = probe.expand({x.size(0), 1, probe.size(2)});        // [B, 1, D]
  auto y = MultiHeadDotProductAttention_0(q, x);               // [B, 1, D]
  y = y + MlpBlock_0(LayerNorm_0(y));
  return y.select(1, 0);                                       // [B, D]
}

EncoderImpl::EncoderImpl(const ViTOptions& o, int64_t num_tokens)
    : dropout_rate_(o.dropout_rate), positional_embedding_(o.positional_embedding) {
  if (o.positional_embedding == "learned_1d") {
    posembed_input = register_module("posembed_input", AddPositionEmbs(num_tokens, o.hidden_size));
  } else if (o.positional_embedding == "sinusoidal_1d") {
    fixed_posemb_ = model::sinusoidal_init(num_tokens, o.hidden_size);  // [1, N, D]
  } else if (o.positional_embedding == "sinusoidal_2d") {
    const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(num_tokens))));
    if (side * side != num_tokens)
      throw Error("ViT: positional_embedding sinusoidal_2d needs a square token grid, got " +
                  std::to_string(num_tokens) + " tokens (a class token makes it non-square: use a pooling classifier)");
    fixed_posemb_ = model::get_fixed_sincos_position_embedding({1, side, side, o.hidden_size})
                        .reshape({1, num_tokens, o.hidden_size});
  }
  // Not a buffer: a fixed function of the shape, so checkpoints and weight imports
  // need not carry it; it follows the input's device on first use.
  model::Encoder1DBlockOptions block;
  block.mlp_dim = o.mlp_dim;
  block.num_heads = o.num_heads;
  block.dropout_rate = o.dropout_rate;
  block.attention_dropout_rate = o.attention_dropout_rate;
  for (int64_t i = 0; i < o.num_layers; ++i) {
    // Stochastic depth grows linearly from 0 at the first block to the rate at the last.
    block.stochastic_depth = o.num_layers > 1 ? o.stochastic_depth * i / (o.num_layers - 1) : 0.0;
    blocks.push_back(register_module("encoderblock_" + std::to_string(i), Encoder1DBlock(o.hidden_size, block)));
  }
  encoder_norm = register_module("encoder_norm", model::flax_layer_norm(o.hidden_size));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& input, int64_t keep_tokens) {
  auto x = posembed_input.is_empty() ? input : posembed_input(input);
  if (fixed_posemb_.defined()) {
    if (fixed_posemb_.device() != x.device()) fixed_posemb_ = fixed_posemb_.to(x.device());
    x = x + fixed_posemb_;
  }
  x = model::dropout(x, dropout_rate_, is_training());
  for (size_t i = 0; i < blocks.size(); ++i)
    x = keep_tokens > 0 && i + 1 == blocks.size() ? blocks[i]->forward_prefix(x, keep_tokens) : blocks[i](x);
  if (keep_tokens > 0 && blocks.empty()) x = x.narrow(1, 0, keep_tokens);
  return encoder_norm(x);
}

ViT::ViT(const ViTOptions& o) : options_(o) {
  const int64_t c = o.input_shape[1];
  embedding = register_module(
      "embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, o.hidden_size,
                                                              {o.patch_size[0], o.patch_size[1]})
                                         .stride({o.patch_size[0], o.patch_size[1]})));
  model::init::lecun_normal_(embedding->weight);
  torch::nn::init::zeros_(embedding->bias);
  int64_t num_tokens = (o.input_shape[2] / o.patch_size[0]) * (o.input_shape[3] / o.patch_size[1]);
  if (o.classifier == "token") {
    cls = register_parameter("cls", torch::zeros({1, 1, o.hidden_size}));
    num_tokens += 1;
  }
  Transformer = register_module("Transformer", Encoder(o, num_tokens));
  if (o.classifier == "map") MAPHead_0 = register_module("MAPHead_0", MAPHead(o.hidden_size, o.num_heads, o.mlp_dim));
  int64_t width = o.hidden_size;
  if (o.representation_size) {
    pre_logits = register_module("pre_logits", torch::nn::Linear(width, *o.representation_size));
    model::init::lecun_normal_(pre_logits->weight);
    torch::nn::init::zeros_(pre_logits->bias);
    width = *o.representation_size;
  }
  if (o.num_classes > 0) {
    output_projection = register_module("output_projection", torch::nn::Linear(width, o.num_classes));
    torch::nn::init::zeros_(output_projection->weight);
    torch::nn::init::zeros_(output_projection->bias);
  }
}

torch::Tensor ViT::forward(const torch::Tensor& inputs) {
  auto x = representation(inputs);      // [B, D]
  if (!output_projection.is_empty()) x = output_projection(x);
  return x;                             // [B, K]
}

torch::Tensor ViT::representation(const torch::Tensor& inputs) {
  auto x = model::embed_patches(embedding, inputs);  // [B, N, D], the conv as one GEMM
  if (cls.defined()) x = torch::cat({cls.expand({x.size(0), 1, -1}), x}, 1);  // [B, 1 + N, D]
  const auto& c = options_.classifier;
  // The token classifier reads the class token alone: the last block computes only its
  // row (the model's nominal FLOPs are counted in full, flop_counter.h).
  x = Transformer(x, c == "token" && !common::FlopCounter::active() ? 1 : 0);
  if (c == "token") {
    x = x.select(1, 0);
  } else if (c == "gap") {
    x = x.mean(1);
  } else if (c == "gmp") {
    x = std::get<0>(x.max(1));
  } else if (c == "gsp") {
    x = x.sum(1);
  } else if (c == "map") {
    x = MAPHead_0(x);
  }                                     // [B, D]; `none` keeps [B, N, D]
  if (!pre_logits.is_empty()) x = torch::tanh(pre_logits(x));
  return x;                             // [B, D] (D = representation_size when set)
}

}  // namespace scenic::baselines
