// DETR, the network (Scenic's projects/baselines/detr/model.py: `DETR`,
// `DETRTransformer`, `InputPosEmbeddingSine`, `QueryPosEmbedding`,
// `ObjectClassPredictor`, `BBoxCoordPredictor`; after Carion et al.'s PyTorch DETR).
//
//   inputs [B, 3, H, W] (NCHW) + padding_mask [B, H, W] (1 on real pixels)
//   -> `backbone`: Scenic's ResNet without head; its last stage (stage_4 for the usual
//      depths, as Scenic; shallower nets such as num_layers 8 give a finer map)
//   -> `input_proj` 1x1 conv to hidden_dim; the padding mask downsampled to the feature
//      map (nearest, jax.image.resize's half-pixel rule); DETR's normalized sine position
//      embedding of the mask
//   -> `transformer`: encoder (post-norm unless normalize_before, then a final
//      `encoder_norm`) and decoder over learned object queries (the decoder input is
//      zeros; the query embedding `query_embed` [N, D], N(0, 1), is the queries'
//      position embedding), the decoder's `decoder_norm` applied to every layer's output
//   -> `class_embed` Dense(num_classes) (class 0 = no-object, the batch's padding
//      label) and `bbox_embed` 3-layer MLP (relu) + sigmoid -> normalized cxcywh, both
//      applied to every decoder layer's output (the auxiliary outputs).
//
// Attention: position embeddings are added to the attention INPUTS of queries and keys
// (not values), with padded keys masked by a -1e9 logits bias, as DETR does. The FFN
// is Dense(mlp_dim) -> relu -> dropout -> Dense; residual dropout `dropout_rate`,
// attention-weight dropout `attention_dropout_rate`.
//
// Frozen backbone statistics: with `freeze_backbone_batch_stats` (default true, as
// Scenic's detr_config) the backbone's BatchNorms always run in eval mode (running
// statistics, never updated), whatever train() says. The backbone's own, lower learning
// rate is the optimizer's business: `optimizer_configs.param_groups` with regex
// '^backbone\.' (parameter names here are `backbone.stem_conv.weight`, ...).
//
// Network contract: model::Network::forward returns ONE tensor, so forward() packs
// every output: [L, B, N, C + 4], L = number of decoder layers with aux_loss (else 1),
// the LAST entry the final prediction; [..., :C] the class logits and [..., C:] the
// boxes. unpack_detr_outputs() gives them back as DetrOutputs. forward() assumes no
// padding; the DETR trainer calls forward_packed(inputs, padding_mask).
//
// Config keys (at the config's top level, as Scenic's DETRModel reads them):
// hidden_dim (512), num_queries (100), transformer_num_heads (8),
// transformer_num_encoder_layers (6), transformer_num_decoder_layers (6),
// transformer_qkv_dim (= hidden_dim; must equal it), transformer_mlp_dim (2048),
// transformer_normalize_before (false), backbone_num_filters (64),
// backbone_num_layers (50), dropout_rate (0), attention_dropout_rate (0),
// aux_loss (false), freeze_backbone_batch_stats (true); num_classes from the dataset.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <memory>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/model_lib/layers/attention_layers.h"
#include "scenic/projects/baselines/resnet.h"

namespace scenic::baselines::detr {

struct DetrOptions {
  int64_t num_classes = 0;  // the dataset's, class 0 = no-object / padding
  int64_t in_channels = 3;
  int64_t hidden_dim = 512;
  int64_t num_queries = 100;
  int64_t num_heads = 8;
  int64_t num_encoder_layers = 6;
  int64_t num_decoder_layers = 6;
  int64_t qkv_dim = 512;
  int64_t mlp_dim = 2048;
  bool normalize_before = false;
  int64_t backbone_num_filters = 64;
  int64_t backbone_num_layers = 50;
  double dropout_rate = 0.0;
  double attention_dropout_rate = 0.0;
  bool aux_loss = false;
  bool freeze_backbone_batch_stats = true;

