// Fused bias + tanh-GELU; see bias_gelu.h.
#include "scenic/model_lib/layers/bias_gelu.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include "scenic/model_lib/layers/simd.h"
#define SCENIC_GELU_X86 1
#endif

namespace scenic::model {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// Which vector kernels this CPU runs: AVX-512F (16 lanes, masked tails) where present,
// else AVX2 + FMA (8 lanes, scalar tails), else none (bias_gelu falls back to ATen).
enum class Isa { kNone, kAvx2, kAvx512 };

#ifdef SCENIC_GELU_X86
bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return simd::cpu_has_avx512f();
    case Isa::kAvx2: return simd::cpu_has_avx2_fma();
    case Isa::kNone: return true;
  }
  return false;
}

Isa best_isa() { return cpu_has(Isa::kAvx512) ? Isa::kAvx512 : cpu_has(Isa::kAvx2) ? Isa::kAvx2 : Isa::kNone; }

// The scalar tail of the AVX2 rows uses the same formula in double (exact to float
// rounding).
inline void gelu_scalar(float xf, float* out, float g, float* gy) {
  const double x = xf, u = kSqrt2OverPi * x * (1.0 + kCubic * x * x);
  const double s = 1.0 / (1.0 + std::exp(-2.0 * u));
  if (out != nullptr) *out = static_cast<float>(x * s);
  if (gy != nullptr) {
    const double du = kSqrt2OverPi * (1.0 + 3.0 * kCubic * x * x);
    *gy = static_cast<float>(g * (s + x * 2.0 * s * (1.0 - s) * du));
  }
}

// Both vector widths compute -2u = x (A + B x^2) (one FMA and a multiply), s =
// sigmoid(2u) = 1 / (1 + e^{-2u}), and the derivative d/dx [x s] = s + x 2 s (1 - s) u'
// = s (1 + (1 - s) w), w = 2 x u' = x (2c + 6ca x^2). Where s is 1 (x beyond ~5) the
// reciprocal must give exactly 1, or (1 - s) w, with w ~ 0.2 x^3, takes the error: AVX2
// divides (rcp's 12 bits and one Newton step leave 1 - 2^-24 there), AVX-512's rcp14
// and one Newton step give 1 exactly.
constexpr float kMinus2C = -2.f * kSqrt2OverPi, kMinus2CA = -2.f * kSqrt2OverPi * kCubic;
constexpr float k2C = 2.f * kSqrt2OverPi, k6CA = 6.f * kSqrt2OverPi * kCubic;

// s for x, given x^2, with -2u clamped to [-87, 87]: beyond, s is 1 or below 2e-38,
// where x * s is x or 0 to float precision. A NaN x gives a NaN output through the final
// multiply by x; the clamp passes the argument first (max/min return their second
// operand when one is NaN), so a NaN argument becomes the constant and never reaches
// the exponent bits.
__attribute__((target("avx2,fma"))) inline __m256 sigmoid_2u_avx2(__m256 x, __m256 x2) {
  __m256 z = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(kMinus2CA), x2, _mm256_set1_ps(kMinus2C)));
  z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-87.f)), _mm256_set1_ps(87.f));
  return _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_add_ps(_mm256_set1_ps(1.f), simd::exp_avx2(z)));
}

__attribute__((target("avx2,fma"))) void forward_avx2(const float* y, const float* b, float* out, int64_t rows,
                                                       int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    float* o = out + r * cols;
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      __m256 x = _mm256_loadu_ps(yr + j);
      if (b != nullptr) x = _mm256_add_ps(x, _mm256_loadu_ps(b + j));
      _mm256_storeu_ps(o + j, _mm256_mul_ps(x, sigmoid_2u_avx2(x, _mm256_mul_ps(x, x))));
    }
    for (; j < cols; ++j) gelu_scalar(yr[j] + (b != nullptr ? b[j] : 0.f), o + j, 0.f, nullptr);
  }
}

// `acc` (may be null): gy's column sums are added to acc[0, cols) row by row, in row
// order, as the rows are written.
__attribute__((target("avx2,fma"))) void backward_avx2(const float* g, const float* y, const float* b, float* gy,
                                                        float* acc, int64_t rows, int64_t cols) {
  const __m256 one = _mm256_set1_ps(1.f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = g + r * cols;
    float* o = gy + r * cols;
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      __m256 x = _mm256_loadu_ps(yr + j);
      if (b != nullptr) x = _mm256_add_ps(x, _mm256_loadu_ps(b + j));
      const __m256 x2 = _mm256_mul_ps(x, x);
      const __m256 s = sigmoid_2u_avx2(x, x2);
      const __m256 w = _mm256_mul_ps(x, _mm256_fmadd_ps(_mm256_set1_ps(k6CA), x2, _mm256_set1_ps(k2C)));
      const __m256 dgelu = _mm256_mul_ps(s, _mm256_fmadd_ps(_mm256_sub_ps(one, s), w, one));
      const __m256 out = _mm256_mul_ps(_mm256_loadu_ps(gr + j), dgelu);
      _mm256_storeu_ps(o + j, out);
      if (acc != nullptr) _mm256_storeu_ps(acc + j, _mm256_add_ps(_mm256_loadu_ps(acc + j), out));
    }
    for (; j < cols; ++j) {
      gelu_scalar(yr[j] + (b != nullptr ? b[j] : 0.f), nullptr, gr[j], o + j);
      if (acc != nullptr) acc[j] += o[j];
    }
  }
}

