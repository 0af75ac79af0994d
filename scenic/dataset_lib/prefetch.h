// PrefetchIterator: runs a batch producer on a background thread, `depth` batches ahead.
//
// Mirrors Scenic's `dataset_utils.prefetch_iterator` / tf.data's `prefetch(n)`: the
// producer keeps a bounded queue filled while the trainer computes. Batches come out in
// the producer's order. An exception thrown by the producer is re-thrown from next()
// once the batches produced before it are consumed. Destroying the iterator mid-stream
// stops and joins the thread (at most the batch in progress is finished first).
// depth 0 runs the producer synchronously inside next(), with no thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

class PrefetchIterator : public BatchIterator {
 public:
  // Returns the next batch, or nullopt at the end of a finite stream. Called on the
  // background thread (one call at a time) when depth > 0.
  using Producer = std::function<std::optional<Batch>()>;

  PrefetchIterator(Producer producer, int64_t depth);
  ~PrefetchIterator() override;
  PrefetchIterator(const PrefetchIterator&) = delete;
  PrefetchIterator& operator=(const PrefetchIterator&) = delete;

  std::optional<Batch> next() override;

 private:
  void run();

  Producer producer_;
  const int64_t depth_;
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Batch> queue_;
  bool done_ = false;  // producer finished (end of stream or error)
  bool stop_ = false;  // consumer is going away
  std::exception_ptr error_;
  std::thread thread_;  // started in the constructor body, joined in the destructor
};

}  // namespace scenic::dataset
