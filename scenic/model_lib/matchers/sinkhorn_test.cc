// Tests for the Sinkhorn matcher (Scenic's sinkhorn.py): its output is always a
// permutation; on well-separated costs it finds the optimum (checked against the exact
// matcher); determinism for a seed; square-only input.
#include "scenic/model_lib/matchers/sinkhorn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/matchers/hungarian.h"

namespace scenic::model {
namespace {

double cost_of(const torch::Tensor& idx, const torch::Tensor& cost) {
  double total = 0;
  for (int64_t t = 0; t < idx.size(1); ++t)
    total += cost[idx[0][t].item<int64_t>()][idx[1][t].item<int64_t>()].item<double>();
  return total;
}

void expect_permutation(const torch::Tensor& idx, int64_t n) {
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{2, n}));
  EXPECT_TRUE(torch::equal(idx[0], torch::arange(n, torch::kLong)));  // row order
  std::set<int64_t> cols;
  for (int64_t t = 0; t < n; ++t) cols.insert(idx[1][t].item<int64_t>());
  EXPECT_EQ(static_cast<int64_t>(cols.size()), n);
  EXPECT_GE(*cols.begin(), 0);
  EXPECT_LT(*cols.rbegin(), n);
}

TEST(SinkhornMatcher, WellSeparatedFindsTheOptimum) {
  // A hidden permutation costs ~0 per pair, everything else ~1: the unique optimum is that
  // permutation, far (>= 2 * 0.8) from any other.
  torch::manual_seed(0);
  const int64_t b = 3, n = 12;
  auto cost = 0.9 + 0.1 * torch::rand({b, n, n}, torch::kDouble);
  std::vector<torch::Tensor> perms;
  for (int64_t e = 0; e < b; ++e) {
    auto perm = torch::randperm(n, torch::kLong);
    perms.push_back(perm);
    for (int64_t i = 0; i < n; ++i) cost[e][i][perm[i].item<int64_t>()] = 0.1 * torch::rand({1}).item<double>();
  }
  auto idx = sinkhorn_matcher(cost);
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{b, 2, n}));
  for (int64_t e = 0; e < b; ++e) {
    expect_permutation(idx[e], n);
    EXPECT_TRUE(torch::equal(idx[e][1], perms[e])) << e;
    EXPECT_NEAR(cost_of(idx[e], cost[e]), cost_of(hungarian_matcher(cost[e]), cost[e]), 1e-12);
  }
}

TEST(SinkhornMatcher, RandomCostsGiveDeterministicPermutations) {
  torch::manual_seed(1);
  auto cost = torch::rand({4, 9, 9});
  SinkhornOptions o;
  o.num_iters = 200;
  o.num_permutations = 20;
  auto a = sinkhorn_matcher(cost, o);
  for (int64_t e = 0; e < 4; ++e) {
    expect_permutation(a[e], 9);
    // Never better than the exact optimum.
    EXPECT_GE(cost_of(a[e], cost[e].to(torch::kDouble)) + 1e-9,
              cost_of(hungarian_matcher(cost[e]), cost[e].to(torch::kDouble)));
  }
  EXPECT_TRUE(torch::equal(a, sinkhorn_matcher(cost, o)));  // same seed, same answer
  // NaN / inf entries: still a permutation.
  auto bad = cost.clone();
  bad[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  bad[0][1][2] = std::numeric_limits<float>::infinity();
  expect_permutation(sinkhorn_matcher(bad, o)[0], 9);
}

TEST(SinkhornMatcher, RequiresSquare) {
  EXPECT_THROW(sinkhorn_matcher(torch::rand({1, 3, 4})), scenic::Error);
  EXPECT_THROW(sinkhorn_matcher(torch::rand({3, 3})), scenic::Error);
  EXPECT_EQ(sinkhorn_matcher(torch::rand({2, 0, 0})).sizes(), (std::vector<int64_t>{2, 2, 0}));
}

}  // namespace
}  // namespace scenic::model
