// Vector kernels of the exact matcher's solver (hungarian.cc); see lap_kernels.h.
#include "scenic/model_lib/matchers/lap_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__SSE2__)
#include <immintrin.h>
#define SCENIC_LAP_SSE2 1
// The row scan also has an AVX2 version, chosen at run time (the build targets the
// x86-64 baseline); GCC and Clang only.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SCENIC_LAP_AVX2 1
#endif
#endif

namespace scenic::model::lap {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The scan keeps, per lane, the smallest (m1) and second smallest (m2 = min(m2,
// max(m1, h))) value seen, with no branch; the index of u1 is found afterwards by one
// equality search over h.
RowMin row_min2_baseline_impl(const double* __restrict c, const double* __restrict v, int64_t ld,
                       double* __restrict h) {
  RowMin r;
#ifdef SCENIC_LAP_SSE2
  __m128d m1a = _mm_set1_pd(kInf), m2a = m1a, m1b = m1a, m2b = m1a;
  for (int64_t j = 0; j < ld; j += 4) {
    const __m128d ha = _mm_sub_pd(_mm_loadu_pd(c + j), _mm_loadu_pd(v + j));
    const __m128d hb = _mm_sub_pd(_mm_loadu_pd(c + j + 2), _mm_loadu_pd(v + j + 2));
    _mm_storeu_pd(h + j, ha);
    _mm_storeu_pd(h + j + 2, hb);
    m2a = _mm_min_pd(m2a, _mm_max_pd(m1a, ha));
    m2b = _mm_min_pd(m2b, _mm_max_pd(m1b, hb));
    m1a = _mm_min_pd(ha, m1a);
    m1b = _mm_min_pd(hb, m1b);
  }
  // Merging two lane states: (a1, a2) + (b1, b2) -> (min(a1, b1), min(a2, b2, max(a1, b1))).
  const __m128d m2 = _mm_min_pd(_mm_min_pd(m2a, m2b), _mm_max_pd(m1a, m1b));
  const __m128d m1 = _mm_min_pd(m1a, m1b);
  const __m128d m1h = _mm_unpackhi_pd(m1, m1), m2h = _mm_unpackhi_pd(m2, m2);
  r.u1 = _mm_cvtsd_f64(_mm_min_sd(m1, m1h));
  r.u2 = _mm_cvtsd_f64(_mm_min_sd(_mm_min_sd(m2, m2h), _mm_max_sd(m1, m1h)));
  const __m128d target = _mm_set1_pd(r.u1);
  for (int64_t j = 0;; j += 4) {  // u1 is one of the h[j]: this stops
    const int mask = _mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(h + j), target)) |
                     (_mm_movemask_pd(_mm_cmpeq_pd(_mm_loadu_pd(h + j + 2), target)) << 2);
    if (mask != 0) {
      r.j1 = j + __builtin_ctz(static_cast<unsigned>(mask));
      break;
    }
  }
#else
  double m1 = kInf, m2 = kInf;
  for (int64_t j = 0; j < ld; ++j) {
    h[j] = c[j] - v[j];
    m2 = std::min(m2, std::max(m1, h[j]));
    m1 = std::min(m1, h[j]);
  }
  r.u1 = m1;
  r.u2 = m2;
  r.j1 = 0;
  while (h[r.j1] != m1) ++r.j1;
#endif
  return r;
}

#ifdef SCENIC_LAP_AVX2
// row_min2_baseline_impl in 4-wide AVX2 (same results: the same values are compared, only the lane
// split differs, and the first index of u1 is searched the same way).
__attribute__((target("avx2"))) RowMin row_min2_avx2(const double* __restrict c,
                                                     const double* __restrict v, int64_t ld,
                                                     double* __restrict h) {
  __m256d m1 = _mm256_set1_pd(kInf), m2 = m1;
  for (int64_t j = 0; j < ld; j += 4) {
    const __m256d x = _mm256_sub_pd(_mm256_loadu_pd(c + j), _mm256_loadu_pd(v + j));
    _mm256_storeu_pd(h + j, x);
    m2 = _mm256_min_pd(m2, _mm256_max_pd(m1, x));
    m1 = _mm256_min_pd(x, m1);
  }
  const __m128d m1a = _mm256_castpd256_pd128(m1), m1b = _mm256_extractf128_pd(m1, 1);
  const __m128d m2a = _mm256_castpd256_pd128(m2), m2b = _mm256_extractf128_pd(m2, 1);
  const __m128d n2 = _mm_min_pd(_mm_min_pd(m2a, m2b), _mm_max_pd(m1a, m1b));
  const __m128d n1 = _mm_min_pd(m1a, m1b);
  const __m128d n1h = _mm_unpackhi_pd(n1, n1), n2h = _mm_unpackhi_pd(n2, n2);
  RowMin r;
  r.u1 = _mm_cvtsd_f64(_mm_min_sd(n1, n1h));
  r.u2 = _mm_cvtsd_f64(_mm_min_sd(_mm_min_sd(n2, n2h), _mm_max_sd(n1, n1h)));
  const __m256d target = _mm256_set1_pd(r.u1);
  for (int64_t j = 0;; j += 4) {
    const int mask = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(h + j), target, _CMP_EQ_OQ));
    if (mask != 0) {
      r.j1 = j + __builtin_ctz(static_cast<unsigned>(mask));
      break;
    }
  }
  return r;
}

