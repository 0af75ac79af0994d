// The inner loops of the exact matcher's solver (hungarian.cc, Scenic's
// hungarian_matcher): branch-free scans over one padded row of a dense cost matrix.
// Written with SSE2 intrinsics on x86-64, the row scan also in AVX2 where the CPU has
// it (picked at run time: the build targets the x86-64 baseline), plain loops
// elsewhere; every version returns the same values and indices.
//
// Row layout: ld entries, ld a multiple of 4 (real columns, then +inf padding). Rows,
// v, w, d, pred and h hold at least ld entries; nothing needs to be aligned.
#pragma once

#include <cstdint>

namespace scenic::model::lap {

struct RowMin {
  double u1, u2;  // smallest and second smallest of h (u2 == u1 on a tie)
  int64_t j1;     // first column attaining u1
};

// h[j] = c[j] - v[j] for j < ld (written out), its smallest value with the first index
// attaining it, and its second smallest value. At least one h[j] must be finite.
RowMin row_min2(const double* c, const double* v, int64_t ld, double* h);
// The same without the run-time AVX2 choice (SSE2 on x86-64), for tests.
RowMin row_min2_baseline(const double* c, const double* v, int64_t ld, double* h);

// One Dijkstra step from row i of the shortest-augmenting-path search, with distance
// offset base = dist(i) - u_i: for every column, d[j] = min(d[j], base + c[j] + w[j]),
// setting pred[j] = i where that improved d[j]. Returns the column of the smallest d
// (the first one per lane; across lanes, on equal distances, one with row4col < 0, a
// free column where the search can stop), or -1 if every d is +inf. Callers keep w[j]
// = -v[j] for open columns and +inf for final ones (whose d is +inf), so final columns
// neither change nor win, without a branch.
int64_t relax_row(const double* c, const double* w, double base, int64_t i, int64_t ld,
                  double* d, int64_t* pred, const int64_t* row4col);

// True when every |p[j]| <= 1e300 for j < n: one test flags NaN, +-inf and huge entries
// alike (the loader's slow path for them is rare).
bool all_moderate(const double* p, int64_t n);

}  // namespace scenic::model::lap
