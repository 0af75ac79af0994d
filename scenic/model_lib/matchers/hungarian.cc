// Shortest-augmenting-path assignment and Scenic's hungarian_matcher on tensors.
// See hungarian.h for the algorithm, the output order and the non-finite rule.
//
// Speed (bench/README.md, "Exact matcher"). Every problem is first loaded into a
// per-thread workspace as a row-major double matrix with the short side as rows (a
// 2x2-blocked SSE2 transpose for DETR's 100 predictions x m targets, with the finite
// check folded in), each row padded with +inf to a multiple of 4 columns. The two hot
// loops (lap_kernels.h) then run branch-free over whole padded rows: the row scan of the augmenting
// row reduction (smallest and second smallest reduced cost; AVX2 where the CPU has it,
// else SSE2) and the relaxation + argmin step of the Dijkstra search (SSE2); other
// architectures get plain loops with the same results. Branch-free matters more than
// the arithmetic: over a batch of different matrices the data-dependent branches of a
// scalar scan mispredict (the previous scalar version was ~4x slower on a batch than
// on one matrix solved repeatedly). For DETR-shaped problems the row reduction
// usually matches every row and the Dijkstra phase is rare (square matrices).
#include "scenic/model_lib/matchers/hungarian.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#define SCENIC_LAP_SSE2 1
#endif

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/matchers/lap_kernels.h"

