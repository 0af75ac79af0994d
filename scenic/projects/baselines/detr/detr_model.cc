#include "scenic/projects/baselines/detr/detr_model.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/initializers.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::baselines::detr {
namespace {

constexpr double kLayerNormEps = 1e-6;  // flax nn.LayerNorm's default, as Scenic
constexpr double kMaskedBias = -1e9;

torch::nn::Linear dense(int64_t in, int64_t out) {
  torch::nn::Linear l(in, out);
  model::init::xavier_uniform_(l->weight);  // DETR's transformer: xavier_uniform on every matrix
  return l;
}

torch::nn::LayerNorm layer_norm(int64_t d) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(kLayerNormEps));
}

model::MultiHeadAttention attention(const DetrOptions& o) {
  model::MultiHeadAttentionOptions m;
  m.num_heads = o.num_heads;
  m.qkv_features = o.qkv_dim;
  m.out_features = o.hidden_dim;
  m.dropout_rate = o.attention_dropout_rate;
  return model::MultiHeadAttention(o.hidden_dim, m);
}

torch::Tensor maybe_dropout(const torch::Tensor& x, double rate, bool training) {
  return model::dropout(x, rate, training);
}

}  // namespace

DetrOptions DetrOptions::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  if (meta.input_shape.size() != 4)
    throw Error("DETR needs image inputs [-1, C, H, W], the dataset gives " +
                std::to_string(meta.input_shape.size()) + " dims");
  if (meta.num_classes < 2)
    throw Error("DETR needs a detection dataset (num_classes = categories + 1, 0 = padding), got num_classes " +
                std::to_string(meta.num_classes));
  DetrOptions o;
  o.num_classes = meta.num_classes;
  o.in_channels = meta.input_shape[1];
  o.hidden_dim = c.get<int64_t>("hidden_dim", o.hidden_dim);
  o.num_queries = c.get<int64_t>("num_queries", o.num_queries);
  o.num_heads = c.get<int64_t>("transformer_num_heads", o.num_heads);
  o.num_encoder_layers = c.get<int64_t>("transformer_num_encoder_layers", o.num_encoder_layers);
  o.num_decoder_layers = c.get<int64_t>("transformer_num_decoder_layers", o.num_decoder_layers);
  o.qkv_dim = c.get<int64_t>("transformer_qkv_dim", o.hidden_dim);
  o.mlp_dim = c.get<int64_t>("transformer_mlp_dim", o.mlp_dim);
  o.normalize_before = c.get<bool>("transformer_normalize_before", o.normalize_before);
  o.backbone_num_filters = c.get<int64_t>("backbone_num_filters", o.backbone_num_filters);
  o.backbone_num_layers = c.get<int64_t>("backbone_num_layers", o.backbone_num_layers);
  o.dropout_rate = c.get<double>("dropout_rate", o.dropout_rate);
  o.attention_dropout_rate = c.get<double>("attention_dropout_rate", o.attention_dropout_rate);
  o.aux_loss = c.get<bool>("aux_loss", o.aux_loss);
  o.freeze_backbone_batch_stats = c.get<bool>("freeze_backbone_batch_stats", o.freeze_backbone_batch_stats);
  const auto dtype = c.get<std::string>("model_dtype_str", "float32");
  if (dtype != "float32") throw Error("config key 'model_dtype_str': only float32 is supported, got '" + dtype + "'");
  // Scenic's query_emb_size: only None (= hidden_dim) is supported.
  if (auto q = c.get_optional<int64_t>("query_emb_size"); q && *q != o.hidden_dim)
    throw Error("config key 'query_emb_size': only hidden_dim (" + std::to_string(o.hidden_dim) +
                ") or null is supported, got " + std::to_string(*q));
  return o;
}

