// Chrono: training throughput and cost, kept across resumes.
//
// Mirrors Scenic's train_utils.Chrono: time spent in training steps (evaluation and
// checkpointing are paused out), examples seen, and from them examples/s, examples/s
// per core and core-hours, written with the train summaries. `state()` goes into the
// checkpoint metadata and `restore()` reads it back, so the totals of a resumed run
// continue those of the run it resumes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace scenic::train {

class Chrono {
 public:
  // `num_cores`: the cores the run uses (CPU threads, or accelerators), for per-core rates.
  explicit Chrono(int64_t num_cores);

  void restore(const nlohmann::json& state);  // from a checkpoint's metadata (may be empty)
  nlohmann::json state() const;

  // Call around each training step; `examples` is the global batch size.
  void step_started();
  void step_finished(int64_t examples);

  // Since the previous call: examples_per_sec, examples_per_sec_per_core; totals:
  // examples_seen, accum_train_time_s, core_hours, uptime_s (this process).
  std::map<std::string, double> summary();

 private:
  using Clock = std::chrono::steady_clock;
  int64_t num_cores_;
  Clock::time_point process_start_, step_start_;
  double accum_train_time_ = 0.0;  // seconds in steps, all runs
  int64_t examples_seen_ = 0;      // all runs
  double window_time_ = 0.0;
  int64_t window_examples_ = 0;
};

}  // namespace scenic::train
