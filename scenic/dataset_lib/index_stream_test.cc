#include "scenic/dataset_lib/index_stream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

bool is_permutation_of_range(std::vector<int64_t> v, int64_t n) {
  if (static_cast<int64_t>(v.size()) != n) return false;
  std::sort(v.begin(), v.end());
  for (int64_t i = 0; i < n; ++i)
    if (v[i] != i) return false;
  return true;
}

TEST(IndexStream, EpochPermutationIsAPermutationAndDeterministic) {
  for (int64_t n : {1, 2, 10, 1000}) {
    auto p = epoch_permutation(42, 3, n);
    EXPECT_TRUE(is_permutation_of_range(p, n)) << n;
    EXPECT_EQ(p, epoch_permutation(42, 3, n));
  }
  EXPECT_NE(epoch_permutation(42, 0, 1000), epoch_permutation(42, 1, 1000));
  EXPECT_NE(epoch_permutation(42, 0, 1000), epoch_permutation(43, 0, 1000));
}

// The order is part of the resume contract (checkpoints record only the step), and it
// is fully specified (mt19937_64 + our bounded sampling), so pin it.
TEST(IndexStream, PinnedOrder) {
  EXPECT_EQ(epoch_permutation(0, 0, 10), (std::vector<int64_t>{6, 1, 2, 4, 7, 5, 3, 0, 9, 8}));
  EXPECT_EQ(epoch_permutation(1234, 5, 10), (std::vector<int64_t>{9, 1, 8, 7, 6, 0, 5, 4, 2, 3}));
}

TEST(IndexStream, BatchesConcatenateEpochPermutations) {
  const int64_t n = 10, b = 4;
  TrainIndexStream stream(n, b, 7);
  std::vector<int64_t> all;
  for (int k = 0; k < 10; ++k) {  // 40 positions = 4 epochs
    EXPECT_EQ(stream.step(), k);
    auto batch = stream.next();
    ASSERT_EQ(static_cast<int64_t>(batch.size()), b);
    all.insert(all.end(), batch.begin(), batch.end());
  }
  for (int64_t e = 0; e < 4; ++e) {
    std::vector<int64_t> epoch(all.begin() + e * n, all.begin() + (e + 1) * n);
    EXPECT_EQ(epoch, epoch_permutation(7, e, n)) << "epoch " << e;
  }
}

TEST(IndexStream, StartStepMatchesSkipping) {
  const int64_t n = 10, b = 3;
  TrainIndexStream fresh(n, b, 99);
  std::vector<std::vector<int64_t>> batches;
  for (int k = 0; k < 12; ++k) batches.push_back(fresh.next());
  for (int64_t start = 0; start < 10; ++start) {
    TrainIndexStream resumed(n, b, 99, start);
    for (int64_t k = start; k < 12; ++k) EXPECT_EQ(resumed.next(), batches[k]) << start << " " << k;
  }
}

TEST(IndexStream, RejectsBadArguments) {
  EXPECT_THROW(TrainIndexStream(0, 1, 0), Error);
  EXPECT_THROW(TrainIndexStream(10, 0, 0), Error);
  EXPECT_THROW(TrainIndexStream(10, 2, 0, -1), Error);
}

}  // namespace
}  // namespace scenic::dataset
