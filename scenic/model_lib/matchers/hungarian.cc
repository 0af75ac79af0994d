// Shortest-augmenting-path assignment and Scenic's hungarian_matcher on tensors.
// See hungarian.h for the algorithm, the output order and the non-finite rule.
#include "scenic/model_lib/matchers/hungarian.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Scratch arrays reused across the matrices one thread solves (no allocation per call
// once warm).
struct Workspace {
  std::vector<double> u, v, dist, transposed;
  std::vector<int64_t> row4col, col4row, pred, cols, free_rows, next_free;
};

Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

// Jonker-Volgenant's augmenting row reduction, two passes: a free row takes the column
// of its smallest reduced cost c_ij - v_j (u1), lowering that column's v by the gap to the
// second smallest (u2) so the row stays tight there with u_i = u2 and every other row
// stays feasible (v only ever decreases). A row it displaces is retried at once when
// the gap was positive, else in the next pass. Columns once matched stay matched, so
// never-matched columns keep v = 0, the maximum. The number of steps is capped: what is
// still free afterwards goes to the exact shortest-path phase.
void augmenting_row_reduction(const double* c, int64_t nr, int64_t nc, Workspace& ws) {
  auto& v = ws.v;
  auto& row4col = ws.row4col;
  auto& col4row = ws.col4row;
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
      // Smallest and second smallest reduced cost. A new minimum is rare after the first
      // few columns, so blocks of four are screened against u2 first (cheap, branch
      // predictable, vectorizable) and only a block that holds a candidate is examined.
      const double* ci = c + i * nc;
      double u1 = kInf, u2 = kInf;
      int64_t j1 = -1, j2 = -1;
      auto consider = [&](int64_t j, double h) {
        if (h < u2) {
          if (h < u1) {
            u2 = u1;
            j2 = j1;
            u1 = h;
            j1 = j;
          } else {
            u2 = h;
            j2 = j;
          }
        }
      };
      int64_t j = 0;
      for (; j + 4 <= nc; j += 4) {
        const double h0 = ci[j] - v[j], h1 = ci[j + 1] - v[j + 1];
        const double h2 = ci[j + 2] - v[j + 2], h3 = ci[j + 3] - v[j + 3];
        if (std::min(std::min(h0, h1), std::min(h2, h3)) < u2 || j1 < 0 || j2 < 0) {
          consider(j, h0);
          consider(j + 1, h1);
          consider(j + 2, h2);
          consider(j + 3, h3);
        }
      }
      for (; j < nc; ++j) consider(j, ci[j] - v[j]);
      if (j1 < 0) j1 = 0;  // only with NaN, which load_problem has removed
      if (j2 < 0) j2 = j1 == 0 ? 1 : 0;
      int64_t displaced = row4col[j1];
      const bool gap = u1 < u2;
      if (gap) {
        v[j1] -= u2 - u1;
      } else if (displaced >= 0) {
        j1 = j2;  // equal costs: prefer a column nobody else has
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

// Core solver: nr <= nc, c row-major [nr, nc], finite. Fills ws.col4row (size nr).
//
// Invariants (reduced cost r_ij = c_ij - u_i - v_j): r >= 0 everywhere, r == 0 on matched
// pairs, and, when nr < nc, every free column has v_j = 0 = max_j v_j. A partial matching
// with such duals is optimal among matchings of the same rows (LP duality against the
// problem padded with zero-cost dummy rows), and augmenting along a shortest reduced-cost
// path keeps all three invariants.
void solve_short_rows(const double* c, int64_t nr, int64_t nc, Workspace& ws) {
  auto& u = ws.u;
  auto& v = ws.v;
  auto& dist = ws.dist;
  auto& row4col = ws.row4col;
  auto& col4row = ws.col4row;
  auto& pred = ws.pred;
  auto& cols = ws.cols;
  u.assign(nr, 0.0);
  v.assign(nc, 0.0);
  dist.resize(nc);
  row4col.assign(nc, -1);
  col4row.assign(nr, -1);
  pred.resize(nc);
  cols.resize(nc);
  if (nr == 0) return;

  // Square problems start from the column reduction v_j = min_i c_ij, each column
  // taking its argmin row when that row is still free (tight: c_ij - v_j = 0 = u_i).
  // Rectangular ones start from v = 0 with every row free: the columns left free at
  // the end must keep the largest v, and only columns that get matched are lowered.
  if (nr == nc) {
    for (int64_t j = 0; j < nc; ++j) {
      double m = c[j];
      int64_t arg = 0;
      for (int64_t i = 1; i < nr; ++i) {
        if (c[i * nc + j] < m) {
          m = c[i * nc + j];
          arg = i;
        }
      }
      v[j] = m;
      if (col4row[arg] < 0) {
        col4row[arg] = j;
        row4col[j] = arg;
      }
    }
  }
  augmenting_row_reduction(c, nr, nc, ws);
  // Matched rows: tight. (Free rows' u does not matter: a search starts from any u.)
  for (int64_t i = 0; i < nr; ++i)
    if (col4row[i] >= 0) u[i] = c[i * nc + col4row[i]] - v[col4row[i]];

  // One Dijkstra search (dense, O(nc) per step) per still-free row.
  for (int64_t cur = 0; cur < nr; ++cur) {
    if (col4row[cur] >= 0) continue;
    for (int64_t j = 0; j < nc; ++j) {
      dist[j] = kInf;
      pred[j] = cur;  // every predecessor chain must end at `cur`, even on overflow
      cols[j] = j;
    }
    // cols[0, todo) are the columns whose distance is not final yet; cols[todo, nc)
    // the finalized ones, in the order they were finalized.
    int64_t todo = nc;
    int64_t i = cur;
    double min_val = 0.0;  // distance of row i (= of the column that led to it)
    int64_t sink = -1;
    while (sink < 0) {
      const double* ci = c + i * nc;
      const double base = min_val - u[i];
      double best = kInf;
      int64_t best_k = -1;
      bool best_free = false;
      for (int64_t k = 0; k < todo; ++k) {
        const int64_t j = cols[k];
        const double r = base + ci[j] - v[j];
        if (r < dist[j]) {
          dist[j] = r;
          pred[j] = i;
        }
        const double dj = dist[j];
        // Among equal distances prefer a free column: the search can stop there.
        if (dj < best || (dj == best && !best_free && row4col[j] < 0)) {
          best = dj;
          best_k = k;
          best_free = row4col[j] < 0;
        }
      }
      if (best_k < 0) best_k = 0;  // unreachable with finite costs; keeps termination
      const int64_t j = cols[best_k];
      std::swap(cols[best_k], cols[--todo]);
      min_val = dist[j];
      if (row4col[j] < 0) {
        sink = j;
      } else {
        i = row4col[j];
      }
    }
    // Dual update over the finalized columns (the sink's change is 0).
    u[cur] += min_val;
    for (int64_t k = todo; k < nc; ++k) {
      const int64_t j = cols[k];
      if (j == sink) continue;
      const double delta = min_val - dist[j];
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

// One [n_rows, n_present] block of a strided matrix into the workspace as a finite,
// row-major problem with the short side as rows. Returns true when transposed.
template <typename T>
bool load_problem(const T* src, int64_t n_rows, int64_t n_present, int64_t row_stride,
                  int64_t col_stride, std::vector<double>& out) {
  const bool transpose = n_rows > n_present;
  out.resize(static_cast<size_t>(n_rows * n_present));
  // Copy and, in the same pass, flag anything that needs the slow path (boolean flags:
  // a floating-point accumulator would chain every element on the add latency).
  bool all_finite = true, huge = false;
  double* o = out.data();
  for (int64_t i = 0; i < n_rows; ++i) {
    const T* row = src + i * row_stride;
    double* dst = transpose ? o + i : o + i * n_present;
    const int64_t step = transpose ? n_rows : 1;
    for (int64_t j = 0; j < n_present; ++j) {
      const double x = static_cast<double>(row[j * col_stride]);
      dst[j * step] = x;
      all_finite &= (x - x == 0.0);  // false for NaN and +-inf
      huge |= std::abs(x) > 1e300;
    }
  }
  if (!all_finite) replace_non_finite(o, static_cast<int64_t>(out.size()));
  // Reduced costs take differences of entries; keep them finite by an exact power-of-2
  // rescale (the optimal assignment is invariant under positive scaling).
  double max_abs = 0.0;
  if (huge || !all_finite)
    for (double x : out) max_abs = std::max(max_abs, std::abs(x));
  if (max_abs > 1e300) {
    const double scale = std::ldexp(1.0, -std::ilogb(max_abs) + 996);  // max_abs -> < 2^997
    for (double& x : out) x *= scale;
  }
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
  const bool transposed = load_problem(src, n, present, row_stride, col_stride, ws.transposed);
  const int64_t nr = transposed ? present : n;
  const int64_t nc = transposed ? n : present;
  solve_short_rows(ws.transposed.data(), nr, nc, ws);

  int64_t written = 0;
  if (transposed) {
    // Short rows are the original columns, already ascending.
    for (int64_t j = 0; j < nr; ++j) {
      out_rows[written] = ws.col4row[j];
      out_cols[written] = j;
      ++written;
    }
  } else {
    for (int64_t j = 0; j < nc; ++j) {
      if (ws.row4col[j] < 0) continue;
      out_rows[written] = ws.row4col[j];
      out_cols[written] = j;
      ++written;
    }
  }
  if (present < m) {
    // Scenic's slicer: padded columns take the smallest unmatched rows, in order
    // (valid because N >= M was checked).
    std::vector<char> used(static_cast<size_t>(n), 0);
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
  double bound = 0.0;
  if (hi >= lo) {
    bound = hi + (hi - lo) + 1.0;
    if (!std::isfinite(bound)) bound = hi;
  }
  if (any_bad)
    for (int64_t t = 0; t < n; ++t)
      if (!std::isfinite(data[t])) data[t] = bound;
  return bound;
}

std::vector<int64_t> linear_sum_assignment(const double* cost, int64_t n_rows, int64_t n_cols) {
  if (n_rows < 0 || n_cols < 0) throw scenic::Error("linear_sum_assignment: negative size");
  Workspace& ws = thread_workspace();
  std::vector<int64_t> result(static_cast<size_t>(n_rows), -1);
  if (n_rows <= n_cols) {
    solve_short_rows(cost, n_rows, n_cols, ws);
    std::copy(ws.col4row.begin(), ws.col4row.end(), result.begin());
  } else {
    auto& t = ws.transposed;
    t.resize(static_cast<size_t>(n_rows * n_cols));
    for (int64_t i = 0; i < n_rows; ++i)
      for (int64_t j = 0; j < n_cols; ++j) t[j * n_rows + i] = cost[i * n_cols + j];
    solve_short_rows(t.data(), n_cols, n_rows, ws);
    for (int64_t j = 0; j < n_cols; ++j) result[ws.col4row[j]] = j;
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
  AT_DISPATCH_FLOATING_TYPES(cost.scalar_type(), "hungarian_matcher", [&] {
    const scalar_t* base = cost.data_ptr<scalar_t>();
    at::parallel_for(0, b, 1, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        std::optional<int64_t> present;
        if (!n_present.empty()) present = n_present[e];
        match_one(base + e * sb, n, m, sr, sc, present, out_ptr + e * 2 * k,
                  out_ptr + e * 2 * k + k);
      }
    });
  });
  return single ? out.squeeze(0) : out;
}

}  // namespace scenic::model
