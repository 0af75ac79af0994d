#include "scenic/projects/baselines/hybrid_vit.h"

#include <torch/torch.h>

#include <algorithm>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/flop_counter.h"
#include "scenic/model_lib/layers/initializers.h"

namespace scenic::baselines {

const char* const kHybridViTDefaultConfig = R"(
num_heads: 2
num_layers: 1
representation_size: 16
mlp_dim: 32
dropout_rate: 0.0
attention_dropout_rate: 0.0
hidden_size: 16
patches: {size: [4, 4]}
resnet: {num_layers: [1], width_factor: 1}
classifier: gap
)";

HybridViTOptions HybridViTOptions::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  HybridViTOptions h;
  ViTOptions& o = h.vit;
  o.patch_size = c.get<std::vector<int64_t>>("patches.size");
  if (o.patch_size.size() == 1) o.patch_size.push_back(o.patch_size[0]);
  if (o.patch_size.size() != 2)
    throw Error("config key 'model.patches.size' must be [ph, pw], got " + std::to_string(o.patch_size.size()) +
                " values");
  o.hidden_size = c.get<int64_t>("hidden_size");
  o.mlp_dim = c.get<int64_t>("mlp_dim");
  o.num_heads = c.get<int64_t>("num_heads");
  o.num_layers = c.get<int64_t>("num_layers");
  o.representation_size = c.get_optional<int64_t>("representation_size");
  o.classifier = c.get<std::string>("classifier");
  o.dropout_rate = c.get<double>("dropout_rate", 0.1);
  o.attention_dropout_rate = c.get<double>("attention_dropout_rate", 0.1);
  o.stochastic_depth = c.get<double>("stochastic_depth", 0.0);
  o.num_classes = meta.num_classes;
  o.input_shape = meta.input_shape;
  static const std::vector<std::string> classifiers{"token", "gap", "gmp", "gsp"};
  if (std::find(classifiers.begin(), classifiers.end(), o.classifier) == classifiers.end())
    throw Error("config key 'model.classifier': unknown classifier '" + o.classifier +
                "' (supported: token, gap, gmp, gsp)");
  if (o.input_shape.size() != 4)
    throw Error("HybridViT needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(o.input_shape.size()) + " dims");
  h.use_resnet = c.has("resnet");
  if (h.use_resnet) {
    h.resnet_num_layers = c.get<std::vector<int64_t>>("resnet.num_layers");
    h.resnet_width_factor = c.get<double>("resnet.width_factor");
  } else {
    c.mark_used("resnet");  // `resnet: null` turns the stem off
  }
  return h;
}

namespace {
int64_t ceil_half(int64_t n) { return (n + 1) / 2; }  // a stride-2 'SAME' window
}  // namespace

HybridViT::HybridViT(const HybridViTOptions& h) : options_(h) {
  const ViTOptions& o = h.vit;
  int64_t c = o.input_shape[1], height = o.input_shape[2], width = o.input_shape[3];
  if (h.use_resnet) {
    const auto w = static_cast<int64_t>(64 * h.resnet_width_factor);  // Scenic: int(64 * width_factor)
    if (w <= 0 || w % 32 != 0)
      throw Error("HybridViT: resnet width 64 * width_factor = " + std::to_string(w) +
                  " must be a positive multiple of 32 (GroupNorm groups)");
    conv_root = register_module("conv_root", StdConv(c, w, 7, 2));
    model::masked::GroupNormOptions gn;  // Flax's nn.GroupNorm() defaults
    gn.num_groups = 32;
    gn.epsilon = 1e-6;
    gn_root = register_module("gn_root", model::masked::GroupNorm(w, gn));
    c = w;
    height = ceil_half(ceil_half(height));  // conv_root and the max-pool
    width = ceil_half(ceil_half(width));
    for (size_t i = 0; i < h.resnet_num_layers.size(); ++i) {
      const int64_t stride = i == 0 ? 1 : 2;
      ResNetStage stage(c, h.resnet_num_layers[i], w << i, stride, 1, /*bottleneck=*/true, 32);
      c = stage->out_channels();
      if (stride == 2) {
        height = ceil_half(height);
        width = ceil_half(width);
      }
      stages.push_back(register_module("block" + std::to_string(i + 1), stage));
    }
  }
  const int64_t ph = o.patch_size[0], pw = o.patch_size[1];
  if (height < ph || width < pw)
    throw Error("HybridViT: the " + std::to_string(height) + "x" + std::to_string(width) +
                " feature map is smaller than model.patches.size " + std::to_string(ph) + "x" + std::to_string(pw));
  embedding = register_module(
      "embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, o.hidden_size, {ph, pw}).stride({ph, pw})));
  model::init::lecun_normal_(embedding->weight);
  torch::nn::init::zeros_(embedding->bias);
  int64_t num_tokens = (height / ph) * (width / pw);  // VALID
  if (o.classifier == "token") {
    cls = register_parameter("cls", torch::zeros({1, 1, o.hidden_size}));
    num_tokens += 1;
  }
  Transformer = register_module("Transformer", Encoder(o, num_tokens));
  int64_t d = o.hidden_size;
  if (o.representation_size) {
    pre_logits = register_module("pre_logits", torch::nn::Linear(d, *o.representation_size));
    model::init::lecun_normal_(pre_logits->weight);
    torch::nn::init::zeros_(pre_logits->bias);
    d = *o.representation_size;
  }
  output_projection = register_module("output_projection", torch::nn::Linear(d, o.num_classes));
  torch::nn::init::zeros_(output_projection->weight);
  torch::nn::init::zeros_(output_projection->bias);
}

std::shared_ptr<model::Network> HybridViT::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  return std::make_shared<HybridViT>(HybridViTOptions::from_config(c, meta));
}

torch::Tensor HybridViT::forward(const torch::Tensor& inputs) {
  const auto& shape = options_.vit.input_shape;
  if (inputs.dim() != 4 || inputs.size(1) != shape[1] || inputs.size(2) != shape[2] || inputs.size(3) != shape[3])
    throw Error("HybridViT: expected inputs [B, " + std::to_string(shape[1]) + ", " + std::to_string(shape[2]) + ", " +
                std::to_string(shape[3]) + "] (the position embedding fixes the number of tokens)");
  auto x = inputs;
  if (!conv_root.is_empty()) {
    x = max_pool_3x3_same(torch::relu(gn_root(conv_root(x)).first));  // [B, W, H/4, W/4]
    for (auto& stage : stages) x = stage(x);                           // [B, 4W 2^i, ...]
  }
  x = embedding(x).flatten(2).transpose(1, 2);  // [B, N, D]
  if (cls.defined()) x = torch::cat({cls.expand({x.size(0), 1, -1}), x}, 1);
  const auto& c = options_.vit.classifier;
  // The token classifier needs the class token's row only (counted in full, as vit.cc).
  x = Transformer(x, c == "token" && !common::FlopCounter::active() ? 1 : 0);
  if (c == "token") {
    x = x.select(1, 0);
  } else if (c == "gap") {
    x = x.mean(1);
  } else if (c == "gmp") {
    x = std::get<0>(x.max(1));
  } else {
    x = x.sum(1);
  }                                               // [B, D]
  if (!pre_logits.is_empty()) x = torch::tanh(pre_logits(x));
  return output_projection(x);                    // [B, K]
}

}  // namespace scenic::baselines
