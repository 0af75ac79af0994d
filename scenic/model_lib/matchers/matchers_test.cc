// Tests for the greedy and lazy matchers (Scenic's greedy.py, lazy.py) on hand-worked
// costs, and for the `config.matcher` registry.
#include "scenic/model_lib/matchers/matchers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

torch::Tensor pairs(std::vector<int64_t> rows, std::vector<int64_t> cols) {
  const auto k = static_cast<int64_t>(rows.size());
  rows.insert(rows.end(), cols.begin(), cols.end());
  return torch::tensor(rows, torch::kLong).reshape({2, k});
}

TEST(GreedyMatcher, HandExamples) {
  // [[1, 2], [2, 100]]: takes the global minimum (0,0)=1, then (1,1)=100; total 101,
  // where the optimum (0,1)+(1,0) is 4. Greedy is not exact, by design.
  auto a = torch::tensor({1.f, 2.f, 2.f, 100.f}).reshape({1, 2, 2});
  EXPECT_TRUE(torch::equal(greedy_matcher(a)[0], pairs({0, 1}, {0, 1})));
  // N = 3 > M = 2: [[5, 1], [0, 9], [3, 4]]. Picks (1,0)=0 first, then among rows {0, 2}
  // and column 1 the minimum (0,1)=1. Pairs stay in pick order, as Scenic's scan emits.
  auto b = torch::tensor({5.f, 1.f, 0.f, 9.f, 3.f, 4.f}).reshape({1, 3, 2});
  EXPECT_TRUE(torch::equal(greedy_matcher(b)[0], pairs({1, 0}, {0, 1})));
  // N = 2 < M = 3: [[7, 3, 5], [2, 8, 1]]: (1,2)=1 first, then row 0 over columns {0,1}:
  // (0,1)=3.
  auto c = torch::tensor({7.f, 3.f, 5.f, 2.f, 8.f, 1.f}).reshape({1, 2, 3});
  EXPECT_TRUE(torch::equal(greedy_matcher(c)[0], pairs({1, 0}, {2, 1})));
  // All ties: first minimum in row-major order each time -> (0,0), (1,1).
  EXPECT_TRUE(torch::equal(greedy_matcher(torch::zeros({1, 2, 3}))[0], pairs({0, 1}, {0, 1})));
  // Batched: each element on its own.
  auto batch = torch::cat({a, torch::tensor({9.f, 0.f, 0.f, 9.f}).reshape({1, 2, 2})});
  auto idx = greedy_matcher(batch);
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_TRUE(torch::equal(idx[1], pairs({0, 1}, {1, 0})));
  // NaN is treated as the bound (2 + (2 - 0) + 1 = 5), not as the minimum: [[nan, 2], [0, 1]]
  // picks (1,0)=0, then (0,1)=2.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto d = torch::tensor({nan, 2.f, 0.f, 1.f}).reshape({1, 2, 2});
  EXPECT_TRUE(torch::equal(greedy_matcher(d)[0], pairs({1, 0}, {0, 1})));
  EXPECT_THROW(greedy_matcher(torch::zeros({2, 2})), scenic::Error);
}

TEST(LazyMatcher, Identity) {
  // Scenic's TestLazyMatcher: 7x9 and 2x2 -> [0..min) on both rows.
  auto idx = lazy_matcher(torch::rand({3, 7, 9}));
  ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{3, 2, 7}));
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t r = 0; r < 2; ++r) EXPECT_TRUE(torch::equal(idx[b][r], torch::arange(7, torch::kLong)));
  EXPECT_EQ(lazy_matcher(torch::rand({1, 5, 2})).sizes(), (std::vector<int64_t>{1, 2, 2}));
}

TEST(MatcherRegistry, NamesAndDispatch) {
  EXPECT_EQ(matcher_names(), (std::vector<std::string>{"greedy", "hungarian", "hungarian_cover_tpu",
                                                       "hungarian_scan_tpu", "hungarian_tpu", "lazy",
                                                       "sinkhorn"}));
  // [[1, 2], [2, 100]]: exact -> (0,1),(1,0) listed by column: rows [1, 0];
  // greedy -> (0,0),(1,1); lazy -> identity.
  auto cost = torch::tensor({1.f, 2.f, 2.f, 100.f}).reshape({1, 2, 2});
  for (const char* name : {"hungarian", "hungarian_tpu", "hungarian_scan_tpu", "hungarian_cover_tpu"})
    EXPECT_TRUE(torch::equal(get_matcher(name)(cost, std::nullopt)[0], pairs({1, 0}, {0, 1}))) << name;
  EXPECT_TRUE(torch::equal(get_matcher("greedy")(cost, std::nullopt)[0], pairs({0, 1}, {0, 1})));
  EXPECT_TRUE(torch::equal(get_matcher("lazy")(cost, std::nullopt)[0], pairs({0, 1}, {0, 1})));
  // Sinkhorn output is row-ordered: row 0 -> column 1, row 1 -> column 0.
  EXPECT_TRUE(torch::equal(get_matcher("sinkhorn")(cost, std::nullopt)[0], pairs({0, 1}, {1, 0})));
  // n_cols reaches the exact matcher: with one real column, row 0 takes it (cost 1) and
  // row 1 the padded column.
  auto padded = get_matcher("hungarian")(cost, torch::tensor({1}, torch::kLong));
  EXPECT_TRUE(torch::equal(padded[0], pairs({0, 1}, {0, 1})));

  const std::string err = testing::error_of([] { get_matcher("hungarain"); });
  EXPECT_CONTAINS(err, "unknown matcher 'hungarain'");
  EXPECT_CONTAINS(err, "known: greedy, hungarian");
  EXPECT_CONTAINS(err, "did you mean 'hungarian'");
}

TEST(MatcherRegistry, FromConfig) {
  auto config = common::ConfigDict::from_yaml_string("matcher: sinkhorn\nsinkhorn_num_permutations: 3\n");
  auto cost = torch::tensor({0.f, 1.f, 1.f, 0.f}).reshape({1, 2, 2});
  EXPECT_TRUE(torch::equal(get_matcher(config)(cost, std::nullopt)[0], pairs({0, 1}, {0, 1})));
  EXPECT_EQ(config.get<int64_t>("sinkhorn_num_iters"), 1000);  // default recorded
  // Default: Scenic's detr_config matcher, an exact one.
  auto empty = common::ConfigDict::from_yaml_string("{}");
  EXPECT_TRUE(torch::equal(get_matcher(empty)(cost, std::nullopt)[0], pairs({0, 1}, {0, 1})));
  EXPECT_EQ(empty.get<std::string>("matcher"), "hungarian_cover_tpu");
  auto bad = common::ConfigDict::from_yaml_string("matcher: sinkorn\n");
  EXPECT_THROW(get_matcher(bad), scenic::Error);
}

}  // namespace
}  // namespace scenic::model
