// Fused CPU attention for short sequences; see fused_attention.h.
#include "scenic/model_lib/layers/fused_attention.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "scenic/common_lib/errors.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include "scenic/model_lib/layers/simd.h"
#define SCENIC_ATTENTION_X86 1
#endif

namespace scenic::model {
namespace {

// Queries x keys per head at most 256 x 256: training keeps P (B H N M floats) for the
// backward, as ATen's matmul path does; longer sequences go to ATen's flash kernel, which
// keeps only a row statistic.
constexpr int64_t kMaxScores = 256 * 256, kMaxDepth = 256;

#ifdef SCENIC_ATTENTION_X86
__mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u); }

// C[MR x 16 NV] = A[MR x kdim] B[kdim x 16 NV]: A's element (i, k) at a[i rs + k cs] (so
// a row-major or a transposed operand, broadcast one element at a time), B's row k at
// b + k ldb, its last vector masked by `last`; MR x NV accumulators in registers.
template <int MR, int NV>
__attribute__((target("avx512f"))) inline void tile(const float* a, int64_t rs, int64_t cs, const float* b,
                                                    int64_t ldb, float* c, int64_t ldc, int64_t kdim,
                                                    __mmask16 last) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kdim; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, b + k * ldb + 16 * v) : _mm512_loadu_ps(b + k * ldb + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * rs + k * cs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1)
        _mm512_mask_storeu_ps(c + i * ldc + 16 * v, last, acc[i][v]);
      else
        _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
    }
}

// The last rows < MR of a strip, one tile of exactly that height.
template <int NV, int MR>
__attribute__((target("avx512f"))) void tail_rows(const float* a, int64_t rs, int64_t cs, const float* b,
                                                  int64_t ldb, float* c, int64_t ldc, int64_t kdim, __mmask16 last,
                                                  int64_t rows) {
  if constexpr (MR > 1) {
    if (rows == MR) return tile<MR, NV>(a, rs, cs, b, ldb, c, ldc, kdim, last);
    return tail_rows<NV, MR - 1>(a, rs, cs, b, ldb, c, ldc, kdim, last, rows);
  } else {
    if (rows == 1) tile<1, NV>(a, rs, cs, b, ldb, c, ldc, kdim, last);
  }
}

constexpr int kRows = 14;  // 14 rows x 2 vectors: 28 accumulators and 2 B vectors of the 32 registers

// C[m x n] = A[m x kdim] B[kdim x n] (A as in `tile`, B row-major with ldb, C with ldc),
// in strips of 32 columns (16 for a last strip of <= 16).
__attribute__((target("avx512f"))) void product(const float* a, int64_t rs, int64_t cs, const float* b, int64_t ldb,
                                                float* c, int64_t ldc, int64_t m, int64_t n, int64_t kdim) {
  for (int64_t j = 0; j < n; j += 32) {
    const int64_t w = std::min<int64_t>(32, n - j);
    int64_t i = 0;
    if (w > 16) {
      const __mmask16 last = tail_mask(w - 16);
      for (; i + kRows <= m; i += kRows) tile<kRows, 2>(a + i * rs, rs, cs, b + j, ldb, c + i * ldc + j, ldc, kdim, last);
      if (i < m) tail_rows<2, kRows - 1>(a + i * rs, rs, cs, b + j, ldb, c + i * ldc + j, ldc, kdim, last, m - i);
    } else {
      const __mmask16 last = tail_mask(w);
      for (; i + kRows <= m; i += kRows) tile<kRows, 1>(a + i * rs, rs, cs, b + j, ldb, c + i * ldc + j, ldc, kdim, last);
      if (i < m) tail_rows<1, kRows - 1>(a + i * rs, rs, cs, b + j, ldb, c + i * ldc + j, ldc, kdim, last, m - i);
    }
  }
}

// dst[c][r] = src[r][c] for r < rows, c < cols (src rows at ld_src, dst rows at ld_dst).
void transpose(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst, int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
}

__attribute__((target("avx512f"))) float horizontal_max(__m512 x) { return _mm512_reduce_max_ps(x); }

