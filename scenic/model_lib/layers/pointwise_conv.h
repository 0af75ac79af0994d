// A 1x1 convolution as one matrix product where its weights outweigh its activations.
//
// On the CPU, ATen sends a channels-last float32 convolution to oneDNN, whose kernels
// want the weights in a blocked layout: every call reorders the [C_out, C_in] weights
// into it, and in training reorders the weight gradient back, each a pass over the
// weights. Where the activations are small against the weights (ResNet's last two stages
// at a small batch: 7x7 or 14x14 positions, up to 2048 x 1024 weights) those passes
// cost more than the product gains from the layout. A channels-last 1x1 convolution is a
// plain product, y[N H W, C_out] = x[N H W, C_in] w[C_out, C_in]^T (the stride a slice
// of x first), which MKL runs on the weights as they are, forward and backward.
//
// conv1x1 takes that path when x is a 4-D channels-last float32 CPU tensor (no autocast)
// and the weights hold at least a tenth as many numbers as the input and output
// activations together: C_in C_out >= (N H' W') (C_in + C_out) / 10. The threshold is
// where the product overtook oneDNN on an Intel Xeon (AVX-512, two threads; forward +
// backward of ResNet-50's 1x1 layers at batch 8, bench/README.md 2026-12-07, fifth
// session). Elsewhere it is torch::conv2d. Same values either way up to the order of
// the sums; autograd through both.
#pragma once

#include <torch/types.h>

namespace scenic::model {

enum class Conv1x1Path { kAuto, kGemm, kConv };

// y = conv2d(x, weight, bias, stride) for weight [C_out, C_in, 1, 1], bias [C_out] or
// undefined, no padding. kAuto: the rule above; kGemm forces the product where x is a
// 4-D channels-last tensor (for tests), kConv forces torch::conv2d.
torch::Tensor conv1x1(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                      int64_t stride, Conv1x1Path path = Conv1x1Path::kAuto);

// Whether kAuto takes the product for these arguments.
bool conv1x1_uses_gemm(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride);

}  // namespace scenic::model
