// ResNet v1.5 (Scenic's projects/baselines/resnet.py), plus the Flax-semantics
// BatchNorm it and U-Net use.
//
// Architecture as Scenic codes it: stem `stem_conv` 7x7/2 pad 3 no bias -> `init_bn`
// -> relu -> max-pool 3x3/2 pad 1; four stages of `ResidualBlock_k` (Flax auto-naming,
// k counting blocks over the whole net); stage i > 0 starts with stride 2 on the 3x3 conv
// (v1.5); global average pooling -> `pre_logits` (identity) -> `output_projection` Dense
// (lecun_normal kernel, zero bias). Every conv is bias-free and followed by BatchNorm
// (Flax momentum 0.9, eps 1e-5); the last BN of each block (`bn3`) starts with scale 0,
// so every block starts as the identity on its shortcut.
//
// Scenic's projection rule is `C_in != filters * 4 or stride != 1` even for basic blocks,
// whose output has `filters` channels: so *every* basic block (ResNet-9/18/34) has a
// 1x1 `proj_conv` + `proj_bn` shortcut, unlike torchvision's. Bottleneck nets (26, 50,
// 101, ...) therefore match torchvision's v1.5 counts exactly (ResNet-50: 25,557,032),
// basic ones have more (ResNet-18: 12,043,816 vs torchvision's 11,689,512).
//
// Config keys (Scenic's, which sit at the top level of the config, not under `model:`):
// `num_filters`, `num_layers` (5, 8, 11, 14, 9, 18, 26, 34, 50, 101, 152, 200) and
// `model_dtype_str` (float32 only). The registration also accepts them under `model:`.
// Inputs are NCHW.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::baselines {

struct FlaxBatchNormOptions {
  // Flax convention: running = momentum * running + (1 - momentum) * batch
  // (Flax's nn.BatchNorm default 0.99; Scenic's ResNet uses 0.9).
  double momentum = 0.99;
  double epsilon = 1e-5;
  double scale_init = 1.0;  // 0 for the last BN of a residual block
};

// BatchNorm over dim 1 of [B, C, ...] with Flax's semantics and names: parameters
// `scale`, `bias` [C]; buffers `mean`, `var` [C] (Flax's batch_stats) starting at 0 and 1.
// Training (is_training()) normalizes with the batch mean and *biased* variance and
// updates the buffers with the biased variance (torch's BatchNorm stores the unbiased
// one); eval uses the buffers and changes nothing.
class FlaxBatchNormImpl : public torch::nn::Module {
 public:
  explicit FlaxBatchNormImpl(int64_t num_features, FlaxBatchNormOptions options = {});
  // relu?(BN(x) + residual?), fused into the batch norm's passes where it can be
  // (model_lib/layers/batch_norm_act.h).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual = {}, bool relu = false);

  torch::Tensor scale, bias, mean, var;

 private:
  FlaxBatchNormOptions options_;
};
TORCH_MODULE(FlaxBatchNorm);

// ([blocks per stage], bottleneck) for `num_layers` (Scenic's BLOCK_SIZE_OPTIONS, shared
// by BiT-ResNet); throws scenic::Error naming the supported depths otherwise.
std::pair<std::vector<int64_t>, bool> resnet_block_sizes(int64_t num_layers);

// One v1.5 block: [proj_conv 1x1/s + proj_bn] shortcut; bottleneck: conv1 1x1, bn1,
// relu, conv2 3x3/s, bn2, relu, conv3 1x1 (4 * filters), bn3; basic: conv2 3x3/s, bn2,
// relu, conv3 3x3 (filters), bn3; then relu(shortcut + y). The 1x1 convolutions go
// through model::conv1x1 (a matrix product where the weights outweigh the activations).
class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t in_channels, int64_t filters, int64_t stride, bool bottleneck);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C_in, H, W] -> [B, C_out, H/s, W/s]
  int64_t out_channels() const { return out_channels_; }

  torch::nn::Conv2d proj_conv{nullptr}, conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  FlaxBatchNorm proj_bn{nullptr}, bn1{nullptr}, bn2{nullptr}, bn3{nullptr};

 private:
  int64_t out_channels_;
};
TORCH_MODULE(ResidualBlock);

struct ResNetOptions {
  int64_t num_filters = 64;
  int64_t num_layers = 50;
  int64_t in_channels = 3;
  int64_t num_classes = 1000;  // <= 0: no head (forward returns the pooled features)
  // Convolution weights and activations in channels-last (NHWC) memory: same shapes and
  // values, but oneDNN's convolutions run without converting layouts around every conv
  // (ResNet-50 step on 2 CPU cores: train 1.15x, eval 1.2x; bench/README.md). Config
  // key `channels_last` (default true).
  bool channels_last = true;
};

class ResNet : public model::Network {
 public:
  explicit ResNet(const ResNetOptions& options);
  // Keys `num_filters`, `num_layers` of `c` (the config root or its `model:` view).
  static std::shared_ptr<model::Network> from_config(const common::ConfigDict& c,
                                                     const dataset::MetaData& meta);

  torch::Tensor forward(const torch::Tensor& inputs) override;  // [B, C, H, W] -> [B, K]
  // Scenic's num_outputs=None output: `stem` [B, F, H/4, W/4] and `stage_1`..`stage_n`.
  std::map<std::string, torch::Tensor> forward_features(const torch::Tensor& inputs);

  torch::nn::Conv2d stem_conv{nullptr};
  FlaxBatchNorm init_bn{nullptr};
  std::vector<std::vector<ResidualBlock>> stages;  // registered as ResidualBlock_k
  torch::nn::Linear output_projection{nullptr};

 private:
  ResNetOptions options_;
};

// Scenic's _get_default_configs_for_testing: num_filters 16, num_layers 5.
extern const char* const kResNetDefaultConfig;

}  // namespace scenic::baselines