// In place: s = softmax(scale s) over the row's n entries. exp's argument is clamped at
// -87 from below only (max(-87, NaN) keeps the NaN, so a NaN logit gives a NaN row).
__attribute__((target("avx512f"))) void softmax_row(float* s, int64_t n, float scale) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, s + j));
  }
  const __m512 shift = _mm512_set1_ps(-scale * horizontal_max(mx));
  const __m512 sc = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-87.f);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 z = _mm512_max_ps(lo, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s + j), sc, shift));
    const __m512 e = _mm512_maskz_mov_ps(m, simd::exp_avx512(z));
    sum = _mm512_add_ps(sum, e);
    _mm512_mask_storeu_ps(s + j, m, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    _mm512_mask_storeu_ps(s + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), inv));
  }
}

// In place over a row: ds = p (ds - sum(p ds)) scale, ds holding dP on entry.
__attribute__((target("avx512f"))) void softmax_grad_row(const float* p, float* ds, int64_t n, float scale) {
  __m512 dot = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p + j), _mm512_maskz_loadu_ps(m, ds + j), dot);
  }
  const __m512 d = _mm512_set1_ps(_mm512_reduce_add_ps(dot)), sc = _mm512_set1_ps(scale);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 g = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, ds + j), d);
    _mm512_mask_storeu_ps(ds + j, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j), g), sc));
  }
}
#endif  // SCENIC_ATTENTION_X86

int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }

// One head's operands: pointers at [b, h] and the row stride (the last dim is contiguous).
struct Head {
  float* p;
  int64_t ld;
};
Head head(const torch::Tensor& t, int64_t bh, int64_t heads) {
  return {t.data_ptr<float>() + (bh / heads) * t.stride(0) + (bh % heads) * t.stride(1), t.stride(2)};
}

std::string shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  std::ostringstream s;
  s << "q " << q.sizes() << " strides " << q.strides() << ", k " << k.sizes() << " strides " << k.strides()
    << ", v " << v.sizes() << " strides " << v.strides();
  return s.str();
}

// Returns o ([B, H, N, dv], memory [B, N, H, dv]) and, with keep_p, P ([B, H, N, M]);
// without, each head's P lives in a per-thread buffer.
std::pair<torch::Tensor, torch::Tensor> forward_impl(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v, bool keep_p) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), m = k.size(2), dv = v.size(3);
  auto o = torch::empty({b, n, h, dv}, q.options()).permute({0, 2, 1, 3});
  torch::Tensor p = keep_p ? torch::empty({b, h, n, m}, q.options()) : torch::Tensor();
#ifdef SCENIC_ATTENTION_X86
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  float* po = o.data_ptr<float>();
  float* pp = keep_p ? p.data_ptr<float>() : nullptr;
  at::parallel_for(0, b * h, 1, [&](int64_t begin, int64_t end) {
    const int64_t mp = round_up16(m);
    std::vector<float> kt(d * mp), scratch(keep_p ? 0 : n * m);
    for (int64_t bh = begin; bh < end; ++bh) {
      const Head qh = head(q, bh, h), kh = head(k, bh, h), vh = head(v, bh, h);
      float* ph = keep_p ? pp + bh * n * m : scratch.data();
      float* oh = po + (bh / h) * o.stride(0) + (bh % h) * o.stride(1);
      transpose(kh.p, kh.ld, m, d, kt.data(), mp);
      product(qh.p, qh.ld, 1, kt.data(), mp, ph, m, n, m, d);  // S = q k^T
      for (int64_t i = 0; i < n; ++i) softmax_row(ph + i * m, m, scale);
      product(ph, m, 1, vh.p, vh.ld, oh, o.stride(2), n, dv, m);  // o = P v
    }
  });
#endif
  return {o, p};
}

// A tensor of t's shape in t's layout where that is dense and keeps the last dim
// contiguous, else contiguous.
torch::Tensor grad_like(const torch::Tensor& t) {
  auto g = torch::empty_like(t);
  return g.stride(3) == 1 ? g : torch::empty(t.sizes(), t.options());
}

