#include "scenic/dataset_lib/prefetch.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

Batch numbered(int64_t i) { return Batch{{"i", torch::tensor({i}, torch::kInt64)}}; }

// Polls (up to 10 s, so a loaded machine can't fail it) until `count` reaches `want`.
void wait_for_count(const std::atomic<int64_t>& count, int64_t want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (count.load() < want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

class PrefetchDepth : public ::testing::TestWithParam<int64_t> {};

TEST_P(PrefetchDepth, FiniteStreamInOrderThenEnd) {
  auto produced = std::make_shared<int64_t>(0);
  PrefetchIterator it(
      [produced]() -> std::optional<Batch> {
        if (*produced == 5) return std::nullopt;
        return numbered((*produced)++);
      },
      GetParam());
  for (int64_t i = 0; i < 5; ++i) {
    auto b = it.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->at("i").item<int64_t>(), i);
  }
  EXPECT_FALSE(it.next().has_value());
  EXPECT_FALSE(it.next().has_value());
}

TEST_P(PrefetchDepth, ProducerErrorIsRethrownAfterEarlierBatches) {
  auto produced = std::make_shared<int64_t>(0);
  PrefetchIterator it(
      [produced]() -> std::optional<Batch> {
        if (*produced == 2) throw Error("producer failed at batch 2");
        return numbered((*produced)++);
      },
      GetParam());
  EXPECT_EQ(it.next()->at("i").item<int64_t>(), 0);
  EXPECT_EQ(it.next()->at("i").item<int64_t>(), 1);
  try {
    it.next();
    FAIL() << "expected scenic::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "producer failed at batch 2");
  }
  EXPECT_THROW(it.next(), Error);  // stays failed
}

INSTANTIATE_TEST_SUITE_P(Depths, PrefetchDepth, ::testing::Values(0, 1, 3));

TEST(Prefetch, StaysBoundedAhead) {
  auto produced = std::make_shared<std::atomic<int64_t>>(0);
  PrefetchIterator it([produced]() -> std::optional<Batch> { return numbered((*produced)++); },
                      2);
  wait_for_count(*produced, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(produced->load(), 2);  // queue full: the producer waits
  it.next();
  wait_for_count(*produced, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(produced->load(), 3);
}

TEST(Prefetch, DestroyMidStreamJoinsPromptly) {
  auto produced = std::make_shared<std::atomic<int64_t>>(0);
  {
    PrefetchIterator it(
        [produced]() -> std::optional<Batch> {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          return numbered((*produced)++);
        },
        4);
    it.next();
    it.next();
  }  // infinite producer blocked on a full queue (or mid-batch): must stop and join
  const int64_t at_exit = produced->load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(produced->load(), at_exit);  // the thread is gone
  EXPECT_LE(at_exit, 2 + 4 + 1);
}

TEST(Prefetch, NegativeDepthIsAnError) {
  EXPECT_THROW(PrefetchIterator([]() -> std::optional<Batch> { return std::nullopt; }, -1),
               Error);
}

}  // namespace
}  // namespace scenic::dataset