torch::Tensor sine_position_embedding(const torch::Tensor& mask, int64_t num_pos_feats, double temperature,
                                      bool normalize, double scale) {
  if (mask.dim() != 3) throw Error("sine_position_embedding: mask must be [B, h, w], got " + std::to_string(mask.dim()) + "-d");
  if (num_pos_feats <= 0 || num_pos_feats % 2 != 0)
    throw Error("sine_position_embedding: num_pos_feats must be even and positive (hidden_dim a multiple of 4), got " +
                std::to_string(num_pos_feats));
  const auto f32 = mask.options().dtype(torch::kFloat32);
  auto not_mask = mask.to(torch::kFloat32);
  auto y = not_mask.cumsum(1);  // [B, h, w]
  auto x = not_mask.cumsum(2);
  if (normalize) {
    constexpr double eps = 1e-6;
    y = y / (y.narrow(1, y.size(1) - 1, 1) + eps) * scale;
    x = x / (x.narrow(2, x.size(2) - 1, 1) + eps) * scale;
  }
  auto i = torch::arange(num_pos_feats, f32);
  auto dim_t = torch::pow(temperature, 2.0 * torch::floor(i / 2) / double(num_pos_feats));  // [F]
  auto interleave = [&](const torch::Tensor& e) {
    auto p = e.unsqueeze(-1) / dim_t;  // [B, h, w, F]
    auto s = p.index({"...", torch::indexing::Slice(0, torch::indexing::None, 2)}).sin();
    auto c = p.index({"...", torch::indexing::Slice(1, torch::indexing::None, 2)}).cos();
    return torch::stack({s, c}, -1).flatten(3);  // [B, h, w, F]: sin, cos, sin, cos, ...
  };
  auto pos = torch::cat({interleave(y), interleave(x)}, -1);  // [B, h, w, 2F]
  return pos.flatten(1, 2);                                   // [B, h * w, 2F]
}

torch::Tensor downsample_padding_mask(const torch::Tensor& mask, int64_t h, int64_t w) {
  if (mask.dim() != 3) throw Error("padding_mask must be [B, H, W], got " + std::to_string(mask.dim()) + "-d");
  auto index = [&](int64_t in, int64_t out) {
    auto i = torch::arange(out, torch::TensorOptions().dtype(torch::kFloat64));
    return torch::floor((i + 0.5) * (double(in) / double(out))).clamp_max(in - 1).to(torch::kInt64).to(mask.device());
  };
  return mask.index_select(1, index(mask.size(1), h)).index_select(2, index(mask.size(2), w));
}

DetrOutputs unpack_detr_outputs(const torch::Tensor& packed, int64_t num_classes) {
  if (packed.dim() != 4 || packed.size(-1) != num_classes + 4)
    throw Error("DETR outputs must be packed as [L, B, N, num_classes + 4] = [L, B, N, " +
                std::to_string(num_classes + 4) + "], got " + std::to_string(packed.dim()) + "-d with last dim " +
                std::to_string(packed.dim() ? packed.size(-1) : 0));
  DetrOutputs out;
  const int64_t L = packed.size(0);
  for (int64_t l = 0; l < L; ++l) {
    auto logits = packed[l].narrow(-1, 0, num_classes);
    auto boxes = packed[l].narrow(-1, num_classes, 4);
    if (l + 1 < L) out.aux_outputs.emplace_back(logits, boxes);
    else out.pred_logits = logits, out.pred_boxes = boxes;
  }
  return out;
}

DetrEncoderLayerImpl::DetrEncoderLayerImpl(const DetrOptions& o)
    : normalize_before_(o.normalize_before), dropout_(o.dropout_rate) {
  self_attn = register_module("self_attn", attention(o));
  linear1 = register_module("linear1", dense(o.hidden_dim, o.mlp_dim));
  linear2 = register_module("linear2", dense(o.mlp_dim, o.hidden_dim));
  norm1 = register_module("norm1", layer_norm(o.hidden_dim));
  norm2 = register_module("norm2", layer_norm(o.hidden_dim));
}

torch::Tensor DetrEncoderLayerImpl::forward(const torch::Tensor& x_in, const torch::Tensor& pos,
                                            const torch::Tensor& key_bias) {
  const bool t = is_training();
  model::AttentionArgs args;
  args.pos_emb_q = pos;
  args.pos_emb_k = pos;
  args.attention_bias_kv = key_bias;
  auto ffn = [&](const torch::Tensor& h) { return linear2(maybe_dropout(torch::relu(linear1(h)), dropout_, t)); };
  auto x = x_in;
  if (normalize_before_) {
    x = x + maybe_dropout(self_attn->forward(norm1(x), torch::Tensor(), args), dropout_, t);
    return x + maybe_dropout(ffn(norm2(x)), dropout_, t);
  }
  x = norm1(x + maybe_dropout(self_attn->forward(x, torch::Tensor(), args), dropout_, t));
  return norm2(x + maybe_dropout(ffn(x), dropout_, t));
}

