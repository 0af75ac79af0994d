// WorkerPool: a fixed set of threads that run the per-example work of one batch.
//
// The counterpart of tf.data's `map(..., num_parallel_calls)` in Scenic's pipelines:
// pipeline.cc hands it the load + preprocess of every slot of a batch. The calling thread
// works too, so `num_workers` threads in total do the work (num_workers 1 = no extra
// thread). Which thread runs which index is left to chance; callers make results depend
// only on the index, never on the thread (that is what keeps batches deterministic).
//
// Threads: each worker runs with one intra-op torch thread (at::set_num_threads(1); the
// calling thread keeps its own settings, see prefetch.cc for the prefetch thread's) and
// OpenCV's own parallelism is switched off process-wide (cv::setNumThreads(0)): the
// pool already spreads examples over the cores, and nested thread teams on a small
// machine only fight over them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace scenic::dataset {

class WorkerPool {
 public:
  explicit WorkerPool(int64_t num_workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int64_t num_workers() const { return static_cast<int64_t>(threads_.size()) + 1; }

  // Calls fn(i) for every i in [0, n) and returns when all calls are done. If calls
  // throw, the exception of the lowest such i is rethrown (the others are dropped), so
  // the error a caller sees does not depend on thread timing. Not reentrant: one run()
  // at a time per pool.
  void run(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop();
  void work(uint64_t generation);  // takes indices while `generation` is the current job

  std::mutex mu_;
  std::condition_variable start_, finished_;
  uint64_t generation_ = 0;  // bumped by every run(); workers join each generation once
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t next_ = 0;    // next index to hand out (guarded by mu_)
  int64_t active_ = 0;  // workers inside the current job
  bool stop_ = false;
  std::exception_ptr error_;
  int64_t error_index_ = -1;
  std::vector<std::thread> threads_;
};

// Sets the calling thread up for data work: one torch intra-op thread, no grad. For
// threads the pipeline owns (never the caller's: that is the training thread when
// prefetch is 0).
void init_data_thread();
// Turns OpenCV's internal threading off, once per process.
void disable_opencv_threads();

}  // namespace scenic::dataset
