// Fused bias + tanh-GELU; see bias_gelu.h.
#include "scenic/model_lib/layers/bias_gelu.h"

#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/errors.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define SCENIC_GELU_AVX2 1
#endif

namespace scenic::model {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

#ifdef SCENIC_GELU_AVX2
const bool kHaveAvx2Fma = [] {
  __builtin_cpu_init();  // may run before libgcc's own initializer
  return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("fma") != 0;
}();

// exp(z) for z in [-87, 87] (callers clamp): z = n ln2 + r with |r| <= ln2/2 (ln2 split
// in a high part exact in float and a low part), e^r by its degree-6 Taylor polynomial
// (truncation r^7/7! < 1.2e-7 relative), 2^n built in the exponent field.
__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 z) {
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), z);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 720.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// s = sigmoid(2u) = 1 / (1 + exp(-2u)) for x (u as in the header), with -2u clamped to
// [-87, 87]: beyond, s is 1 or below 2e-38, where x * s is x or 0 to float precision.
// A NaN x gives a NaN output through the final multiply by x; the clamp passes the
// argument first (max/min return their second operand when one is NaN), so a NaN
// argument becomes the constant and never reaches the exponent bits.
__attribute__((target("avx2,fma"))) inline __m256 sigmoid_2u(__m256 x, __m256* du_dx) {
  const __m256 x2 = _mm256_mul_ps(x, x);
  // u = c x (1 + a x^2)
  const __m256 c = _mm256_set1_ps(kSqrt2OverPi);
  const __m256 u = _mm256_mul_ps(_mm256_mul_ps(c, x), _mm256_fmadd_ps(_mm256_set1_ps(kCubic), x2, _mm256_set1_ps(1.f)));
  if (du_dx != nullptr)  // u' = c (1 + 3 a x^2)
    *du_dx = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_set1_ps(3.f * kCubic), x2, _mm256_set1_ps(1.f)));
  __m256 z = _mm256_mul_ps(u, _mm256_set1_ps(-2.f));
  z = _mm256_min_ps(_mm256_max_ps(z, _mm256_set1_ps(-87.f)), _mm256_set1_ps(87.f));
  return _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_add_ps(_mm256_set1_ps(1.f), exp_avx2(z)));
}

// The scalar tail uses the same formula in double (exact to float rounding).
inline void gelu_scalar(float xf, float* out, float g, float* gy) {
  const double x = xf, u = kSqrt2OverPi * x * (1.0 + kCubic * x * x);
  const double s = 1.0 / (1.0 + std::exp(-2.0 * u));
  if (out != nullptr) *out = static_cast<float>(x * s);
  if (gy != nullptr) {
    const double du = kSqrt2OverPi * (1.0 + 3.0 * kCubic * x * x);
    *gy = static_cast<float>(g * (s + x * 2.0 * s * (1.0 - s) * du));
  }
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
      _mm256_storeu_ps(o + j, _mm256_mul_ps(x, sigmoid_2u(x, nullptr)));
    }
    for (; j < cols; ++j) gelu_scalar(yr[j] + (b != nullptr ? b[j] : 0.f), o + j, 0.f, nullptr);
  }
}

__attribute__((target("avx2,fma"))) void backward_avx2(const float* g, const float* y, const float* b, float* gy,
                                                        int64_t rows, int64_t cols) {
  const __m256 two = _mm256_set1_ps(2.f), one = _mm256_set1_ps(1.f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* gr = g + r * cols;
    float* o = gy + r * cols;
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) {
      __m256 x = _mm256_loadu_ps(yr + j);
      if (b != nullptr) x = _mm256_add_ps(x, _mm256_loadu_ps(b + j));
      __m256 du;
      const __m256 s = sigmoid_2u(x, &du);
      // d/dx [x s(2u)] = s + x * 2 s (1 - s) u'
      const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(two, s), _mm256_mul_ps(_mm256_sub_ps(one, s), du));
      _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_loadu_ps(gr + j), _mm256_fmadd_ps(x, ds, s)));
    }
    for (; j < cols; ++j) gelu_scalar(yr[j] + (b != nullptr ? b[j] : 0.f), nullptr, gr[j], o + j);
  }
}
#endif

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
    bias_gelu_backward_kernel(g.data_ptr<float>(), y.data_ptr<float>(), b.data_ptr<float>(), gy.data_ptr<float>(),
                              y.numel() / cols, cols);
    torch::Tensor gb;
    if (ctx->needs_input_grad(1)) gb = gy.reshape({-1, cols}).sum(0);
    return {gy, gb};
  }
};

}  // namespace

bool bias_gelu_is_fused(const torch::Tensor& y, const torch::Tensor& b) {
#ifdef SCENIC_GELU_AVX2
  return kHaveAvx2Fma && y.dim() >= 1 && y.numel() > 0 && fused_ok(y) &&
         (!b.defined() || (fused_ok(b) && b.dim() == 1 && b.size(0) == y.size(-1)));
#else
  (void)y;
  (void)b;
  return false;
#endif
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

void bias_gelu_forward_kernel(const float* y, const float* b, float* out, int64_t rows, int64_t cols) {
#ifdef SCENIC_GELU_AVX2
  if (kHaveAvx2Fma) return forward_avx2(y, b, out, rows, cols);
#endif
  throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA");
}

void bias_gelu_backward_kernel(const float* g, const float* y, const float* b, float* gy, int64_t rows,
                               int64_t cols) {
#ifdef SCENIC_GELU_AVX2
  if (kHaveAvx2Fma) return backward_avx2(g, y, b, gy, rows, cols);
#endif
  throw Error("bias_gelu: the fused kernel needs a CPU with AVX2 and FMA");
}

}  // namespace scenic::model