namespace scenic::model {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The loaded problem and scratch arrays, reused across the matrices one thread solves
// (no allocation per call once warm). cost is [nr, ld], nr <= nc <= ld, ld a multiple
// of 4; columns [nc, ld) hold +inf, so they are never any row's minimum, never reached
// by a search, and keep v = 0.
struct Workspace {
  int64_t nr = 0, nc = 0, ld = 0;
  std::vector<double> cost, u, v, dist, w, done_dist;
  std::vector<int64_t> row4col, col4row, pred, done, free_rows, next_free, arg;
  std::vector<char> used;  // rows taken, for the padded-column slicer
};

Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

// ---- Solver phases on the loaded problem ----

// Square problems: v_j = min_i c_ij, each column taking its (first) argmin row when that
// row is still free (tight: c_ij - v_j = 0 = u_i).
void column_reduction(Workspace& ws) {
  const int64_t nr = ws.nr, nc = ws.nc, ld = ws.ld;
  const double* c = ws.cost.data();
  double* v = ws.v.data();
  int64_t* arg = ws.arg.data();
  std::copy(c, c + ld, v);
  std::fill(arg, arg + ld, 0);
  for (int64_t i = 1; i < nr; ++i) {  // row by row, so the inner loop is contiguous
    const double* ci = c + i * ld;
    for (int64_t j = 0; j < ld; ++j) {
      const bool lt = ci[j] < v[j];
      v[j] = lt ? ci[j] : v[j];
      arg[j] = lt ? i : arg[j];
    }
  }
  std::fill(v + nc, v + ld, 0.0);  // padding columns
  for (int64_t j = 0; j < nc; ++j) {
    if (ws.col4row[arg[j]] < 0) {
      ws.col4row[arg[j]] = j;
      ws.row4col[j] = arg[j];
    }
  }
}

// Jonker-Volgenant's augmenting row reduction, two passes: a free row takes the column
// of its smallest reduced cost c_ij - v_j (u1), lowering that column's v by the gap to the
// second smallest (u2) so the row stays tight there with u_i = u2 and every other row
// stays feasible (v only ever decreases). A row it displaces is retried at once when
// the gap was positive, else in the next pass. Columns once matched stay matched, so
// never-matched columns keep v = 0, the maximum. The number of steps is capped: what is
// still free afterwards goes to the exact shortest-path phase.
void augmenting_row_reduction(Workspace& ws) {
  const int64_t nr = ws.nr, nc = ws.nc, ld = ws.ld;
  const double* c = ws.cost.data();
  double* v = ws.v.data();
  double* h = ws.dist.data();  // scratch for row_min2
  int64_t* row4col = ws.row4col.data();
  int64_t* col4row = ws.col4row.data();
  auto& free_rows = ws.free_rows;
  auto& next_free = ws.next_free;
  if (nc < 2) return;  // no second minimum; the search phase handles it
  free_rows.clear();
  for (int64_t i = 0; i < nr; ++i)
    if (col4row[i] < 0) free_rows.push_back(i);
  int64_t budget = 8 * nr + 16;
  for (int pass = 0; pass < 2 && !free_rows.empty(); ++pass) {
    next_free.clear();
    size_t k = 0;
    while (k < free_rows.size()) {
      const int64_t i = free_rows[k++];
      if (--budget < 0) {
        next_free.push_back(i);
        continue;
      }
      const lap::RowMin r = lap::row_min2(c + i * ld, v, ld, h);
      int64_t j1 = r.j1;
      int64_t displaced = row4col[j1];
      const bool gap = r.u1 < r.u2;
      if (gap) {
        v[j1] -= r.u2 - r.u1;
      } else if (displaced >= 0) {
        // Equal costs: prefer a column nobody else has, the first other one at u2.
        for (int64_t j = 0; j < nc; ++j) {
          if (j != r.j1 && h[j] == r.u2) {
            j1 = j;
            break;
          }
        }
        displaced = row4col[j1];
      }
      row4col[j1] = i;
      col4row[i] = j1;
      if (displaced >= 0) {
        col4row[displaced] = -1;
        if (gap)
          free_rows[--k] = displaced;
        else
          next_free.push_back(displaced);
      }
    }
    std::swap(free_rows, next_free);
  }
}

// One Dijkstra search (dense, O(ld) per step) per still-free row.
//
// Invariants (reduced cost r_ij = c_ij - u_i - v_j): r >= 0 everywhere, r == 0 on matched
// pairs, and, when nr < nc, every free column has v_j = 0 = max_j v_j. A partial matching
// with such duals is optimal among matchings of the same rows (LP duality against the
// problem padded with zero-cost dummy rows), and augmenting along a shortest reduced-cost
// path keeps all three invariants.
void shortest_paths(Workspace& ws) {
  const int64_t nr = ws.nr, nc = ws.nc, ld = ws.ld;
  const double* c = ws.cost.data();
  double* u = ws.u.data();
  double* v = ws.v.data();
  double* d = ws.dist.data();
  double* w = ws.w.data();
  double* done_dist = ws.done_dist.data();
  int64_t* row4col = ws.row4col.data();
  int64_t* col4row = ws.col4row.data();
  int64_t* pred = ws.pred.data();
  int64_t* done = ws.done.data();
  // Matched rows: tight. (Free rows' u does not matter: a search starts from any u.)
  for (int64_t i = 0; i < nr; ++i)
    if (col4row[i] >= 0) u[i] = c[i * ld + col4row[i]] - v[col4row[i]];

  for (int64_t cur = 0; cur < nr; ++cur) {
    if (col4row[cur] >= 0) continue;
    for (int64_t j = 0; j < ld; ++j) {
      d[j] = kInf;
      w[j] = j < nc ? -v[j] : kInf;
      pred[j] = cur;  // every predecessor chain must end at `cur`, even on overflow
    }
    // done[0, n_done): the columns whose distance is final, in the order finalized.
    int64_t n_done = 0;
    int64_t i = cur;
    double min_val = 0.0;  // distance of row i (= of the column that led to it)
    int64_t sink = -1;
    while (sink < 0) {
      int64_t j = lap::relax_row(c + i * ld, w, min_val - u[i], i, ld, d, pred, row4col);
      if (j < 0 || !(d[j] < kInf)) {  // unreachable with finite costs; keeps termination
        j = 0;
        while (!(w[j] < kInf)) ++j;  // an open column exists while no sink was found
        if (!(d[j] < kInf)) d[j] = min_val;
      }
      min_val = d[j];
      done[n_done] = j;
      done_dist[n_done++] = min_val;
      d[j] = kInf;
      w[j] = kInf;
      if (row4col[j] < 0) {
        sink = j;
      } else {
        i = row4col[j];
      }
    }
    // Dual update over the finalized columns but the sink (last; its change is 0).
    u[cur] += min_val;
    for (int64_t k = 0; k + 1 < n_done; ++k) {
      const int64_t j = done[k];
      const double delta = min_val - done_dist[k];
      u[row4col[j]] += delta;
      v[j] -= delta;
    }
    // Augment along the predecessor chain back to `cur`.
    int64_t j = sink;
    while (true) {
      const int64_t pi = pred[j];
      row4col[j] = pi;
      std::swap(j, col4row[pi]);
      if (pi == cur) break;
    }
  }
}

// Solves the problem loaded in ws (nr <= nc, finite, |c| <= 2^997). Fills ws.col4row
// (column of each row) and ws.row4col.
void solve_loaded(Workspace& ws) {
  const int64_t nr = ws.nr, ld = ws.ld;
  ws.u.assign(nr, 0.0);
  ws.v.assign(ld, 0.0);
  ws.row4col.assign(ld, -1);
  ws.col4row.assign(nr, -1);
  for (auto* a : {&ws.dist, &ws.w, &ws.done_dist}) a->resize(ld);
  for (auto* a : {&ws.pred, &ws.done, &ws.arg}) a->resize(ld);
  if (nr == 0) return;
  // Rectangular problems start from v = 0 with every row free: the columns left free
  // at the end must keep the largest v, and only columns that get matched are lowered.
  if (nr == ws.nc) column_reduction(ws);
  augmenting_row_reduction(ws);
  shortest_paths(ws);
}

// ---- Loading ----

#ifdef SCENIC_LAP_SSE2
inline __m128d load2(const double* p) { return _mm_loadu_pd(p); }
inline __m128d load2(const float* p) {
  return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
#endif


// Replaces non-finite entries of the real columns of rows [nr, ld] as replace_non_finite
// does for a dense matrix, then rescales by a power of two when |entries| exceed 1e300,
// so reduced costs (differences of entries) never overflow; the optimal assignment is
// invariant under positive scaling.
// What NaN/Inf entries become: above every finite entry (hi + range + 1), or hi when
// that overflows; 0 when no entry is finite (hi < lo).
double non_finite_bound(double hi, double lo) {
  if (!(hi >= lo)) return 0.0;
  const double bound = hi + (hi - lo) + 1.0;
  return std::isfinite(bound) ? bound : hi;
}

void sanitize(double* data, int64_t nr, int64_t nc, int64_t ld) {
  double hi = -kInf, lo = kInf;
  bool any_bad = false;
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < nc; ++j) {
      const double x = data[i * ld + j];
      if (std::isfinite(x)) {
        hi = std::max(hi, x);
        lo = std::min(lo, x);
      } else {
        any_bad = true;
      }
    }
  }
  const double bound = non_finite_bound(hi, lo);
  double max_abs = 0.0;
  for (int64_t i = 0; i < nr; ++i) {
    for (int64_t j = 0; j < nc; ++j) {
      double& x = data[i * ld + j];
      if (any_bad && !std::isfinite(x)) x = bound;
      max_abs = std::max(max_abs, std::abs(x));
    }
  }
  if (max_abs > 1e300) {
    const double scale = std::ldexp(1.0, -std::ilogb(max_abs) + 996);  // max_abs -> < 2^997
    for (int64_t i = 0; i < nr; ++i)
      for (int64_t j = 0; j < nc; ++j) data[i * ld + j] *= scale;
  }
}

