// Fused bias + tanh-GELU: gelu(y + b) in one pass over y, with its own backward.
//
// Flax's `nn.gelu` (Scenic's MlpBlock activation) is the tanh approximation,
//   gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3),
// which ATen evaluates with a vector tanh: on a 2-core AVX2 CPU that pass costs a third
// of the GEMM before it (bench/README.md, "Where the time goes"). Here the same function
// is written as x * sigmoid(2u) = x / (1 + exp(-2u)) with a vector exp (relative error
// ~2e-7, so results agree with torch::gelu(x, "tanh") to float rounding), in AVX-512 where
// the CPU has it and AVX2 + FMA otherwise, and the
// Dense layer's bias is added in the same pass, so the Dense runs as a plain GEMM (no
// copy of the broadcast bias into the output first, which is how addmm works on CPU).
//
// bias_gelu(y, b) returns gelu(y + b) for y [..., N] and b [N] (b may be undefined). The
// fused kernels run for contiguous float32 CPU tensors on a CPU with AVX2 and FMA; every
// other case (CUDA, bf16/f64, no AVX2) computes torch::gelu(y + b, "tanh"), so the
// function is a drop-in everywhere. Autograd: gradients for y and b (the backward
// recomputes y + b instead of storing it, and sums the bias gradient in the same pass).
// Rows are split over ATen's intra-op threads (inline within a parallel region).
#pragma once

#include <torch/types.h>

#include <string>

namespace scenic::model {

torch::Tensor bias_gelu(const torch::Tensor& y, const torch::Tensor& b);

// Whether bias_gelu would use the fused kernels for these arguments (for tests and
// benchmarks).
bool bias_gelu_is_fused(const torch::Tensor& y, const torch::Tensor& b);

// The kernels on raw rows (exposed for tests): out[r, j] = gelu(y[r, j] + b[j]),
// gy[r, j] = g[r, j] * gelu'(y[r, j] + b[j]) and, where gb is not null, gb[j] = sum_r
// gy[r, j] (float sums per 64-row block, added in double: the same for any thread
// count); b may be null. Throw scenic::Error where no vector kernel runs (no AVX2+FMA).
void bias_gelu_forward_kernel(const float* y, const float* b, float* out, int64_t rows, int64_t cols);
void bias_gelu_backward_kernel(const float* g, const float* y, const float* b, float* gy, float* gb, int64_t rows,
                               int64_t cols);

// The vector kernels in use, "avx512" | "avx2" | "none" (the best this CPU runs, at
// start-up), and a switch for tests: bias_gelu_use_isa("avx2") runs the AVX2 kernels on
// an AVX-512 CPU; "best" restores the default. Returns false (and changes nothing) where
// the CPU lacks that instruction set; throws scenic::Error for an unknown name.
std::string bias_gelu_isa();
// Whether the kernels split rows over threads (built with OpenMP, as batch_norm_act.h).
bool bias_gelu_splits_rows();
bool bias_gelu_use_isa(const std::string& isa);

}  // namespace scenic::model
