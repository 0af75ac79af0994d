// Tests for the matcher's row kernels (lap_kernels.h): hand-worked rows with ties in
// different vector lanes and +inf padding, and agreement with a plain scalar reading
// of the contract on random rows full of ties, for the version the machine picks (AVX2
// or SSE2) and the baseline one.
#include "scenic/model_lib/matchers/lap_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace scenic::model::lap {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(LapKernels, RowMin2ByHand) {
  for (auto* scan : {&row_min2, &row_min2_baseline}) {
    std::vector<double> h(12);
    // Ties at j = 1 and j = 3 (different vector lanes): the first index wins, u2 == u1.
    const std::vector<double> c = {3, 1, 4, 1, 5, 9, kInf, kInf};
    std::vector<double> v(8, 0.0);
    RowMin r = scan(c.data(), v.data(), 8, h.data());
    EXPECT_EQ(r.u1, 1.0);
    EXPECT_EQ(r.j1, 1);
    EXPECT_EQ(r.u2, 1.0);
    // v_1 = 2: h = {3, -1, 4, 1, 5, 9, inf, inf} -> u1 = -1 at 1, u2 = 1; h written out.
    v[1] = 2.0;
    r = scan(c.data(), v.data(), 8, h.data());
    EXPECT_EQ(r.u1, -1.0);
    EXPECT_EQ(r.j1, 1);
    EXPECT_EQ(r.u2, 1.0);
    EXPECT_EQ(h[1], -1.0);
    EXPECT_EQ(h[5], 9.0);
    EXPECT_EQ(h[7], kInf);
    // Decreasing row 10, 9, ..., 1 and two padding entries: u1 = 1 at the last real
    // column (9), u2 = 2.
    std::vector<double> d(12, kInf), zero(12, 0.0);
    for (int j = 0; j < 10; ++j) d[j] = 10 - j;
    r = scan(d.data(), zero.data(), 12, h.data());
    EXPECT_EQ(r.u1, 1.0);
    EXPECT_EQ(r.j1, 9);
    EXPECT_EQ(r.u2, 2.0);
  }
}

TEST(LapKernels, RowMin2MatchesScalarOnTies) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> level(0, 5);
  for (int64_t ld : {4, 8, 12, 100}) {
    for (int rep = 0; rep < 200; ++rep) {
      const int64_t real = std::max<int64_t>(1, ld - rep % 4);  // 0..3 padding entries
      std::vector<double> c(ld, kInf), v(ld, 0.0), h(ld);
      for (int64_t j = 0; j < real; ++j) {
        c[j] = level(rng);
        v[j] = -0.5 * level(rng);
      }
      const RowMin r = row_min2(c.data(), v.data(), ld, h.data());
      std::vector<double> h_base(ld);
      const RowMin b = row_min2_baseline(c.data(), v.data(), ld, h_base.data());
      EXPECT_TRUE(b.u1 == r.u1 && b.u2 == r.u2 && b.j1 == r.j1 && h_base == h) << ld << " " << rep;
      std::vector<double> want(ld);
      for (int64_t j = 0; j < ld; ++j) want[j] = c[j] - v[j];
      const int64_t j1 = std::min_element(want.begin(), want.end()) - want.begin();  // first
      std::vector<double> sorted = want;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(h, want);
      EXPECT_EQ(r.j1, j1) << ld << " " << rep;
      EXPECT_EQ(r.u1, sorted[0]);
      EXPECT_EQ(r.u2, sorted[1]);
    }
  }
}

TEST(LapKernels, RelaxRowByHand) {
  // Row i = 7, base = 0.5; v = {0, 1}, column 2 final (w = +inf), column 3 padding.
  const std::vector<double> c = {1, 2, 3, kInf};
  const std::vector<double> w = {0, -1, kInf, kInf};
  auto run = [&](std::vector<int64_t> row4col, std::vector<double>& d, std::vector<int64_t>& pred) {
    d = {2, 1.5, kInf, kInf};
    pred = {3, 3, 3, 3};
    return relax_row(c.data(), w.data(), 0.5, 7, 4, d.data(), pred.data(), row4col.data());
  };
  std::vector<double> d;
  std::vector<int64_t> pred;
  // Candidates r = 0.5 + c + w = {1.5, 1.5, inf, inf}: column 0 improves (2 -> 1.5, pred
  // 7), column 1 ties its 1.5 and keeps pred 3. Both end at 1.5, in different lanes:
  // the free one wins, else the first.
  EXPECT_EQ(run({5, -1, 6, -1}, d, pred), 1);
  EXPECT_EQ(d, (std::vector<double>{1.5, 1.5, kInf, kInf}));
  EXPECT_EQ(pred, (std::vector<int64_t>{7, 3, 3, 3}));
  EXPECT_EQ(run({-1, 5, 6, -1}, d, pred), 0);
  EXPECT_EQ(run({4, 5, 6, -1}, d, pred), 0);
  // Nothing finite: -1.
  const std::vector<double> all_inf(4, kInf);
  std::vector<double> dd(4, kInf);
  std::vector<int64_t> pp(4, 0), r4c(4, -1);
  EXPECT_EQ(relax_row(all_inf.data(), w.data(), 0.0, 0, 4, dd.data(), pp.data(), r4c.data()), -1);
}

TEST(LapKernels, AllModerate) {
  std::vector<double> p = {1, -1e300, 1e300, 0, -3, 2, 7};  // odd length: a scalar tail
  EXPECT_TRUE(all_moderate(p.data(), 7));
  for (double bad : {std::nan(""), kInf, -kInf, 1.0000001e300, -2e300}) {
    for (int64_t at : {0, 3, 6}) {
      auto q = p;
      q[at] = bad;
      EXPECT_FALSE(all_moderate(q.data(), 7)) << bad << " at " << at;
      EXPECT_EQ(all_moderate(q.data(), at), true) << "entries before " << at;
    }
  }
}

}  // namespace
}  // namespace scenic::model::lap