// Loads a strided [n_rows, n_cols] block into ws as the problem to solve (short side as
// rows, doubles, padded, finite). Returns true when it was transposed (n_rows > n_cols).
template <typename T>
bool load_problem(const T* src, int64_t n_rows, int64_t n_cols, int64_t row_stride,
                  int64_t col_stride, Workspace& ws) {
  const bool transpose = n_rows > n_cols;
  const int64_t nr = transpose ? n_cols : n_rows, nc = transpose ? n_rows : n_cols;
  const int64_t ld = (nc + 3) / 4 * 4;
  ws.nr = nr;
  ws.nc = nc;
  ws.ld = ld;
  ws.cost.resize(static_cast<size_t>(nr * ld));
  double* o = ws.cost.data();
  // Every entry is tested once for NaN, +-inf and |x| > 1e300 alike (`ok`); the
  // slow path those need is rare.
  bool ok = true;
  int64_t i0 = 0;  // source rows [0, i0) loaded by the fast transpose below
#ifdef SCENIC_LAP_SSE2
  if (transpose && col_stride == 1) {
    const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
    const __m128d limit = _mm_set1_pd(1e300);
    __m128d bad = _mm_setzero_pd();  // cmpnle: true for NaN and for > 1e300
    // 2x2 blocks: two source rows, two columns -> two output rows, two entries each.
    for (; i0 + 2 <= n_rows; i0 += 2) {
      const T* s0 = src + i0 * row_stride;
      const T* s1 = s0 + row_stride;
      int64_t j = 0;
      for (; j + 2 <= n_cols; j += 2) {
        const __m128d a = load2(s0 + j), b = load2(s1 + j);
        bad = _mm_or_pd(bad, _mm_cmpnle_pd(_mm_and_pd(a, abs_mask), limit));
        bad = _mm_or_pd(bad, _mm_cmpnle_pd(_mm_and_pd(b, abs_mask), limit));
        _mm_storeu_pd(o + j * ld + i0, _mm_unpacklo_pd(a, b));
        _mm_storeu_pd(o + (j + 1) * ld + i0, _mm_unpackhi_pd(a, b));
      }
      if (j < n_cols) {
        const double x0 = static_cast<double>(s0[j]), x1 = static_cast<double>(s1[j]);
        ok &= std::abs(x0) <= 1e300 && std::abs(x1) <= 1e300;
        o[j * ld + i0] = x0;
        o[j * ld + i0 + 1] = x1;
      }
    }
    ok &= _mm_movemask_pd(bad) == 0;
  }
#endif
  if (transpose) {
    for (int64_t i = i0; i < n_rows; ++i) {
      for (int64_t j = 0; j < n_cols; ++j) {
        const double x = static_cast<double>(src[i * row_stride + j * col_stride]);
        ok &= std::abs(x) <= 1e300;
        o[j * ld + i] = x;
      }
    }
  } else {
    for (int64_t i = 0; i < n_rows; ++i) {
      double* oi = o + i * ld;
      for (int64_t j = 0; j < n_cols; ++j) oi[j] = static_cast<double>(src[i * row_stride + j * col_stride]);
      ok &= lap::all_moderate(oi, n_cols);
    }
  }
  for (int64_t i = 0; i < nr; ++i)
    for (int64_t j = nc; j < ld; ++j) o[i * ld + j] = kInf;
  if (!ok) sanitize(o, nr, nc, ld);
  return transpose;
}