std::vector<torch::Tensor> backward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                         const torch::Tensor& p, torch::Tensor dout) {
  const int64_t b = q.size(0), h = q.size(1), n = q.size(2), d = q.size(3), m = k.size(2), dv = v.size(3);
  if (dout.stride(3) != 1) dout = dout.contiguous();
  // Each gradient in its input's layout where that is dense (a head-major view of a
  // tokens-major projection, as in ViT): autograd's way back through the caller's
  // transpose and reshape is then a view, not a copy.
  auto dq = grad_like(q), dk = grad_like(k), dvv = grad_like(v);
#ifdef SCENIC_ATTENTION_X86
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const float* pp = p.data_ptr<float>();
  at::parallel_for(0, b * h, 1, [&](int64_t begin, int64_t end) {
    const int64_t mp = round_up16(m);
    std::vector<float> vt(dv * mp), ds(n * mp);
    for (int64_t bh = begin; bh < end; ++bh) {
      const Head qh = head(q, bh, h), kh = head(k, bh, h), vh = head(v, bh, h), gh = head(dout, bh, h);
      const Head dqh = head(dq, bh, h), dkh = head(dk, bh, h), dvh = head(dvv, bh, h);
      const float* ph = pp + bh * n * m;
      transpose(vh.p, vh.ld, m, dv, vt.data(), mp);
      product(gh.p, gh.ld, 1, vt.data(), mp, ds.data(), mp, n, m, dv);  // dP = do v^T
      for (int64_t i = 0; i < n; ++i) softmax_grad_row(ph + i * m, ds.data() + i * mp, m, scale);
      product(ds.data(), mp, 1, kh.p, kh.ld, dqh.p, dqh.ld, n, d, m);  // dq = dS k
      product(ds.data(), 1, mp, qh.p, qh.ld, dkh.p, dkh.ld, m, d, n);  // dk = dS^T q
      product(ph, 1, m, gh.p, gh.ld, dvh.p, dvh.ld, m, dv, n);         // dv = P^T do
    }
  });
#endif
  return {dq, dk, dvv};
}

struct FusedAttentionFunction : public torch::autograd::Function<FusedAttentionFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) {
    auto [o, p] = forward_impl(q, k, v, /*keep_p=*/true);
    ctx->save_for_backward({q, k, v});
    ctx->saved_data["p"] = p;
    return o;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    if (torch::GradMode::is_enabled())
      throw Error("fused_attention: double backward is not supported (run the attention without it)");
    const auto saved = ctx->get_saved_variables();
    return backward_impl(saved[0], saved[1], saved[2], ctx->saved_data["p"].toTensor(), grads[0]);
  }
};

}  // namespace

bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#ifdef SCENIC_ATTENTION_X86
  static const bool avx512 = simd::cpu_has_avx512f();
  if (!avx512) return false;
  for (const auto* t : {&q, &k, &v})
    if (!t->defined() || t->dim() != 4 || !t->device().is_cpu() || t->scalar_type() != torch::kFloat32 ||
        t->stride(3) != 1 || t->numel() == 0)
      return false;
  const int64_t n = q.size(2), m = k.size(2), d = q.size(3), dv = v.size(3);
  return k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == q.size(1) && v.size(1) == q.size(1) &&
         k.size(3) == d && v.size(2) == m && n * m <= kMaxScores && d <= kMaxDepth &&
         dv <= kMaxDepth && !at::autocast::is_autocast_enabled(at::kCPU);
#else
  return false;
#endif
}

torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  if (!fused_attention_applies(q, k, v))
    throw Error("fused_attention: needs 4-D CPU float32 q [B, H, N, d], k [B, H, M, d], v [B, H, M, dv] with the "
                "last dim contiguous, N M <= 65536, d, dv <= 256, no autocast and an AVX-512 CPU; got " +
                shapes(q, k, v));
  // Without a gradient to compute, no autograd node and no P kept.
  if (!torch::GradMode::is_enabled() || !(q.requires_grad() || k.requires_grad() || v.requires_grad()))
    return forward_impl(q, k, v, /*keep_p=*/false).first;
  return FusedAttentionFunction::apply(q, k, v);
}

}  // namespace scenic::model
