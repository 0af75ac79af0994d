// Tests for the exact matcher (Scenic's hungarian_matcher): optimal cost equal to brute
// force over all assignments for every N, M in 1..7; equal to scipy's
// linear_sum_assignment on random and adversarial matrices up to 300x300 (fixture
// scenic/model_lib/testdata/matcher_cases.json from tools/fixtures/matcher_reference.py,
// which stores a generator recipe replayed here bit for bit); output layout and order;
// Scenic's padded-column slicer; non-finite costs.
#include "scenic/model_lib/matchers/hungarian.h"

#include <gtest/gtest.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

const nlohmann::json& fixture() {
  static const nlohmann::json data = [] {
    const std::string path = std::string(SCENIC_SOURCE_DIR) + "/scenic/model_lib/testdata/matcher_cases.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
  }();
  return data;
}

// The recipe of tools/fixtures/matcher_reference.py: splitmix64 uniforms in [0, 1).
double splitmix_uniform(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

torch::Tensor make_case(const nlohmann::json& c) {
  const int64_t rows = c.at("rows"), cols = c.at("cols");
  const uint64_t seed = c.at("seed");
  const double lo = c.at("lo"), hi = c.at("hi"), huge = c.at("huge_frac"), bad = c.at("nonfinite_frac");
  const int64_t levels = c.at("levels");
  auto t = torch::empty({rows, cols}, torch::kDouble);
  double* p = t.data_ptr<double>();
  for (int64_t k = 0; k < rows * cols; ++k) {
    const double u = splitmix_uniform(seed, k);
    double x = levels > 0 ? lo + std::floor(u * static_cast<double>(levels)) : lo + (hi - lo) * u;
    const double w = splitmix_uniform(seed + 7777, k);
    if (w < huge) x = 1e30;
    if (w < bad) x = -std::numeric_limits<double>::infinity();
    if (w < 2 * bad / 3) x = std::numeric_limits<double>::infinity();
    if (w < bad / 3) x = std::numeric_limits<double>::quiet_NaN();
    p[k] = x;
  }
  return t;
}

// Checks [2, K] is a valid matching ordered by column; returns its cost on `cost`
// (non-finite entries counted as `bound`).
double matching_cost(const torch::Tensor& idx, const torch::Tensor& cost, double bound = 0.0) {
  const int64_t n = cost.size(0), m = cost.size(1), k = std::min(n, m);
  EXPECT_EQ(idx.sizes(), (std::vector<int64_t>{2, k}));
  EXPECT_EQ(idx.scalar_type(), torch::kLong);
  auto c = cost.to(torch::kDouble).contiguous();
  std::set<int64_t> rows, cols;
  long double total = 0;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t r = idx[0][t].item<int64_t>(), col = idx[1][t].item<int64_t>();
    EXPECT_TRUE(r >= 0 && r < n && col >= 0 && col < m) << r << "," << col;
    if (t > 0) EXPECT_GT(col, idx[1][t - 1].item<int64_t>()) << "pairs must be ordered by column";
    rows.insert(r);
    cols.insert(col);
    const double x = c[r][col].item<double>();
    total += std::isfinite(x) ? x : bound;
  }
  EXPECT_EQ(static_cast<int64_t>(rows.size()), k);
  EXPECT_EQ(static_cast<int64_t>(cols.size()), k);
  return static_cast<double>(total);
}

