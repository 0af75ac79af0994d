// Batch norm fused with what follows it in a ResNet: relu?(BN(x) + residual?).
//
// A bottleneck block runs BN -> ReLU twice and BN -> add shortcut -> ReLU once, per
// block. In ATen those are separate passes over the activation (two for the batch
// statistics, one to normalize, one per add and ReLU), and their backward passes again
// (the ReLU's mask, then the batch norm's two). Here, for a channels-last float32 CPU
// tensor (rows of C channels):
//   forward   one pass for the statistics (sums of x - x[0], per channel: stable where
//             the mean is large against the spread), one pass for
//             y = relu?(x * a + b + residual?), a = scale / sqrt(var + eps),
//             b = bias - mean * a;
//   backward  one pass for the per-channel sums of g' and g' (x - mean), where g' is the
//             output gradient behind the ReLU's mask, one for dx. Without a residual the
//             mask is recomputed from x (x * a + b > 0, the same float operations as the
//             forward, so the same mask), so the ReLU costs no pass at all; with one, the
//             mask comes from the saved output and g' is the residual's gradient.
// Sums are float per 64-row block, added in double across blocks: the same result for
// any thread count. Rows are split over ATen's intra-op threads (the file is built with
// OpenMP against LibTorch's runtime, CMakeLists.txt; inline inside a parallel region),
// and the row loops are compiled once per instruction set (AVX-512, AVX2, baseline),
// picked when the program loads.
//
// Every other case (CUDA, other dtypes or layouts, autocast) runs ATen's
// native_batch_norm, the add and torch::relu: the functions are drop-ins everywhere.
// The batch statistics are returned so the caller can update its running buffers with
// the semantics it wants (Flax's biased variance, resnet.h). Double backward is not
// supported on the fused path (it throws).
#pragma once

#include <torch/types.h>

namespace scenic::model {

struct BatchNormActOutput {
  torch::Tensor y;       // relu?(BN(x) + residual?), x's shape and memory format
  torch::Tensor mean;    // [C] batch mean (float32)
  torch::Tensor invstd;  // [C] 1 / sqrt(biased batch variance + eps) (float32)
};

// Training mode: normalizes x [N, C, ...] with its batch statistics over all dims but 1;
// scale and bias [C]; residual undefined or x's shape. Autograd: x, scale, bias, residual.
BatchNormActOutput batch_norm_act_train(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                                        double eps, const torch::Tensor& residual, bool relu);

// Eval mode: normalizes with the given statistics (mean, var [C]). Fused (one pass, no
// autograd graph) when no gradient is needed; otherwise ATen's batch_norm, add, relu.
torch::Tensor batch_norm_act_eval(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                                  const torch::Tensor& mean, const torch::Tensor& var, double eps,
                                  const torch::Tensor& residual, bool relu);

// Whether the fused kernels run for x (and residual): a channels-last 4-D float32 CPU
// tensor with at least one row, no autocast. For tests and benchmarks.
bool batch_norm_act_is_fused(const torch::Tensor& x, const torch::Tensor& residual);

// Whether the kernels split rows over threads: this file was built with OpenMP (without
// it at::parallel_for, a header template, runs every range on the calling thread).
bool batch_norm_act_splits_rows();

}  // namespace scenic::model
