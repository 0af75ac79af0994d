// Exact minimum-cost bipartite matching: Scenic's model_lib/matchers/hungarian.py
// (`hungarian_matcher`, which calls scipy's linear_sum_assignment on the host through
// `cpu_matcher` + `slicer`) and, by the same answer, the TPU variants in
// hungarian_jax.py / hungarian_cover.py.
//
// The solver is our own shortest-augmenting-path algorithm with dual potentials
// (Jonker-Volgenant style, O(K^2 L) for K = min(N, M), L = max(N, M)): a column
// reduction (square only) and JV's augmenting row reduction give feasible duals and a
// partial matching on tight edges, then each still-free row is matched by one Dijkstra
// search over reduced costs. Rows are
// always the short side (the matrix is transposed internally when N > M), which keeps
// the problem exact for rectangles: the never-matched columns all keep the largest
// column potential (0), which is the dual of padding with zero-cost dummy rows.
//
// Output layout, as Scenic's hungarian_matcher: int64 [B, 2, K], K = min(N, M); [:, 0]
// are row (prediction) indices, [:, 1] column (target) indices, the pairs ordered by
// ascending COLUMN index. Scenic gets that order because it runs scipy on cost.T (scipy
// sorts the rows of what it is given); for the DETR case N >= M the columns are simply
// 0..M-1.
//
// Non-finite costs. scipy raises on NaN and on infeasible (all +inf) problems; Scenic's
// DETR cost replaces NaN/+inf/-inf by an upper bound before matching. The matcher
// cannot know DETR's bound, so it applies the same idea per matrix: with hi / lo the
// largest / smallest finite entry of the (sliced) matrix,
//     bound = hi + (hi - lo) + 1     (0 when no entry is finite; hi if that overflows)
// replaces every NaN, +inf and -inf. The bound exceeds every finite entry by more than
// the finite range, so a non-finite pair is avoided whenever that costs at most one
// extra pair at the bound. Matrices with entries beyond 1e300 in magnitude are scaled
// by an exact power of two first, so reduced costs never overflow. The search always
// terminates (each Dijkstra step finalizes
// one column, and a free column always exists on the long side).
//
// Padded target columns (Scenic's `slicer`, n_cols = number of real targets per example,
// padding trailing): only columns [0, max(n_cols[b], 1)) are matched; the remaining
// padded columns are then paired, in order, with the smallest-index rows left
// unmatched. This requires N >= M, as Scenic does.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace scenic::model {

// Minimum-cost assignment of a dense, row-major, finite cost matrix [n_rows, n_cols]
// with |entries| <= 1e300 (hungarian_matcher rescales larger ones; this does not).
// Returns, for every row, its column, or -1 for rows left unmatched when
// n_rows > n_cols (exactly min(n_rows, n_cols) pairs are made).
std::vector<int64_t> linear_sum_assignment(const double* cost, int64_t n_rows, int64_t n_cols);

// Replaces NaN / +inf / -inf in data[0..n) by the bound described above; returns it.
double replace_non_finite(double* data, int64_t n);

// Scenic's hungarian_matcher. cost: [N, M] -> [2, K] or [B, N, M] -> [B, 2, K], any
// floating dtype, any device (solved on the CPU; output on the CPU, int64). n_cols: [B]
// integers (or [] for a single matrix), the number of non-padded columns; requires
// N >= M. Batches of more than ~32k cost entries in all are shared, element by element,
// between the calling thread and at::get_num_threads() - 1 tasks of ATen's inter-op
// pool (at::launch); the result does not depend on the thread count.
torch::Tensor hungarian_matcher(const torch::Tensor& cost,
                                const std::optional<torch::Tensor>& n_cols = std::nullopt);

}  // namespace scenic::model