// The AVX-512 rows: the same formulas on 16 lanes, the reciprocal by rcp14 and one
// Newton step (relative error ~1e-8, below float rounding), and the row's last
// cols % 16 elements in one masked vector (masked-off lanes are neither read nor
// written).
// sigmoid(2u) for x, given x^2; -2u clamped to [-87, 87] as in sigmoid_2u_avx2.
__attribute__((target("avx512f"))) inline __m512 sigmoid_2u_avx512(__m512 x, __m512 x2) {
  __m512 z = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(kMinus2CA), x2, _mm512_set1_ps(kMinus2C)));
  z = _mm512_min_ps(_mm512_max_ps(z, _mm512_set1_ps(-87.f)), _mm512_set1_ps(87.f));  // NaN -> -87, as above
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.f), simd::exp_avx512(z));  // 1 + e^z, in [1, 6.1e37]
  const __m512 r0 = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r0, _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(2.f)));  // r0 (2 - d r0)
}

__attribute__((target("avx512f"))) void forward_avx512(const float* y, const float* b, float* out, int64_t rows,
                                                        int64_t cols) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (cols % 16)) - 1u);
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    float* o = out + r * cols;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = j + 16 <= cols ? static_cast<__mmask16>(0xFFFF) : tail;
      __m512 x = _mm512_maskz_loadu_ps(m, yr + j);
      if (b != nullptr) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, b + j));
      _mm512_mask_storeu_ps(o + j, m, _mm512_mul_ps(x, sigmoid_2u_avx512(x, _mm512_mul_ps(x, x))));
    }
  }
}

// `acc` (may be null): gy's column sums are added to acc[0, cols) row by row, in row
// order, as the rows are written.
__attribute__((target("avx512f"))) void backward_avx512(const float* g, const float* y, const float* b, float* gy,
                                                         float* acc, int64_t rows, int64_t cols) {
  const __mmask16 tail = static_cast<__mmask16>((1u << (cols % 16)) - 1u);
  const __m512 one = _mm512_set1_ps(1.f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = g + r * cols;
    float* o = gy + r * cols;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = j + 16 <= cols ? static_cast<__mmask16>(0xFFFF) : tail;
      __m512 x = _mm512_maskz_loadu_ps(m, yr + j);
      if (b != nullptr) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, b + j));
      const __m512 x2 = _mm512_mul_ps(x, x);
      const __m512 s = sigmoid_2u_avx512(x, x2);
      const __m512 w = _mm512_mul_ps(x, _mm512_fmadd_ps(_mm512_set1_ps(k6CA), x2, _mm512_set1_ps(k2C)));
      const __m512 dgelu = _mm512_mul_ps(s, _mm512_fmadd_ps(_mm512_sub_ps(one, s), w, one));
      const __m512 out = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, gr + j), dgelu);
      _mm512_mask_storeu_ps(o + j, m, out);
      if (acc != nullptr) _mm512_mask_storeu_ps(acc + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + j), out));
    }
  }
}
#else
bool cpu_has(Isa isa) { return isa == Isa::kNone; }
Isa best_isa() { return Isa::kNone; }
#endif

// Process-wide; bias_gelu_use_isa changes it (tests of the narrower kernels).
std::atomic<Isa> g_isa{best_isa()};

// Rows per block: the unit of work for the threads and of the bias-gradient sum (a
// block's column sums are taken while its rows of gy are still in cache).
constexpr int64_t kBlockRows = 64;

void forward_rows(const float* y, const float* b, float* out, int64_t rows, int64_t cols) {
#ifdef SCENIC_GELU_X86
  const Isa isa = g_isa.load(std::memory_order_relaxed);
  if (isa == Isa::kAvx512) return forward_avx512(y, b, out, rows, cols);
  if (isa == Isa::kAvx2) return forward_avx2(y, b, out, rows, cols);
#endif
  (void)y, (void)b, (void)out, (void)rows, (void)cols;
  throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA or AVX-512");
}

// gy for the rows, and (acc not null) their column sums added to acc in row order.
void backward_rows(const float* g, const float* y, const float* b, float* gy, float* acc, int64_t rows,
                   int64_t cols) {
#ifdef SCENIC_GELU_X86
  const Isa isa = g_isa.load(std::memory_order_relaxed);
  if (isa == Isa::kAvx512) return backward_avx512(g, y, b, gy, acc, rows, cols);
  if (isa == Isa::kAvx2) return backward_avx2(g, y, b, gy, acc, rows, cols);
#endif
  (void)g, (void)y, (void)b, (void)gy, (void)acc, (void)rows, (void)cols;
  throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA or AVX-512");
}

