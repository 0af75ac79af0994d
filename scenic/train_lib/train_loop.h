// TrainLoop: what every Scenic-style training loop does around its step — the common
// config keys, resuming, checkpoints (periodic, best, on preemption), train summaries,
// the divergence check, progress, and the parts of data parallelism that are not the
// gradient all-reduce. The classification, segmentation, transfer and DETR trainers
// are forks of one loop, as in Scenic; this keeps the forks to what differs (the step
// and the evaluation).
//
// Config keys (Scenic's): batch_size (global), num_training_steps / num_training_epochs,
// log_eval_steps (default: one epoch), log_summary_steps (default log_eval_steps),
// checkpoint (true), checkpoint_steps (log_eval_steps), max_checkpoint_keep (3),
// steps_per_eval (0: whole split), checkpoint_best_metric / checkpoint_best_mode (a
// valid metric to keep the best checkpoint of in checkpoints/best/; mode "max", or
// "min" when the name contains "loss").
//
// Several processes (ctx.dist): every rank resumes from the same checkpoint (checked),
// parameters are broadcast from rank 0 (`sync_parameters`), BatchNorm statistics are
// averaged before evaluation and checkpoints (Scenic's sync_model_state_across_replicas),
// only rank 0 writes checkpoints and shows progress, a signal to any rank stops all of
// them at the same step, and the divergence check is decided together — so no rank is
// ever left waiting alone in a collective.
//
// Usage (see classification_trainer.cc):
//   TrainLoop loop(ctx, read_loop_config(config, meta), state, *network, device);
//   int64_t start = loop.restore();  ...init a fresh run...;  loop.sync_parameters();
//   ctx.finish_setup();  loop.log_start(name, num_params);
//   for (step = start + 1; step <= total; ++step) {
//     loop.step_started(); ...step...; loop.step_finished(step, loss, grad_norm);
//     if (loop.summary_due(step)) loop.write_train_summary(step, metrics, lr, params);
//     if (loop.eval_due(step)) { loop.before_eval(); loop.maybe_save_best(eval(), step); }
//     loop.end_step(step);
//   }
//   loop.finish();
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/progress.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/chrono.h"
#include "scenic/train_lib/train_utils.h"
#include "scenic/train_lib/trainers.h"

namespace scenic::train {

struct LoopConfig {
  int64_t batch_size = 0;  // global, over all processes
  TrainingSteps steps;
  int64_t log_eval_steps = 0, log_summary_steps = 0, checkpoint_steps = 0, steps_per_eval = 0;
  bool checkpointing = true;
  int max_checkpoint_keep = 3;
  std::optional<std::string> best_metric;
  std::string best_mode = "max";
};

// Reads the keys above (with `with_best` false, checkpoint_best_* are left unread).
LoopConfig read_loop_config(const common::ConfigDict& config, const dataset::MetaData& meta, bool with_best = true);

// The device a trainer uses: this process's (cuda:LOCAL_RANK) in a multi-process job,
// else the config's `device` (get_device).
torch::Device trainer_device(const TrainerContext& ctx);

class TrainLoop {
 public:
  // `state` names the network, the optimizer and any extra checkpoint sections (EMA).
  TrainLoop(TrainerContext& ctx, LoopConfig cfg, TrainStateRef state, torch::nn::Module& network,
            torch::Device device);

  // Resumes from the newest checkpoint in <workdir>/checkpoints, if any (weights,
  // optimizer, RNG, step, timing totals, best value). Returns the start step (0: fresh).
  int64_t restore();
  // Every process takes rank 0's parameters and buffers. Call after restore() and after
  // initializing a fresh run (init_from); a no-op with one process.
  void sync_parameters();
  // The "model: ..., N parameters; device ...; steps ..." line, and num_trainable_params
  // in the step-0 summary of a fresh run (plus `step0_extra`).
  void log_start(const std::string& model_name, int64_t num_params, const std::string& detail = "",
                 const std::map<std::string, double>& step0_extra = {});

  const LoopConfig& cfg() const { return cfg_; }
  int64_t start_step() const { return start_step_; }
  int64_t total_steps() const { return cfg_.steps.total_steps; }
  const std::string& ckpt_dir() const { return ckpt_dir_; }
  std::optional<double> best_value() const { return best_value_; }
  Chrono& chrono() { return chrono_; }

  bool summary_due(int64_t step) const { return step % cfg_.log_summary_steps == 0 || step == total_steps(); }
  bool eval_due(int64_t step) const { return step % cfg_.log_eval_steps == 0 && step != total_steps(); }
  // steps_per_eval for "valid", the whole split otherwise.
  int64_t eval_steps(const std::string& split) const { return split == "valid" ? cfg_.steps_per_eval : 0; }

  void step_started() { chrono_.step_started(); }
  // Counts the step's examples, adds the gradient's global norm to the summary window
  // (on the device, no host sync) and redraws the progress line when due (rank 0).
  void step_finished(int64_t step, const torch::Tensor& loss, const torch::Tensor& grad_norm);
  // Throws TrainingDivergedError when the summary's loss or the last step's is not
  // finite; otherwise adds learning_rate, l2_grads (mean over the window), l2_params
  // and the timing metrics, writes and logs the summary, and starts a new window.
  void write_train_summary(int64_t step, std::map<std::string, double> metrics, double learning_rate,
                           const std::vector<torch::Tensor>& params);
  // Before an evaluation: ends the progress line and averages BatchNorm statistics
  // over processes (every rank must call it).
  void before_eval();
  // Writes and logs eval metrics `metrics` of `name` ("valid", "test", ...).
  void write_eval(int64_t step, const std::string& name, const std::map<std::string, double>& metrics,
                  const std::string& note = "");
  // Keeps the best checkpoint by checkpoint_best_metric (metrics are global, so every
  // rank agrees; rank 0 writes).
  void maybe_save_best(const std::map<std::string, double>& valid_metrics, int64_t step);
  // After the step and its evaluations: saves on checkpoint steps, the last step and
  // when a process got SIGTERM/SIGINT (then throws PreemptedError); refuses to save a
  // diverged state.
  void end_step(int64_t step);
  void finish() {
    if (progress_) progress_->finish();
  }
  // {"best_valid": {metric: value}} when a best checkpoint was kept.
  TrainResult best_result() const;

 private:
  void save(const std::string& dir, int64_t step, int keep);
  std::string metadata() const;

  TrainerContext& ctx_;
  LoopConfig cfg_;
  TrainStateRef state_;
  torch::nn::Module& network_;
  torch::Device device_;
  std::string ckpt_dir_, best_dir_;
  int64_t start_step_ = 0;
  Chrono chrono_;
  std::optional<double> best_value_;
  std::optional<common::ProgressBar> progress_;  // made by restore(), which knows the start
  torch::Tensor last_loss_;
  torch::Tensor grad_norm_sum_;  // float64 scalar on the device
  int64_t window_steps_ = 0;
};

}  // namespace scenic::train