  static DetrOptions from_config(const common::ConfigDict& config, const dataset::MetaData& meta);
};

// DETR's PositionEmbeddingSine(normalize=True): mask [B, h, w] (1 real) ->
// [B, h * w, 2 * num_pos_feats], channels [pos_y, pos_x], each interleaved
// (sin(e / t_0), cos(e / t_0), sin(e / t_1), cos(e / t_1), ...) with
// t_i = temperature^(2 i / num_pos_feats), e the cumulative count of real pixels along
// the axis, normalized: e / (e_last + 1e-6) * scale.
torch::Tensor sine_position_embedding(const torch::Tensor& mask, int64_t num_pos_feats,
                                      double temperature = 1e4, bool normalize = true,
                                      double scale = 2.0 * 3.14159265358979323846);

// Nearest resize of a mask [B, H, W] to [B, h, w] with jax.image.resize's rule: output
// pixel i reads input floor((i + 0.5) * H / h).
torch::Tensor downsample_padding_mask(const torch::Tensor& mask, int64_t h, int64_t w);

struct DetrOutputs {
  torch::Tensor pred_logits;  // [B, N, C]
  torch::Tensor pred_boxes;   // [B, N, 4] normalized cxcywh
  // Earlier decoder layers, first to last-but-one (empty without aux_loss).
  std::vector<std::pair<torch::Tensor, torch::Tensor>> aux_outputs;  // (logits, boxes)
};

// [L, B, N, C + 4] -> outputs; throws scenic::Error on a bad shape.
DetrOutputs unpack_detr_outputs(const torch::Tensor& packed, int64_t num_classes);

class DetrEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit DetrEncoderLayerImpl(const DetrOptions& o);
  // x, pos [B, S, D]; key_bias [B, S] (0 real, -1e9 padding) -> [B, S, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& key_bias);

  model::MultiHeadAttention self_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  bool normalize_before_;
  double dropout_;
};
TORCH_MODULE(DetrEncoderLayer);

class DetrDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DetrDecoderLayerImpl(const DetrOptions& o);
  // tgt, query_pos [B, N, D]; memory, pos [B, S, D]; key_bias [B, S] -> [B, N, D].
  torch::Tensor forward(const torch::Tensor& tgt, const torch::Tensor& memory, const torch::Tensor& pos,
                        const torch::Tensor& query_pos, const torch::Tensor& key_bias);

  model::MultiHeadAttention self_attn{nullptr}, cross_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};

 private:
  bool normalize_before_;
  double dropout_;
};
TORCH_MODULE(DetrDecoderLayer);

class DETR : public model::Network {
 public:
  explicit DETR(const DetrOptions& options);
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& config,
                                                     const dataset::MetaData& meta);

  // No padding assumed; packed [L, B, N, C + 4] (see the header comment).
  torch::Tensor forward(const torch::Tensor& inputs) override;
  // inputs [B, C_in, H, W], padding_mask [B, H, W] or undefined (no padding).
  torch::Tensor forward_packed(const torch::Tensor& inputs, const torch::Tensor& padding_mask);
  DetrOutputs forward_detr(const torch::Tensor& inputs, const torch::Tensor& padding_mask);

  // Module::train, keeping the backbone in eval mode when its statistics are frozen.
  void train(bool on = true) override;

  const DetrOptions& options() const { return options_; }

  std::shared_ptr<ResNet> backbone;
  torch::nn::Conv2d input_proj{nullptr};
  torch::nn::ModuleList encoder_layers, decoder_layers;
  torch::nn::LayerNorm encoder_norm{nullptr}, decoder_norm{nullptr};
  torch::Tensor query_embed;  // [N, D]
  torch::nn::Linear class_embed{nullptr};
  torch::nn::Linear bbox_fc1{nullptr}, bbox_fc2{nullptr}, bbox_fc3{nullptr};

 private:
  DetrOptions options_;
};

}  // namespace scenic::baselines::detr