// Minimum over all injective maps from the short side to the long side.
double brute_force(const torch::Tensor& cost) {
  auto c = cost.size(0) <= cost.size(1) ? cost : cost.t();
  c = c.contiguous();
  const int64_t s = c.size(0), l = c.size(1);
  const double* p = c.data_ptr<double>();
  std::vector<int64_t> perm(l);
  std::iota(perm.begin(), perm.end(), 0);
  double best = std::numeric_limits<double>::infinity();
  do {  // every permutation of the long side; its first s entries enumerate the maps
    double total = 0;
    for (int64_t i = 0; i < s; ++i) total += p[i * l + perm[i]];
    best = std::min(best, total);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

TEST(HungarianMatcher, EqualsBruteForceOnAllSmallSizes) {
  torch::manual_seed(0);
  for (int64_t n = 1; n <= 7; ++n) {
    for (int64_t m = 1; m <= 7; ++m) {
      for (int rep = 0; rep < 3; ++rep) {
        // Rep 2 uses few integer levels, so ties are everywhere.
        auto cost = rep < 2 ? torch::rand({n, m}, torch::kDouble) * 10 - 5
                            : torch::randint(0, 3, {n, m}, torch::kDouble);
        const double ours = matching_cost(hungarian_matcher(cost), cost);
        EXPECT_NEAR(ours, brute_force(cost), 1e-12) << n << "x" << m << " rep " << rep;
      }
    }
  }
}

TEST(HungarianMatcher, EqualsScipyOnFixtureCases) {
  const auto& cases = fixture().at("cases");
  ASSERT_GE(cases.size(), 25u);
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    auto cost = make_case(c);
    // The replayed matrix is the one scipy saw.
    auto flat = cost.flatten();
    const auto& first = c.at("first");
    for (size_t t = 0; t < first.size(); ++t) {
      const double x = flat[static_cast<int64_t>(t)].item<double>();
      if (first[t].is_string())
        EXPECT_EQ(first[t].get<std::string>(), std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf")) << name;
      else
        EXPECT_EQ(x, first[t].get<double>()) << name;
    }
    auto finite = torch::isfinite(cost);
    EXPECT_EQ((~finite).sum().item<int64_t>(), c.at("num_nonfinite").get<int64_t>()) << name;
    EXPECT_NEAR(cost.masked_select(finite).sum().item<double>(), c.at("finite_sum").get<double>(),
                1e-9 * std::max(1.0, std::abs(c.at("finite_sum").get<double>())))
        << name;

    double bound = 0.0;
    if (!c.at("bound").is_null()) {
      bound = c.at("bound");
      auto copy = cost.clone();
      EXPECT_DOUBLE_EQ(replace_non_finite(copy.data_ptr<double>(), copy.numel()), bound) << name;
      EXPECT_TRUE(torch::isfinite(copy).all().item<bool>()) << name;
    }
    auto idx = hungarian_matcher(cost);
    const double ours = matching_cost(idx, cost, bound);
    const double scipy = c.at("scipy_cost");
    EXPECT_NEAR(ours, scipy, 1e-9 * std::max(1.0, std::abs(scipy))) << name;
    EXPECT_EQ(idx.size(1), c.at("num_pairs").get<int64_t>()) << name;
  }
}

// Scenic's test_manual_cost_matrix: -100 on the pairs to take, 100 elsewhere.
TEST(HungarianMatcher, ScenicManualCase) {
  auto cost = torch::tensor({-100.f, 100.f, 100.f, -100.f, 100.f, 100.f,    //
                             -100.f, 100.f, 100.f, 100.f, 100.f, -100.f})
                  .reshape({2, 3, 2});
  auto idx = hungarian_matcher(cost);  // [2, 2, 2]
  EXPECT_TRUE(torch::equal(idx[0], torch::tensor({0, 1, 0, 1}, torch::kLong).reshape({2, 2})));
  EXPECT_TRUE(torch::equal(idx[1], torch::tensor({0, 2, 0, 1}, torch::kLong).reshape({2, 2})));
}

TEST(HungarianMatcher, BatchedLayoutAndOrder) {
  torch::manual_seed(1);
  for (auto [n, m] : std::vector<std::pair<int64_t, int64_t>>{{6, 4}, {3, 6}, {5, 5}}) {
    auto cost = torch::rand({7, n, m});  // float32 input
    auto idx = hungarian_matcher(cost);
    const int64_t k = std::min(n, m);
    ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{7, 2, k}));
    for (int64_t b = 0; b < 7; ++b) {
      auto single = hungarian_matcher(cost[b].to(torch::kDouble));
      EXPECT_TRUE(torch::equal(idx[b], single)) << "batch element " << b;
      EXPECT_NEAR(matching_cost(idx[b], cost[b]), brute_force(cost[b].to(torch::kDouble)), 1e-5);
      // N >= M: every column once, in order, as Scenic's lsa(cost.T) returns them.
      if (n >= m) EXPECT_TRUE(torch::equal(idx[b][1], torch::arange(m, torch::kLong)));
    }
  }
  // Empty sides give [B, 2, 0].
  EXPECT_EQ(hungarian_matcher(torch::zeros({3, 0, 4})).sizes(), (std::vector<int64_t>{3, 2, 0}));
  EXPECT_EQ(hungarian_matcher(torch::zeros({3, 4, 0})).sizes(), (std::vector<int64_t>{3, 2, 0}));
}

