#include "scenic/dataset_lib/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace scenic::dataset {
namespace {

TEST(WorkerPool, EveryIndexOnceAcrossRuns) {
  WorkerPool pool(3);
  EXPECT_EQ(pool.num_workers(), 3);
  for (int64_t n : {0, 1, 2, 7, 100}) {
    std::vector<int64_t> out(n, -1);
    std::vector<std::atomic<int>> calls(n);
    pool.run(n, [&](int64_t i) {
      out[i] = i * i;
      ++calls[i];
    });
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(out[i], i * i);
      EXPECT_EQ(calls[i].load(), 1);
    }
  }
}

TEST(WorkerPool, UsesSeveralThreads) {
  WorkerPool pool(3);
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::atomic<int> arrived{0};
  // Each call waits (bounded) until 3 calls are in flight, so 3 threads must take part.
  pool.run(3, [&](int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    ++arrived;
    for (int i = 0; i < 10000 && arrived.load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_EQ(ids.size(), 3u);
}

TEST(WorkerPool, RethrowsLowestFailingIndex) {
  WorkerPool pool(4);
  for (int rep = 0; rep < 20; ++rep) {
    try {
      pool.run(50, [](int64_t i) {
        if (i == 31 || i == 17 || i == 44) throw std::runtime_error("bad " + std::to_string(i));
      });
      ADD_FAILURE() << "expected an exception";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "bad 17");
    }
  }
  int64_t sum = 0;  // the pool still works after an error
  std::mutex mu;
  pool.run(10, [&](int64_t i) {
    std::lock_guard<std::mutex> lock(mu);
    sum += i;
  });
  EXPECT_EQ(sum, 45);  // 0 + 1 + ... + 9
}

// Regression: a worker woken late for one run() used to read that run's fn (by then
// gone) and take indices of the next run with it: a crash once every few hundred runs.
// Each run here has its own short-lived fn and output, and checks every index ran once
// with that run's fn.
TEST(WorkerPool, LateWorkersNeverUseAnEarlierRunsFn) {
  WorkerPool pool(4);
  for (int rep = 0; rep < 20000; ++rep) {
    const int64_t n = 1 + rep % 5;
    std::vector<int> out(n, 0);
    std::function<void(int64_t)> fn = [&out, rep](int64_t i) { out[i] += rep + 1; };
    pool.run(n, fn);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], rep + 1) << "run " << rep << " index " << i;
  }
}

TEST(WorkerPool, RejectsZeroWorkers) { EXPECT_ANY_THROW(WorkerPool(0)); }

}  // namespace
}  // namespace scenic::dataset
