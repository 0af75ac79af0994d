// Dot-product attention for short sequences on the CPU, one fused kernel per head.
//
// ATen's CPU attention (the flash kernel behind scaled_dot_product_attention, or the
// matmul + softmax + matmul it falls back to) calls MKL for each block of each head; at
// ViT sizes (197 tokens, 64 dims per head) MKL packs operands as large as the product
// itself, and both paths reach ~55 G multiply-adds/s on one core of a 117 peak: 12% of a
// ViT-S/16 training step. Here each head's products run in register-blocked AVX-512
// loops that read the operands where they lie (only k and v are transposed, once per
// head, into a small buffer), ~100 G multiply-adds/s:
//   forward   S = q k^T, P = softmax(S / sqrt(d)) row by row, o = P v;
//   backward  from the saved P (no recomputation): dP = do v^T,
//             dS = P (dP - rowsum(P dP)) / sqrt(d), dq = dS k, dk = dS^T q, dv = P^T do.
// Heads are split over ATen's intra-op threads (inline inside a batch-split slice).
//
// fused_attention_applies says where it runs: 4-D CPU float32 q [B, H, N, d], k [B, H, M,
// d], v [B, H, M, dv] with the last dim contiguous (other strides free: views of a fused
// qkv projection are read in place), d and dv <= 256, N M <= 256 x 256 (when a gradient
// is wanted P is kept for the backward, B H N M floats, as ATen's matmul path keeps it;
// longer sequences belong to ATen's flash kernel), no autocast, a CPU with AVX-512F.
// Masks and dropout are not supported (the caller keeps ATen's attention for those).
#pragma once

#include <torch/types.h>

namespace scenic::model {

bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

// softmax(q k^T / sqrt(d)) v: [B, H, N, dv] (its memory is [B, N, H, dv], so that the
// caller's transpose back to tokens-major is contiguous). Autograd: q, k, v (first order;
// each gradient in its input's layout where that is dense, so no copy on the way back).
// Throws scenic::Error naming the shapes where fused_attention_applies is false.
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace scenic::model