DetrDecoderLayerImpl::DetrDecoderLayerImpl(const DetrOptions& o)
    : normalize_before_(o.normalize_before), dropout_(o.dropout_rate) {
  self_attn = register_module("self_attn", attention(o));
  cross_attn = register_module("cross_attn", attention(o));
  linear1 = register_module("linear1", dense(o.hidden_dim, o.mlp_dim));
  linear2 = register_module("linear2", dense(o.mlp_dim, o.hidden_dim));
  norm1 = register_module("norm1", layer_norm(o.hidden_dim));
  norm2 = register_module("norm2", layer_norm(o.hidden_dim));
  norm3 = register_module("norm3", layer_norm(o.hidden_dim));
}

torch::Tensor DetrDecoderLayerImpl::forward(const torch::Tensor& tgt_in, const torch::Tensor& memory,
                                            const torch::Tensor& pos, const torch::Tensor& query_pos,
                                            const torch::Tensor& key_bias) {
  const bool t = is_training();
  model::AttentionArgs self_args;  // q = k = tgt + query_pos, v = tgt
  self_args.pos_emb_q = query_pos;
  self_args.pos_emb_k = query_pos;
  model::AttentionArgs cross_args;  // q = tgt + query_pos, k = memory + pos, v = memory
  cross_args.pos_emb_q = query_pos;
  cross_args.pos_emb_k = pos;
  cross_args.attention_bias_kv = key_bias;
  auto ffn = [&](const torch::Tensor& h) { return linear2(maybe_dropout(torch::relu(linear1(h)), dropout_, t)); };
  auto tgt = tgt_in;
  if (normalize_before_) {
    tgt = tgt + maybe_dropout(self_attn->forward(norm1(tgt), torch::Tensor(), self_args), dropout_, t);
    tgt = tgt + maybe_dropout(cross_attn->forward(norm2(tgt), memory, cross_args), dropout_, t);
    return tgt + maybe_dropout(ffn(norm3(tgt)), dropout_, t);
  }
  tgt = norm1(tgt + maybe_dropout(self_attn->forward(tgt, torch::Tensor(), self_args), dropout_, t));
  tgt = norm2(tgt + maybe_dropout(cross_attn->forward(tgt, memory, cross_args), dropout_, t));
  return norm3(tgt + maybe_dropout(ffn(tgt), dropout_, t));
}

