// ViT-style patch embedding, [B, C, H, W] -> tokens [B, N, D], as one GEMM.
//
// Scenic embeds patches with a Conv of kernel = stride = patch size ('VALID'). That
// convolution is a matrix product: each non-overlapping patch, flattened in the
// kernel's (C, ph, pw) order, times the kernel reshaped to [D, C * ph * pw]. Running it
// as that product (model::dense, so `gemm_backend` applies) skips the convolution
// library and the [B, D, gh, gw] -> [B, N, D] transpose after it, and keeps the
// parameters those of the Conv2d (`embedding.weight` [D, C, ph, pw], `embedding.bias`)
// so checkpoints and Flax weights load as before. Rows and columns a patch does not
// fill are dropped, as the 'VALID' convolution drops them.
#pragma once

#include <torch/nn/modules/conv.h>
#include <torch/types.h>

namespace scenic::model {

// `conv` applied to `images` [B, C, H, W] and flattened to tokens [B, gh * gw, D] in
// row-major patch order (conv(images).flatten(2).transpose(1, 2)). As a GEMM when the
// conv has kernel == stride, no padding, dilation 1 and one group; through the conv
// otherwise.
torch::Tensor embed_patches(const torch::nn::Conv2d& conv, const torch::Tensor& images);

}  // namespace scenic::model