TEST(HungarianMatcher, PaddedColumnsAsScenicSlicer) {
  // N = 5 predictions, M = 4 target slots; the real targets are the first n_cols.
  torch::manual_seed(2);
  auto cost = torch::rand({3, 5, 4}, torch::kDouble);
  auto n_cols = torch::tensor({2, 0, 4}, torch::kLong);
  auto idx = hungarian_matcher(cost, n_cols);
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{3, 2, 4}));
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t present = std::max<int64_t>(n_cols[b].item<int64_t>(), 1);
    // The real columns carry an optimal matching of the sliced matrix...
    auto sliced = cost[b].slice(1, 0, present);
    auto head = idx[b].slice(1, 0, present);
    EXPECT_NEAR(matching_cost(head, sliced), brute_force(sliced), 1e-12) << b;
    // ...and the padded columns take the smallest unmatched rows, in order.
    std::set<int64_t> used;
    for (int64_t t = 0; t < present; ++t) used.insert(idx[b][0][t].item<int64_t>());
    int64_t row = 0;
    for (int64_t col = present; col < 4; ++col) {
      while (used.count(row)) ++row;
      EXPECT_EQ(idx[b][0][col].item<int64_t>(), row) << b;
      EXPECT_EQ(idx[b][1][col].item<int64_t>(), col) << b;
      used.insert(row);
    }
  }
  // Example 0 by hand: rows {1, 3} matched to columns {0, 1} -> padding takes 0, 2.
  auto hand = torch::full({1, 5, 4}, 9.0, torch::kDouble);
  hand[0][3][0] = 1.0;
  hand[0][1][1] = 1.0;
  auto hidx = hungarian_matcher(hand, torch::tensor({2}, torch::kLong));
  EXPECT_TRUE(torch::equal(hidx[0], torch::tensor({3, 1, 0, 2, 0, 1, 2, 3}, torch::kLong).reshape({2, 4})));

  EXPECT_THROW(hungarian_matcher(torch::rand({1, 3, 4}), torch::tensor({2})), scenic::Error);  // N < M
  EXPECT_THROW(hungarian_matcher(torch::rand({2, 5, 4}), torch::tensor({2})), scenic::Error);  // size
  EXPECT_THROW(hungarian_matcher(torch::rand({1, 5, 4}), torch::tensor({5})), scenic::Error);  // > M
}

TEST(HungarianMatcher, NonFiniteCostsUseTheBound) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  // [[nan, 1], [1, nan]]: finite range [1, 1] -> bound = 1 + 0 + 1 = 2; the anti-diagonal
  // (cost 2) beats the diagonal (4).
  auto a = torch::tensor({nan, 1.0, 1.0, nan}).reshape({2, 2});
  EXPECT_TRUE(torch::equal(hungarian_matcher(a), torch::tensor({1, 0, 0, 1}, torch::kLong).reshape({2, 2})));
  // -inf is NOT attractive (DETR maps it to the upper bound too): [[-inf, 5], [5, 0]]:
  // range [0, 5] -> bound = 5 + 5 + 1 = 11; diagonal 11 + 0 = 11 > anti-diagonal 10.
  auto b = torch::tensor({-inf, 5.0, 5.0, 0.0}).reshape({2, 2});
  EXPECT_TRUE(torch::equal(hungarian_matcher(b), torch::tensor({1, 0, 0, 1}, torch::kLong).reshape({2, 2})));
  // Nothing finite, and a mix of huge and non-finite: terminates with a valid matching.
  auto all_nan = torch::full({2, 6, 6}, nan);
  matching_cost(hungarian_matcher(all_nan)[0], all_nan[0]);
  auto mixed = torch::tensor({1e308, -1e308, inf, nan, 1e308, -inf, 3.0, -1e308, nan}, torch::kDouble)
                   .reshape({3, 3});
  matching_cost(hungarian_matcher(mixed), mixed);
}