DETR::DETR(const DetrOptions& o) : options_(o) {
  if (o.hidden_dim != o.qkv_dim)
    throw Error("DETR requires hidden_dim == transformer_qkv_dim (Scenic's condition), got " +
                std::to_string(o.hidden_dim) + " and " + std::to_string(o.qkv_dim));
  if (o.hidden_dim % 4 != 0)
    throw Error("config key 'hidden_dim' must be a multiple of 4 (sine position embedding), got " +
                std::to_string(o.hidden_dim));
  if (o.hidden_dim % o.num_heads != 0)
    throw Error("config key 'hidden_dim' (" + std::to_string(o.hidden_dim) +
                ") must be divisible by transformer_num_heads (" + std::to_string(o.num_heads) + ")");
  if (o.num_queries <= 0 || o.num_decoder_layers <= 0 || o.num_encoder_layers < 0)
    throw Error("DETR needs num_queries > 0, transformer_num_decoder_layers > 0 and num_encoder_layers >= 0");
  ResNetOptions r;
  r.num_filters = o.backbone_num_filters;
  r.num_layers = o.backbone_num_layers;
  r.in_channels = o.in_channels;
  r.num_classes = 0;  // no head: Scenic's num_outputs=None
  backbone = register_module("backbone", std::make_shared<ResNet>(r));
  // Channels of the last stage: run nothing, read the last block's width.
  const int64_t backbone_channels = backbone->stages.back().back()->out_channels();
  input_proj = register_module(
      "input_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(backbone_channels, o.hidden_dim, 1)));
  encoder_layers = register_module("encoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_encoder_layers; ++i) encoder_layers->push_back(DetrEncoderLayer(o));
  decoder_layers = register_module("decoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_decoder_layers; ++i) decoder_layers->push_back(DetrDecoderLayer(o));
  if (o.normalize_before) encoder_norm = register_module("encoder_norm", layer_norm(o.hidden_dim));
  decoder_norm = register_module("decoder_norm", layer_norm(o.hidden_dim));
  query_embed = register_parameter("query_embed", torch::randn({o.num_queries, o.hidden_dim}));
  class_embed = register_module("class_embed", torch::nn::Linear(o.hidden_dim, o.num_classes));
  bbox_fc1 = register_module("bbox_fc1", torch::nn::Linear(o.hidden_dim, o.hidden_dim));
  bbox_fc2 = register_module("bbox_fc2", torch::nn::Linear(o.hidden_dim, o.hidden_dim));
  bbox_fc3 = register_module("bbox_fc3", torch::nn::Linear(o.hidden_dim, 4));
  train(true);
}

std::shared_ptr<model::Network> DETR::from_config(const common::ConfigDict& c, const dataset::MetaData& meta) {
  return std::make_shared<DETR>(DetrOptions::from_config(c, meta));
}

void DETR::train(bool on) {
  torch::nn::Module::train(on);
  if (options_.freeze_backbone_batch_stats && backbone) backbone->eval();
}

torch::Tensor DETR::forward(const torch::Tensor& inputs) { return forward_packed(inputs, {}); }

torch::Tensor DETR::forward_packed(const torch::Tensor& inputs, const torch::Tensor& padding_mask) {
  auto features = backbone->forward_features(inputs);
  auto x = features.at("stage_" + std::to_string(backbone->stages.size()));  // [B, Cb, h, w]
  const int64_t B = x.size(0), h = x.size(2), w = x.size(3);
  torch::Tensor mask;  // [B, h, w], 1 real
  if (padding_mask.defined()) {
    if (padding_mask.dim() != 3 || padding_mask.size(0) != B || padding_mask.size(1) != inputs.size(2) ||
        padding_mask.size(2) != inputs.size(3))
      throw Error("DETR: padding_mask must be [B, H, W] of the inputs");
    mask = downsample_padding_mask(padding_mask.to(torch::kFloat32), h, w);
  } else {
    mask = torch::ones({B, h, w}, x.options().dtype(torch::kFloat32));
  }
  const int64_t D = options_.hidden_dim;
  auto pos = sine_position_embedding(mask, D / 2).to(x.dtype());          // [B, S, D]
  auto key_bias = ((1.0 - mask.flatten(1)) * kMaskedBias).to(x.dtype());  // [B, S]
  auto src = input_proj(x).flatten(2).transpose(1, 2);                    // [B, S, D]

  auto memory = src;
  for (const auto& m : *encoder_layers) memory = m->as<DetrEncoderLayer>()->forward(memory, pos, key_bias);
  if (!encoder_norm.is_empty()) memory = encoder_norm(memory);

  auto query_pos = query_embed.unsqueeze(0).expand({B, -1, -1});  // [B, N, D]
  auto tgt = torch::zeros_like(query_pos);
  std::vector<torch::Tensor> hs;  // decoder_norm of each layer's output, [B, N, D]
  const int64_t L = static_cast<int64_t>(decoder_layers->size());
  for (int64_t l = 0; l < L; ++l) {
    tgt = decoder_layers[l]->as<DetrDecoderLayer>()->forward(tgt, memory, pos, query_pos, key_bias);
    if (options_.aux_loss || l + 1 == L) hs.push_back(decoder_norm(tgt));
  }
  auto h_all = torch::stack(hs);                                                      // [L', B, N, D]
  auto logits = class_embed(h_all);                                                   // [L', B, N, C]
  auto boxes = torch::sigmoid(bbox_fc3(torch::relu(bbox_fc2(torch::relu(bbox_fc1(h_all))))));  // [L', B, N, 4]
  return torch::cat({logits, boxes}, -1);
}

DetrOutputs DETR::forward_detr(const torch::Tensor& inputs, const torch::Tensor& padding_mask) {
  return unpack_detr_outputs(forward_packed(inputs, padding_mask), options_.num_classes);
}

}  // namespace scenic::baselines::detr