// Solves one batch element and writes its [2, K] pairs (ordered by column) to out.
template <typename T>
void match_one(const T* src, int64_t n, int64_t m, int64_t row_stride, int64_t col_stride,
               std::optional<int64_t> n_present_opt, int64_t* out_rows, int64_t* out_cols) {
  Workspace& ws = thread_workspace();
  const int64_t k_total = std::min(n, m);
  if (k_total == 0) return;
  const int64_t present = n_present_opt ? std::max<int64_t>(*n_present_opt, 1) : m;
  const bool transposed = load_problem(src, n, present, row_stride, col_stride, ws);
  solve_loaded(ws);

  int64_t written = 0;
  if (transposed) {
    // Short rows are the original columns, already ascending.
    for (int64_t j = 0; j < ws.nr; ++j) {
      out_rows[written] = ws.col4row[j];
      out_cols[written] = j;
      ++written;
    }
  } else {
    for (int64_t j = 0; j < ws.nc; ++j) {
      if (ws.row4col[j] < 0) continue;
      out_rows[written] = ws.row4col[j];
      out_cols[written] = j;
      ++written;
    }
  }
  if (present < m) {
    // Scenic's slicer: padded columns take the smallest unmatched rows, in order
    // (valid because N >= M was checked).
    auto& used = ws.used;
    used.assign(static_cast<size_t>(n), 0);
    for (int64_t t = 0; t < written; ++t) used[out_rows[t]] = 1;
    int64_t row = 0;
    for (int64_t col = present; col < m; ++col) {
      while (used[row]) ++row;
      used[row] = 1;
      out_rows[written] = row;
      out_cols[written] = col;
      ++written;
    }
  }
}

// ---- Batch parallelism ----

// Below this many cost entries in a batch, helpers cost more than they save.
constexpr int64_t kCellsPerHelper = 32768;

// fn(t) for t in [0, count), on the calling thread and on workers - 1 tasks of ATen's
// inter-op pool (at::launch), which take the next t from a shared counter. (ATen's
// at::parallel_for does not help here: its OpenMP backend is a header-only template
// that runs serially in code compiled without -fopenmp, as this project is.) The caller
// never waits for a helper that has not started: it does the work itself and then
// waits only for elements a helper is still solving, so a busy machine, where a helper
// may start late or not at all, costs nothing, and nested use cannot deadlock.
struct SharedLoop {
  int64_t count = 0;
  const std::function<void(int64_t)>* fn = nullptr;  // valid while elements are unfinished
  std::atomic<int64_t> next{0}, finished{0};
  std::mutex mu;
  std::condition_variable all_done;
  std::exception_ptr error;

  void work() {
    for (int64_t t = next++; t < count; t = next++) {
      try {
        (*fn)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
      if (++finished == count) {
        std::lock_guard<std::mutex> lock(mu);
        all_done.notify_all();
      }
    }
  }
};

void share_loop(int64_t count, int64_t workers, const std::function<void(int64_t)>& fn) {
  if (count <= 0) return;
  auto loop = std::make_shared<SharedLoop>();
  loop->count = count;
  loop->fn = &fn;
  for (int64_t h = 1; h < workers; ++h) at::launch([loop] { loop->work(); });
  loop->work();
  std::unique_lock<std::mutex> lock(loop->mu);
  loop->all_done.wait(lock, [&] { return loop->finished.load() == count; });
  if (loop->error) std::rethrow_exception(loop->error);
}

}  // namespace

