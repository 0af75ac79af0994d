// Loading weights trained elsewhere: Scenic/Flax msgpack checkpoints, big_vision/AugReg
// .npz files and PyTorch/timm safetensors, and exporting ours to them.
//
// Mirrors Scenic's pretrain_utils.restore_pretrained_checkpoint + the model-specific
// init_from_train_state (vit.init_vit_from_train_state/_merge_params, load_augreg_params).
//
// Flax trees map onto our modules by name, because our modules carry Flax's names
// ('Transformer.encoderblock_0.LayerNorm_0.weight' <- 'Transformer/encoderblock_0/
// LayerNorm_0/scale'); the layout changes follow the owning module's type:
//   Linear weight [out, in]      <- Dense kernel [in, out] (transposed)
//   attention q/k/v [H*d, D]     <- DenseGeneral kernel [D, H, d]; bias [H, d] flattened
//   attention out   [D, H*d]     <- DenseGeneral kernel [H, d, D]
//   Conv2d weight OIHW           <- Conv kernel HWIO
//   BiT's StdConv weight OIHW    <- StdConv kernel HWIO (standardized when used, not here)
//   LayerNorm/GroupNorm/BatchNorm weight <- scale (old Linen [1, 1, 1, C] norm parameters
//   are squeezed); BatchNorm running_mean/var and FlaxBatchNorm mean/var <- the
//   `batch_stats` collection's mean/var (Scenic's model_state: `model_state/batch_stats/`,
//   `model_state/` or top-level `batch_stats/`)
// Names have aliases for the other ViT naming schemes: Flax Linen's per-class counters
// (MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0, what Scenic's vit.py
// produces), the original ViT/AugReg names (_1, _2, _3, which our modules use), `head`
// for `output_projection` and big_vision's top-level `pos_embedding`; and big_vision's
// Mixer names (`stem`, `MixerBlock_i`, `pre_head_layer_norm`, `head`). ResNet and BiT
// use Scenic's names, which big_vision's bit.py shares (but `head`).
// The tree's root is found by itself: `params/` (Scenic's TrainState), `optimizer/target/`
// (old flax.optim states), `opt/target/` (big_vision checkpoints, as Scenic's
// convert_big_vision_to_scenic_checkpoint reads them), `params/params/` (a variables
// dict), or the bare tree.
//
// timm ViT safetensors map key by key (patch_embed.proj, cls_token, pos_embed,
// blocks.i.{norm1, attn.qkv (q, k, v stacked on dim 0), attn.proj, norm2, mlp.fc1,
// mlp.fc2}, norm, pre_logits.fc, head). torchvision/timm ResNet safetensors go through
// weight_import_resnet.h. Other safetensors files are read by our own parameter names
// (what export_native writes), for any network.
//
// Transfer surgery, as Scenic's ViT loader: a position embedding of another grid is
// resized (scipy.ndimage.zoom(order=1), class token kept, dropped or taken from the
// model as the two sides have it); a head whose shape differs (another num_classes) keeps
// the model's fresh initialization; `pre_logits` absent from the model is dropped.
// Any other shape mismatch throws a scenic::Error naming the parameter.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "scenic/common_lib/npz.h"
#include "scenic/projects/baselines/vit.h"

namespace scenic::baselines {

struct WeightImportOptions {
  // false: never load the classifier head (Scenic's init_vit_from_train_state).
  bool load_head = true;
  // A head of another shape (num_classes) keeps the fresh initialization; false: error.
  bool reinit_head_on_mismatch = true;
  bool resize_posemb = true;
  // Parameters the checkpoint lacks keep their initialization; false: error.
  bool allow_missing = false;
  // Patch grids (h, w) when they are not square.
  std::optional<std::array<int64_t, 2>> source_grid, target_grid;
};

struct WeightImportReport {
  std::vector<std::string> loaded;   // our parameter names
  std::vector<std::string> resized;  // "name: [1, 17, 32] -> [1, 37, 32]" (also in loaded)
  std::vector<std::string> skipped;  // "name: reason" (kept their initialization)
  std::vector<std::string> unused;   // checkpoint entries nothing took
  std::string summary() const;       // one line per list, for the log
};

// Applies a Flax parameter tree (flat, '/'-joined names, any root) to `network`.
WeightImportReport import_flax_tree(torch::nn::Module& network, const common::TensorMap& tree,
                                    const WeightImportOptions& options = {});
// Applies a timm ViT state_dict to our ViT.
WeightImportReport import_timm_vit(ViT& vit, const common::TensorMap& state,
                                   const WeightImportOptions& options = {});
// Applies a state keyed by our own parameter names ('Transformer.encoder_norm.weight').
WeightImportReport import_native(torch::nn::Module& network, const common::TensorMap& state,
                                 const WeightImportOptions& options = {});

// Our parameters (and BatchNorm statistics, under `batch_stats/`) as a Flax tree with
// our module names and Flax layouts, rooted at `params/` (a Scenic checkpoint's root).
common::TensorMap export_flax_tree(torch::nn::Module& network);
common::TensorMap export_timm_vit(ViT& vit);
common::TensorMap export_native(torch::nn::Module& network);  // parameters and buffers

// "auto" (by content: zip -> npz, safetensors header -> safetensors, else msgpack),
// "flax" (msgpack checkpoint file), "npz" (big_vision/AugReg) or "safetensors".
WeightImportReport init_from_checkpoint(torch::nn::Module& network, const std::string& path,
                                        const std::string& format = "auto",
                                        const WeightImportOptions& options = {});

}  // namespace scenic::baselines
