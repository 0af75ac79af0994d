// The Dense (fully connected) product y = x W^T + b, with a choice of CPU GEMM library.
//
// LibTorch runs an fp32 `linear`/`matmul` on the CPU through MKL's sgemm. MKL picks its
// kernels by CPU vendor: on AMD CPUs it runs its generic AVX2 code even where the CPU
// has full-width AVX-512, so on an AMD EPYC (Zen 5) core it reaches ~50 G multiply-adds/s
// where the core can do ~125. LibTorch also ships oneDNN, which picks kernels by
// instruction set, and exposes its fp32 inner product as the operator
// `mkldnn::_linear_pointwise` (what torch.compile's CPU backend calls). On that core it
// runs the Mixer and ViT GEMMs at 112-125 G multiply-adds/s (bench/README.md).
//
// `dense(x, W, b)` is `torch::linear` with the backend set by `set_gemm_backend`:
//   kAten:   torch::linear (MKL on the CPU, cuBLAS on CUDA): the process-wide default;
//   kOneDnn: for float32 CPU tensors, oneDNN for the forward and for both backward
//            products (dX = dY W, dW = dY^T X), through our autograd function; any other
//            tensor (CUDA, bf16, f64), and any call under CPU autocast, still goes to
//            torch::linear.
// Both are IEEE fp32 with fp32 accumulation; they differ in summation order only
// (~1e-6 relative), so switching backend changes results at float rounding.
//
// Config key (top level): `gemm_backend: auto | aten | onednn`, read by
// `train::set_threads` with `num_threads`. `auto` (the default) picks onednn on AMD CPUs,
// where MKL falls back to its generic kernels, when this LibTorch has the oneDNN operator,
// and aten everywhere else (MKL is tuned for Intel; other CPUs were not measured). The
// process-wide setting before any `set_gemm_backend` call is aten.
#pragma once

#include <torch/types.h>

#include <string>

namespace scenic::model {

enum class GemmBackend { kAten, kOneDnn };

// Process-wide; set once at start-up (before building networks and stepping).
void set_gemm_backend(GemmBackend backend);
GemmBackend gemm_backend();

// "auto" | "aten" | "onednn"; throws scenic::Error naming `key` and the accepted values,
// and for "onednn" when this LibTorch has no mkldnn::_linear_pointwise operator.
GemmBackend parse_gemm_backend(const std::string& value, const std::string& key = "gemm_backend");

// What `auto` resolves to for a CPU vendor string (CPUID's, e.g. "AuthenticAMD",
// "GenuineIntel"; "" off x86) and oneDNN's availability: onednn only for AMD with oneDNN.
GemmBackend auto_gemm_backend(const std::string& cpu_vendor, bool onednn_available);

// This machine's CPUID vendor string, "" where there is none (not x86).
std::string cpu_vendor();

const char* gemm_backend_name(GemmBackend backend);  // "aten" | "onednn"

// Whether LibTorch provides the oneDNN operator (built with MKLDNN).
bool onednn_linear_available();

// x [..., K], w [N, K], b [N] or undefined -> [..., N]; differentiable in all three.
torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

// residual + dense(x, w, b), the residual connection's add folded into the GEMM: on the
// aten backend for float32 CPU tensors (outside autocast) the product accumulates into
// (residual + b) in place (addmm with beta = 1), instead of copying the broadcast bias
// into a fresh output and adding the residual in a separate pass. residual must have
// dense(x, w, b)'s shape; the result is a new tensor (residual is not written).
// Differentiable in all four; elsewhere it is dense(x, w, b) + residual.
torch::Tensor dense_add(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                        const torch::Tensor& residual);

// The oneDNN path whatever the backend setting (tests, benchmarks); requires float32
// CPU tensors and onednn_linear_available().
torch::Tensor onednn_dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

}  // namespace scenic::model