// The loader has three paths: a vectorized 2x2-block transpose (contiguous, N > M), a
// strided element loop (other strides) and a row copy (N <= M); odd sizes exercise the
// block tails. All three must see the same problem: the same optimal cost on cost, on
// cost.T and on a non-contiguous view of cost, in float32 and float64, also with
// non-finite entries in the tail row and column (costed at the bound of the matrix).
TEST(HungarianMatcher, LoadPathsAgree) {
  torch::manual_seed(3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (auto [n, m] : std::vector<std::pair<int64_t, int64_t>>{{101, 37}, {9, 3}, {7, 5}, {33, 1}, {64, 63}, {2, 1}}) {
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      for (bool non_finite : {false, true}) {
        auto cost = (torch::rand({n, m}, torch::kDouble) * 4 - 1).to(dtype);  // [N, M]
        if (non_finite) {
          cost[n - 1][m - 1] = nan;  // tail row and column of the 2x2 blocks
          cost[0][m - 1] = inf;
          cost[n - 1][0] = -inf;
        }
        auto as_double = cost.to(torch::kDouble);
        double bound = 0.0;
        if (non_finite) {
          auto copy = as_double.clone();
          bound = replace_non_finite(copy.data_ptr<double>(), copy.numel());
        }
        const std::string what = std::to_string(n) + "x" + std::to_string(m) + " " +
                                 c10::toString(dtype) + (non_finite ? " non-finite" : "");
        auto fast = hungarian_matcher(cost);                          // block transpose
        auto strided = hungarian_matcher(cost.t().contiguous().t());  // strides {1, N}
        auto rows = hungarian_matcher(cost.t().contiguous());         // [M, N]: row copy
        const double want = matching_cost(fast, as_double, bound);
        EXPECT_TRUE(torch::equal(fast, strided)) << what;
        // rows pairs (target, prediction): swap back to (prediction, target) order.
        auto swapped = torch::stack({rows[1], rows[0]});
        auto by_col = swapped.index_select(1, std::get<1>(swapped[1].sort()));
        EXPECT_NEAR(matching_cost(by_col, as_double, bound), want, 1e-9 * std::max(1.0, std::abs(want))) << what;
        if (n <= 9 && !non_finite) EXPECT_NEAR(want, brute_force(as_double), 1e-9) << what;
      }
    }
  }
}

// A batch large enough to be shared among threads (helpers on ATen's inter-op pool)
// gives, element for element, what solving each element alone (serially) gives.
TEST(HungarianMatcher, LargeBatchSameAsOneByOne) {
  torch::manual_seed(4);
  const int64_t b = 24, n = 100, m = 60;
  auto cost = torch::rand({b, n, m});  // float32, [B, N, M]
  auto n_cols = torch::randint(0, m + 1, {b}, torch::kLong);
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto batched = hungarian_matcher(cost, n_cols);
  auto unpadded = hungarian_matcher(cost);
  at::set_num_threads(threads);
  ASSERT_EQ(batched.sizes(), (std::vector<int64_t>{b, 2, m}));
  for (int64_t e = 0; e < b; ++e) {
    EXPECT_TRUE(torch::equal(batched[e], hungarian_matcher(cost.slice(0, e, e + 1), n_cols.slice(0, e, e + 1))[0]))
        << e;
    EXPECT_TRUE(torch::equal(unpadded[e], hungarian_matcher(cost[e]))) << e;
  }
}

TEST(HungarianMatcher, RawSolverAndErrors) {
  // [[4, 1, 3], [2, 0, 5]] (2x3): best is 1->1 (0) with 0->2 (3) = 3, or 0->1 (1) with
  // 1->0 (2) = 3: a tie; both rows assigned, cost 3.
  const double c[] = {4, 1, 3, 2, 0, 5};
  auto rows = linear_sum_assignment(c, 2, 3);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(c[rows[0]] + c[3 + rows[1]], 3.0);
  // Transposed (3x2): one row stays unmatched.
  const double ct[] = {4, 2, 1, 0, 3, 5};
  auto rows_t = linear_sum_assignment(ct, 3, 2);
  EXPECT_EQ(std::count(rows_t.begin(), rows_t.end(), -1), 1);
  EXPECT_THROW(hungarian_matcher(torch::zeros({4})), scenic::Error);
}

}  // namespace
}  // namespace scenic::model