double replace_non_finite(double* data, int64_t n) {
  double hi = -kInf, lo = kInf;
  bool any_bad = false;
  for (int64_t t = 0; t < n; ++t) {
    const double x = data[t];
    if (std::isfinite(x)) {
      hi = std::max(hi, x);
      lo = std::min(lo, x);
    } else {
      any_bad = true;
    }
  }
  const double bound = non_finite_bound(hi, lo);
  if (any_bad)
    for (int64_t t = 0; t < n; ++t)
      if (!std::isfinite(data[t])) data[t] = bound;
  return bound;
}

std::vector<int64_t> linear_sum_assignment(const double* cost, int64_t n_rows, int64_t n_cols) {
  if (n_rows < 0 || n_cols < 0) throw scenic::Error("linear_sum_assignment: negative size");
  std::vector<int64_t> result(static_cast<size_t>(n_rows), -1);
  if (n_rows == 0 || n_cols == 0) return result;
  Workspace& ws = thread_workspace();
  const bool transposed = load_problem(cost, n_rows, n_cols, n_cols, 1, ws);
  solve_loaded(ws);
  if (transposed) {
    for (int64_t j = 0; j < n_cols; ++j) result[ws.col4row[j]] = j;
  } else {
    std::copy(ws.col4row.begin(), ws.col4row.end(), result.begin());
  }
  return result;
}

torch::Tensor hungarian_matcher(const torch::Tensor& cost_in,
                                const std::optional<torch::Tensor>& n_cols_in) {
  if (cost_in.dim() != 2 && cost_in.dim() != 3)
    throw scenic::Error("hungarian_matcher: cost must be [N, M] or [B, N, M], got " +
                        std::to_string(cost_in.dim()) + " dims");
  const bool single = cost_in.dim() == 2;
  torch::Tensor cost = (single ? cost_in.unsqueeze(0) : cost_in).detach().to(torch::kCPU);
  if (cost.scalar_type() != torch::kFloat && cost.scalar_type() != torch::kDouble)
    cost = cost.to(torch::kDouble);
  const int64_t b = cost.size(0), n = cost.size(1), m = cost.size(2);
  const int64_t k = std::min(n, m);

  std::vector<int64_t> n_present;
  if (n_cols_in.has_value() && n_cols_in->defined()) {
    if (n > 0 && m > n)
      throw scenic::Error("hungarian_matcher: n_cols (padded columns) requires N >= M, got N=" +
                          std::to_string(n) + " M=" + std::to_string(m));
    auto nc = n_cols_in->detach().to(torch::kCPU, torch::kLong).reshape({-1}).contiguous();
    if (nc.numel() != b)
      throw scenic::Error("hungarian_matcher: n_cols has " + std::to_string(nc.numel()) +
                          " entries for a batch of " + std::to_string(b));
    n_present.assign(nc.data_ptr<int64_t>(), nc.data_ptr<int64_t>() + b);
    for (int64_t x : n_present)
      if (x < 0 || x > m)
        throw scenic::Error("hungarian_matcher: n_cols entry " + std::to_string(x) +
                            " outside [0, " + std::to_string(m) + "]");
  }

  auto out = torch::empty({b, 2, k}, torch::kLong);  // [B, 2, K]
  int64_t* out_ptr = out.data_ptr<int64_t>();
  const int64_t sb = cost.stride(0), sr = cost.stride(1), sc = cost.stride(2);
  // The largest problems first: the last elements handed out are the quick ones.
  std::vector<int64_t> order(static_cast<size_t>(b));
  std::iota(order.begin(), order.end(), int64_t{0});
  int64_t cells = 0;  // total problem size, to skip the helpers for small batches
  for (int64_t e = 0; e < b; ++e) cells += n * (n_present.empty() ? m : std::max<int64_t>(n_present[e], 1));
  if (!n_present.empty())
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t x, int64_t y) { return n_present[x] > n_present[y]; });
  const int64_t workers = cells < kCellsPerHelper ? 1 : std::min<int64_t>(b, at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "hungarian_matcher", [&] {
    const scalar_t* base = cost.data_ptr<scalar_t>();
    share_loop(b, workers, [&](int64_t t) {
      const int64_t e = order[t];
      std::optional<int64_t> present;
      if (!n_present.empty()) present = n_present[e];
      match_one(base + e * sb, n, m, sr, sc, present, out_ptr + e * 2 * k, out_ptr + e * 2 * k + k);
    });
  });
  return single ? out.squeeze(0) : out;
}

}  // namespace scenic::model
