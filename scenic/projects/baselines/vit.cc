#include "scenic/projects/baselines/vit.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/nn_layers.h"

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

ViTOptions ViTOptions::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  ViTOptions o;
  o.patch_size = c.get<std::vector<int64_t>>("patches.size");
  if (o.patch_size.size() == 1) o.patch_size.push_back(o.patch_size[0]);
  if (o.patch_size.size() != 2)
    throw Error("config key 'model.patches.size' must be [ph, pw], got " +
                std::to_string(o.patch_size.size()) + " values");
  o.hidden_size = c.get<int64_t>("hidden_size");
  o.mlp_dim = c.get<int64_t>("mlp_dim");
  o.num_heads = c.get<int64_t>("num_heads");
  o.num_layers = c.get<int64_t>("num_layers");
  o.representation_size = c.get_optional<int64_t>("representation_size");
  o.classifier = c.get<std::string>("classifier", "token");
  o.positional_embedding = c.get<std::string>("positional_embedding", "learned_1d");
  o.dropout_rate = c.get<double>("dropout_rate", 0.1);
  o.attention_dropout_rate = c.get<double>("attention_dropout_rate", 0.1);
  o.stochastic_depth = c.get<double>("stochastic_depth", 0.0);
  o.num_classes = meta.num_classes;
  o.input_shape = meta.input_shape;
  static const std::vector<std::string> classifiers{"token", "gap", "gmp", "gsp"};
  if (std::find(classifiers.begin(), classifiers.end(), o.classifier) == classifiers.end())
    throw Error("config key 'model.classifier': unknown classifier '" + o.classifier +
                "' (supported: token, gap, gmp, gsp)");
  if (o.positional_embedding != "learned_1d" && o.positional_embedding != "none")
    throw Error("config key 'model.positional_embedding': '" + o.positional_embedding +
                "' is not supported yet (supported: learned_1d, none)");
  if (o.input_shape.size() != 4)
    throw Error("ViT needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(o.input_shape.size()) + " dims");
  if (o.input_shape[2] % o.patch_size[0] || o.input_shape[3] % o.patch_size[1])
    throw Error("ViT: image " + std::to_string(o.input_shape[2]) + "x" +
                std::to_string(o.input_shape[3]) + " is not divisible by model.patches.size " +
                std::to_string(o.patch_size[0]) + "x" + std::to_string(o.patch_size[1]));
  return o;
}

namespace {
torch::nn::LayerNorm layer_norm(int64_t d) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-6));  // Flax's epsilon
}
}  // namespace

Encoder1DBlockImpl::Encoder1DBlockImpl(const ViTOptions& o, double stochastic_depth)
    : dropout_rate_(o.dropout_rate), stochastic_depth_(stochastic_depth) {
  LayerNorm_0 = register_module("LayerNorm_0", layer_norm(o.hidden_size));
  model::MultiHeadAttentionOptions attn;
  attn.num_heads = o.num_heads;
  attn.dropout_rate = o.attention_dropout_rate;
  MultiHeadDotProductAttention_1 = register_module(
      "MultiHeadDotProductAttention_1", model::MultiHeadAttention(o.hidden_size, attn));
  LayerNorm_2 = register_module("LayerNorm_2", layer_norm(o.hidden_size));
  model::MlpBlockOptions mlp;
  mlp.mlp_dim = o.mlp_dim;
  mlp.dropout_rate = o.dropout_rate;
  MlpBlock_3 = register_module("MlpBlock_3", model::MlpBlock(o.hidden_size, mlp));
}

torch::Tensor Encoder1DBlockImpl::forward(const torch::Tensor& inputs) {
  const bool train = is_training();
  auto x = MultiHeadDotProductAttention_1(LayerNorm_0(inputs));
  x = torch::dropout(x, dropout_rate_, train);
  x = model::stochastic_depth(x, stochastic_depth_, train) + inputs;
  auto y = MlpBlock_3(LayerNorm_2(x));
  return model::stochastic_depth(y, stochastic_depth_, train) + x;
}

AddPositionEmbsImpl::AddPositionEmbsImpl(int64_t num_tokens, int64_t width) {
  pos_embedding = register_parameter("pos_embedding", torch::empty({1, num_tokens, width}));
  torch::nn::init::normal_(pos_embedding, 0.0, 0.02);
}

EncoderImpl::EncoderImpl(const ViTOptions& o, int64_t num_tokens) : dropout_rate_(o.dropout_rate) {
  if (o.positional_embedding == "learned_1d") {
    posembed_input = register_module("posembed_input", AddPositionEmbs(num_tokens, o.hidden_size));
  }
  for (int64_t i = 0; i < o.num_layers; ++i) {
    // Stochastic depth grows linearly from 0 at the first block to the rate at the last.
    const double rate = o.num_layers > 1 ? o.stochastic_depth * i / (o.num_layers - 1) : 0.0;
    blocks.push_back(register_module("encoderblock_" + std::to_string(i), Encoder1DBlock(o, rate)));
  }
  encoder_norm = register_module("encoder_norm", layer_norm(o.hidden_size));
}

torch::Tensor EncoderImpl::forward(const torch::Tensor& input) {
  auto x = posembed_input.is_empty() ? input : posembed_input(input);
  x = torch::dropout(x, dropout_rate_, is_training());
  for (auto& block : blocks) x = block(x);
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
  auto x = embedding(inputs);           // [B, D, gh, gw]
  x = x.flatten(2).transpose(1, 2);     // [B, N, D]
  if (cls.defined()) x = torch::cat({cls.expand({x.size(0), 1, -1}), x}, 1);  // [B, 1 + N, D]
  x = Transformer(x);
  const auto& c = options_.classifier;
  if (c == "token") {
    x = x.select(1, 0);
  } else if (c == "gap") {
    x = x.mean(1);
  } else if (c == "gmp") {
    x = std::get<0>(x.max(1));
  } else {  // gsp
    x = x.sum(1);
  }                                     // [B, D]
  if (!pre_logits.is_empty()) x = torch::tanh(pre_logits(x));
  return x;                             // [B, D] (D = representation_size when set)
}

}  // namespace scenic::baselines
