// Bucketed gradient all-reduce overlapped with the backward pass: the part of PyTorch's
// DistributedDataParallel that a data-parallel trainer needs, on c10d.
//
// Mirrors Scenic's `grad = jax.lax.pmean(grad, axis_name='batch')` in
// classification_trainer.train_step: after `finish()` every process holds the MEAN of
// the processes' gradients. So N processes with B/N examples each, whose losses are
// per-process means, get the gradient of one process with the full batch B.
//
// Padding (batch_mask = 0): like Scenic's pmean, every process weighs equally. Each
// process's loss is normalized by its own number of real examples, so when padding is
// spread unevenly over processes the result differs from the global masked mean
// (Scenic behaves the same way). Training batches are full, so this only matters for
// ragged custom pipelines.
//
// How: each parameter's post-accumulate-grad hook (the C++ side of
// Tensor.register_post_accumulate_grad_hook, LibTorch >= 2.1) copies its fresh
// gradient into a flat bucket (~distributed.bucket_mb, parameters in reverse
// registration order, i.e. roughly the order backward produces them). A full bucket is
// all-reduced asynchronously while backward goes on; buckets are launched strictly in
// index order on every rank, so the collectives match across processes even if hooks
// fire in a different order. `finish()` launches what is left, waits, divides by the
// world size and writes the means back into `.grad`.
//
// Usage, every step (one process: hooks are not installed and finish() does nothing):
//   GradientAllReducer reducer(network->parameters(), ctx);   // once
//   optimizer.zero_grad(); loss.backward(); reducer.finish(); optimizer.step();
// Gradient accumulation: wrap all but the last micro-batch's backward in
// `GradientAllReducer::NoSync guard(reducer);` (DDP's no_sync): only the last
// backward, which sees the accumulated .grad, communicates.
// A parameter that got no gradient on this rank this step (unused in the forward)
// contributes zeros, so it ends with the mean of the others' (DDP's
// find_unused_parameters behaviour); parameters with requires_grad=false are skipped.
#pragma once

#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/types.h>

#include <memory>
#include <mutex>
#include <vector>

#include "scenic/train_lib/distributed.h"

namespace scenic::train {

class GradientAllReducer {
 public:
  // `bucket_bytes` <= 0: ctx.bucket_bytes (config distributed.bucket_mb).
  GradientAllReducer(std::vector<torch::Tensor> params, std::shared_ptr<const DistributedContext> ctx,
                     int64_t bucket_bytes = 0);
  ~GradientAllReducer();  // removes the hooks
  GradientAllReducer(const GradientAllReducer&) = delete;
  GradientAllReducer& operator=(const GradientAllReducer&) = delete;

  // After backward: completes the all-reduce; every hooked .grad is then the mean over
  // processes. Throws DistributedError when a peer died or timed out.
  void finish();

  // While alive, backward passes do not communicate (gradient accumulation).
  class NoSync {
   public:
    explicit NoSync(GradientAllReducer& r);
    ~NoSync();

   private:
    GradientAllReducer& r_;
    bool previous_;
  };

  size_t num_buckets() const { return buckets_.size(); }
  // Seconds the last finish() spent waiting for communication that backward did not hide.
  double last_wait_seconds() const { return last_wait_s_; }
  // Buckets the last step started during backward (the rest started in finish()).
  size_t last_overlapped_buckets() const { return last_overlapped_; }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // element offset of each in `flat`
    torch::Tensor flat;            // [numel], the parameters' dtype, on the device
    size_t pending = 0;            // hooks still to fire this step
    c10::intrusive_ptr<c10d::Work> work;
  };
  void on_gradient(size_t index);  // a parameter's .grad is final for this backward
  void launch_ready_locked();      // all-reduce buckets next_launch_.. that are full
  void launch_locked(Bucket& b);
  void reset_locked();

  std::vector<torch::Tensor> params_;
  std::shared_ptr<const DistributedContext> ctx_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<bool> seen_;                        // param's hook fired this step
  size_t next_launch_ = 0;
  bool sync_ = true;
  bool late_ = false;  // a gradient arrived after its bucket was launched
  double last_wait_s_ = 0;
  size_t last_overlapped_ = 0;
  std::mutex mu_;
};

}  // namespace scenic::train
