#include "scenic/dataset_lib/worker_pool.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <opencv2/core.hpp>

#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

void init_data_thread() {
  // Per thread for OpenMP (the training thread keeps its own team); see prefetch.cc.
  at::set_num_threads(1);
  c10::GradMode::set_enabled(false);
}

void disable_opencv_threads() {
  // OpenCV's thread count is process-wide (TBB arena); 0 runs each call on the calling
  // thread. Set once: OpenCV does not promise this call is thread-safe.
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(0); });
}

WorkerPool::WorkerPool(int64_t num_workers) {
  if (num_workers < 1) {
    throw Error("num_workers must be >= 1, got " + std::to_string(num_workers));
  }
  disable_opencv_threads();
  for (int64_t i = 1; i < num_workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::work(uint64_t generation) {
  for (;;) {
    int64_t i;
    const std::function<void(int64_t)>* fn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A worker that wakes late may find that its run() has returned and the next one
      // begun: it must not take indices of a job whose fn it did not read with them.
      if (generation_ != generation || next_ >= n_) return;
      i = next_++;
      fn = fn_;
    }
    try {
      (*fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_index_ < 0 || i < error_index_) {
        error_ = std::current_exception();
        error_index_ = i;
      }
    }
  }
}

void WorkerPool::worker_loop() {
  init_data_thread();
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++active_;  // run() waits for us before its fn goes out of scope
    }
    work(seen);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
    }
    finished_.notify_all();
  }
}

void WorkerPool::run(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  uint64_t generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = 0;
    error_ = nullptr;
    error_index_ = -1;
    generation = ++generation_;
  }
  if (!threads_.empty() && n > 1) start_.notify_all();
  work(generation);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mu_);
    finished_.wait(lock, [&] { return active_ == 0; });
    fn_ = nullptr;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace scenic::dataset