const bool kHaveAvx2 = [] {
  __builtin_cpu_init();  // may run before libgcc's own initializer
  return __builtin_cpu_supports("avx2") != 0;
}();
#endif

}  // namespace

RowMin row_min2(const double* c, const double* v, int64_t ld, double* h) {
#ifdef SCENIC_LAP_AVX2
  if (kHaveAvx2) return row_min2_avx2(c, v, ld, h);
#endif
  return row_min2_baseline_impl(c, v, ld, h);
}

RowMin row_min2_baseline(const double* c, const double* v, int64_t ld, double* h) {
  return row_min2_baseline_impl(c, v, ld, h);
}

int64_t relax_row(const double* __restrict c, const double* __restrict w, double base,
                         int64_t i, int64_t ld, double* __restrict d, int64_t* __restrict pred,
                         const int64_t* row4col) {
  double best = kInf;
  int64_t best_j = -1;
#ifdef SCENIC_LAP_SSE2
  const __m128d basev = _mm_set1_pd(base);
  const __m128d iv = _mm_castsi128_pd(_mm_set1_epi64x(i));
  const __m128d four = _mm_set1_pd(4.0);
  __m128d ma = _mm_set1_pd(kInf), mb = ma;  // running minima and their indices (as doubles)
  __m128d ia = _mm_set1_pd(-1.0), ib = ia;
  __m128d ja = _mm_set_pd(1.0, 0.0), jb = _mm_set_pd(3.0, 2.0);
  for (int64_t j = 0; j < ld; j += 4) {
    const __m128d ra = _mm_add_pd(_mm_add_pd(basev, _mm_loadu_pd(c + j)), _mm_loadu_pd(w + j));
    const __m128d rb = _mm_add_pd(_mm_add_pd(basev, _mm_loadu_pd(c + j + 2)), _mm_loadu_pd(w + j + 2));
    const __m128d da = _mm_loadu_pd(d + j), db = _mm_loadu_pd(d + j + 2);
    const __m128d lta = _mm_cmplt_pd(ra, da), ltb = _mm_cmplt_pd(rb, db);
    const __m128d na = _mm_min_pd(ra, da), nb = _mm_min_pd(rb, db);
    _mm_storeu_pd(d + j, na);
    _mm_storeu_pd(d + j + 2, nb);
    double* pj = reinterpret_cast<double*>(pred + j);
    const __m128d pa = _mm_loadu_pd(pj), pb = _mm_loadu_pd(pj + 2);
    _mm_storeu_pd(pj, _mm_or_pd(_mm_and_pd(lta, iv), _mm_andnot_pd(lta, pa)));
    _mm_storeu_pd(pj + 2, _mm_or_pd(_mm_and_pd(ltb, iv), _mm_andnot_pd(ltb, pb)));
    const __m128d sa = _mm_cmplt_pd(na, ma), sb = _mm_cmplt_pd(nb, mb);
    ia = _mm_or_pd(_mm_and_pd(sa, ja), _mm_andnot_pd(sa, ia));
    ib = _mm_or_pd(_mm_and_pd(sb, jb), _mm_andnot_pd(sb, ib));
    ma = _mm_min_pd(na, ma);
    mb = _mm_min_pd(nb, mb);
    ja = _mm_add_pd(ja, four);
    jb = _mm_add_pd(jb, four);
  }
  alignas(16) double mv[4], ix[4];
  _mm_store_pd(mv, ma);
  _mm_store_pd(mv + 2, mb);
  _mm_store_pd(ix, ia);
  _mm_store_pd(ix + 2, ib);
  for (int l = 0; l < 4; ++l) {
    const int64_t jl = static_cast<int64_t>(ix[l]);
    if (jl < 0) continue;
    if (mv[l] < best || (mv[l] == best && best_j >= 0 && row4col[best_j] >= 0 && row4col[jl] < 0)) {
      best = mv[l];
      best_j = jl;
    }
  }
#else
  for (int64_t j = 0; j < ld; ++j) {
    const double r = base + c[j] + w[j];
    const bool lt = r < d[j];
    d[j] = lt ? r : d[j];
    pred[j] = lt ? i : pred[j];
    if (d[j] < best || (d[j] == best && best_j >= 0 && row4col[best_j] >= 0 && row4col[j] < 0)) {
      best = d[j];
      best_j = j;
    }
  }
#endif
  return best_j;
}

bool all_moderate(const double* p, int64_t n) {
  int64_t j = 0;
#ifdef SCENIC_LAP_SSE2
  const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
  const __m128d limit = _mm_set1_pd(1e300);
  __m128d bad = _mm_setzero_pd();
  for (; j + 2 <= n; j += 2)  // cmpnle: true for NaN and for > 1e300
    bad = _mm_or_pd(bad, _mm_cmpnle_pd(_mm_and_pd(_mm_loadu_pd(p + j), abs_mask), limit));
  if (_mm_movemask_pd(bad) != 0) return false;
#endif
  bool ok = true;
  for (; j < n; ++j) ok &= std::abs(p[j]) <= 1e300;
  return ok;
}

}  // namespace scenic::model::lap