bool fused_ok(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() &&
         t.layout() == torch::kStrided;
}

class BiasGeluFunction : public torch::autograd::Function<BiasGeluFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& y,
                               const torch::Tensor& b) {
    ctx->save_for_backward({y, b});
    auto out = torch::empty_like(y);
    const int64_t cols = y.size(-1);
    bias_gelu_forward_kernel(y.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr<float>(), y.numel() / cols, cols);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& y = saved[0];
    const auto& b = saved[1];
    const auto g = grads[0].contiguous();
    auto gy = torch::empty_like(y);
    const int64_t cols = y.size(-1);
    torch::Tensor gb;
    if (ctx->needs_input_grad(1)) gb = torch::empty({cols}, b.options());
    bias_gelu_backward_kernel(g.data_ptr<float>(), y.data_ptr<float>(), b.data_ptr<float>(), gy.data_ptr<float>(),
                              gb.defined() ? gb.data_ptr<float>() : nullptr, y.numel() / cols, cols);
    return {gy, gb};
  }
};

}  // namespace

bool bias_gelu_is_fused(const torch::Tensor& y, const torch::Tensor& b) {
  return g_isa.load(std::memory_order_relaxed) != Isa::kNone && y.dim() >= 1 && y.numel() > 0 && fused_ok(y) &&
         (!b.defined() || (fused_ok(b) && b.dim() == 1 && b.size(0) == y.size(-1)));
}

torch::Tensor bias_gelu(const torch::Tensor& y, const torch::Tensor& b) {
  if (b.defined() && (b.dim() != 1 || y.dim() < 1 || b.size(0) != y.size(-1)))
    throw Error("bias_gelu: bias must be [N] for y [..., N] (y " + std::to_string(y.dim()) + "-D, last dim " +
                (y.dim() > 0 ? std::to_string(y.size(-1)) : std::string("-")) + ", bias " +
                std::to_string(b.dim()) + "-D)");
  // Outside the fused case: the same function in ATen ops, in y's dtype (as Linear + gelu
  // under autocast).
  if (!bias_gelu_is_fused(y, b)) return torch::gelu(b.defined() ? y + b.to(y.scalar_type()) : y, "tanh");
  // Autograd functions take no undefined inputs: no bias is a zero bias (N floats).
  return BiasGeluFunction::apply(y, b.defined() ? b : torch::zeros({y.size(-1)}, y.options()));
}

namespace {
// Blocks of kBlockRows rows over ATen's intra-op threads (run inline inside a parallel
// region, e.g. a batch-split slice); the split depends on the thread count, the values do
// not (each row is computed on its own).
template <typename F>
void for_row_blocks(int64_t rows, int64_t cols, const F& f) {
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  // Below ~32K elements a pass costs less than waking the other threads.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, kBlockRows * cols));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kBlockRows;
      f(blk, r0, std::min(rows, r0 + kBlockRows) - r0);
    }
  });
}
}  // namespace

void bias_gelu_forward_kernel(const float* y, const float* b, float* out, int64_t rows, int64_t cols) {
  if (g_isa.load() == Isa::kNone)
    throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA or AVX-512");
  for_row_blocks(rows, cols, [&](int64_t, int64_t r0, int64_t n) {
    forward_rows(y + r0 * cols, b, out + r0 * cols, n, cols);
  });
}

void bias_gelu_backward_kernel(const float* g, const float* y, const float* b, float* gy, float* gb, int64_t rows,
                               int64_t cols) {
  if (g_isa.load() == Isa::kNone)
    throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA or AVX-512");
  // gb: each block's column sums in float while its rows are in cache, then the blocks'
  // sums added in block order in double: the same result for any thread count.
  const int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
  std::vector<float> partial(gb != nullptr ? static_cast<size_t>(blocks * cols) : 0);
  for_row_blocks(rows, cols, [&](int64_t blk, int64_t r0, int64_t n) {
    backward_rows(g + r0 * cols, y + r0 * cols, b, gy + r0 * cols, gb != nullptr ? partial.data() + blk * cols : nullptr,
                  n, cols);
  });
  if (gb == nullptr) return;
  std::vector<double> total(static_cast<size_t>(cols), 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t j = 0; j < cols; ++j) total[j] += partial[blk * cols + j];
  for (int64_t j = 0; j < cols; ++j) gb[j] = static_cast<float>(total[j]);
}

bool bias_gelu_splits_rows() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

std::string bias_gelu_isa() {
  switch (g_isa.load()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kNone: break;
  }
  return "none";
}

bool bias_gelu_use_isa(const std::string& isa) {
  Isa want;
  if (isa == "avx512") want = Isa::kAvx512;
  else if (isa == "avx2") want = Isa::kAvx2;
  else if (isa == "none") want = Isa::kNone;
  else if (isa == "best") want = best_isa();
  else throw Error("bias_gelu_use_isa: unknown '" + isa + "' (avx512, avx2, none, best)");
  if (!cpu_has(want)) return false;
  g_isa.store(want);
  return true;
}

}  // namespace scenic::model
