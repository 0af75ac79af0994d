#include "scenic/dataset_lib/prefetch.h"

#include <ATen/Parallel.h>

#include <torch/torch.h>

#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

PrefetchIterator::PrefetchIterator(Producer producer, int64_t depth)
    : producer_(std::move(producer)), depth_(depth) {
  if (depth_ < 0) throw Error("prefetch must be >= 0, got " + std::to_string(depth_));
  if (depth_ > 0) thread_ = std::thread([this] { run(); });
}

PrefetchIterator::~PrefetchIterator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  not_full_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PrefetchIterator::run() {
  torch::NoGradGuard no_grad;  // grad mode is thread-local; batches never need it
  // One OpenMP thread here: the producer's ops are small, and a second OpenMP team
  // spin-waiting beside the training step's team steals the cores it needs (on 2 cores
  // this cost ~20% of training throughput). The setting is per thread for OpenMP.
  at::set_num_threads(1);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      not_full_.wait(lock, [this] { return stop_ || static_cast<int64_t>(queue_.size()) < depth_; });
      if (stop_) return;
    }
    std::optional<Batch> batch;
    std::exception_ptr error;
    try {
      batch = producer_();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (error || !batch) {
        error_ = error;
        done_ = true;
      } else {
        queue_.push_back(std::move(*batch));
      }
    }
    not_empty_.notify_one();
    if (error || !batch) return;
  }
}

std::optional<Batch> PrefetchIterator::next() {
  if (depth_ == 0) {
    if (done_) {
      if (error_) std::rethrow_exception(error_);
      return std::nullopt;
    }
    try {
      std::optional<Batch> batch = producer_();
      if (!batch) done_ = true;
      return batch;
    } catch (...) {
      error_ = std::current_exception();
      done_ = true;
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mu_);
  not_empty_.wait(lock, [this] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

}  // namespace scenic::dataset
