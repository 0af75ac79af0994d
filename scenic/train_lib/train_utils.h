// Utilities shared by trainers (Scenic's train_lib/train_utils.py): step counts,
// device placement, metric accumulation on the device, evaluation passes.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/distributed.h"

namespace scenic::train {

// Raised when the training loss becomes NaN/Inf (Scenic's TrainingDivergedError).
class TrainingDivergedError : public Error {
 public:
  using Error::Error;
};

struct TrainingSteps {
  int64_t total_steps = 0;
  int64_t steps_per_epoch = 0;  // 0 when unknown
};
// `num_training_steps`, or `num_training_epochs` x (num_train_examples // batch_size).
TrainingSteps get_num_training_steps(const common::ConfigDict& config, const dataset::MetaData& meta);

// `device: auto|cpu|cuda|cuda:N` (auto: CUDA when available).
torch::Device get_device(const common::ConfigDict& config);

dataset::Batch batch_to_device(const dataset::Batch& batch, const torch::Device& device);

// Sums (value, normalizer) pairs over steps on the device; `summary()` syncs once and
// returns value / (normalizer + 1e-9) per metric (normalize_metrics_summary). With
// several processes, `summary(dist)` first sums the pairs over processes (one
// all-reduce: Scenic's psum_metric_normalizer), so every rank gets the global values;
// every rank must call it, with the same metric names.
class MetricsAccumulator {
 public:
  void add(const model::MetricsDict& metrics);
  bool empty() const { return sums_.empty(); }
  std::map<std::string, double> summary(const DistributedContext* dist = nullptr) const;
  void reset() { sums_.clear(); }

 private:
  std::map<std::string, std::pair<torch::Tensor, torch::Tensor>> sums_;
};

// "a=1.5 b=0.25" for the log (%.5g each).
std::string format_metrics(const std::map<std::string, double>& metrics);

// Scenic's init_head_bias: every bias under `output_projection` set to `value`.
void init_head_bias(model::Network& network, double value);

// With several processes: throws scenic::Error unless every process resumes from the
// same step (each reads `ckpt_dir` itself, so the workdir must be on a filesystem all of
// them see, as Scenic's is). A collective: every rank calls it. No-op with one process.
void check_same_start_step(int64_t start_step, const std::string& ckpt_dir, const DistributedContext& dist);

// One pass of `split` in eval mode (at most `max_steps` batches when > 0); returns the
// normalized metrics, summed over processes when `dist` has several (each process
// evaluates its shard). On CUDA, `prefetch` stages the batches as the training input
// does (pinned, copied on a side stream ahead of the forward; device_prefetch.h). On the
// CPU each batch is split over the threads (`eval_split_batch`, batch_split.h). Leaves
// the network in eval mode.
std::map<std::string, double> evaluate(model::Network& network, const model::BaseModel& model,
                                       dataset::Dataset& dataset, const std::string& split,
                                       const torch::Device& device, int64_t max_steps = 0,
                                       const DistributedContext* dist = nullptr,
                                       const DevicePrefetchOptions& prefetch = DevicePrefetchOptions{});

}  // namespace scenic::train
