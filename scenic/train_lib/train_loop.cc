#include "scenic/train_lib/train_loop.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <csignal>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"

namespace scenic::train {

LoopConfig read_loop_config(const common::ConfigDict& config, const dataset::MetaData& meta, bool with_best) {
  LoopConfig c;
  c.batch_size = config.get<int64_t>("batch_size");
  c.steps = get_num_training_steps(config, meta);
  c.log_eval_steps = config.get<int64_t>("log_eval_steps", c.steps.steps_per_epoch);
  if (c.log_eval_steps <= 0)
    throw Error("config needs 'log_eval_steps' (the dataset size is unknown, so there is no epoch default)");
  c.log_summary_steps = config.get<int64_t>("log_summary_steps", c.log_eval_steps);
  if (c.log_summary_steps <= 0) throw Error("config key 'log_summary_steps' must be > 0");
  c.checkpointing = config.get<bool>("checkpoint", true);
  c.checkpoint_steps = config.get<int64_t>("checkpoint_steps", c.log_eval_steps);
  if (c.checkpoint_steps <= 0) throw Error("config key 'checkpoint_steps' must be > 0");
  c.max_checkpoint_keep = config.get<int>("max_checkpoint_keep", 3);
  c.steps_per_eval = config.get<int64_t>("steps_per_eval", 0);
  if (with_best) {
    c.best_metric = config.get_optional<std::string>("checkpoint_best_metric");
    c.best_mode = config.get<std::string>(
        "checkpoint_best_mode", c.best_metric && c.best_metric->find("loss") != std::string::npos ? "min" : "max");
    if (c.best_mode != "min" && c.best_mode != "max")
      throw Error("config key 'checkpoint_best_mode' must be 'min' or 'max', not '" + c.best_mode + "'");
  }
  return c;
}

torch::Device trainer_device(const TrainerContext& ctx) {
  return ctx.dist->is_distributed() ? ctx.dist->device : get_device(ctx.config);
}

TrainLoop::TrainLoop(TrainerContext& ctx, LoopConfig cfg, TrainStateRef state, torch::nn::Module& network,
                     torch::Device device)
    : ctx_(ctx),
      cfg_(std::move(cfg)),
      state_(std::move(state)),
      network_(network),
      device_(device),
      ckpt_dir_((std::filesystem::path(ctx.workdir) / "checkpoints").string()),
      best_dir_((std::filesystem::path(ckpt_dir_) / "best").string()),
      chrono_((device.is_cuda() ? 1 : at::get_num_threads()) * ctx.dist->world_size),
      grad_norm_sum_(torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device))) {}

int64_t TrainLoop::restore() {
  if (cfg_.checkpointing) {
    if (auto latest = latest_checkpoint(ckpt_dir_)) {
      restore_checkpoint(*latest, state_);
      start_step_ = state_.step;
      const auto meta = nlohmann::json::parse(state_.metadata, nullptr, /*allow_exceptions=*/false);
      chrono_.restore(meta.is_object() ? meta.value("chrono", nlohmann::json{}) : nlohmann::json{});
      if (meta.is_object() && meta.contains("best_value")) best_value_ = meta["best_value"].get<double>();
      SCENIC_LOG_INFO << "resumed from " << *latest << " at step " << start_step_;
    }
  }
  check_same_start_step(start_step_, ckpt_dir_, *ctx_.dist);
  progress_.emplace(total_steps(), start_step_, cfg_.batch_size);
  return start_step_;
}

void TrainLoop::sync_parameters() { broadcast_parameters(network_, *ctx_.dist); }

void TrainLoop::log_start(const std::string& model_name, int64_t num_params, const std::string& detail,
                          const std::map<std::string, double>& step0_extra) {
  const auto& dist = *ctx_.dist;
  SCENIC_LOG_INFO << "model: " << model_name << ", " << num_params << " parameters" << detail << "; device "
                  << device_.str() << "; " << total_steps() << " steps (" << cfg_.steps.steps_per_epoch
                  << " per epoch), batch " << cfg_.batch_size
                  << (dist.is_distributed()
                          ? " over " + std::to_string(dist.world_size) + " processes (" + dist.backend + ")"
                          : "");
  if (start_step_ != 0) return;
  std::map<std::string, double> step0{{"num_trainable_params", static_cast<double>(num_params)}};
  step0.insert(step0_extra.begin(), step0_extra.end());
  ctx_.writer->write(0, "train", step0);
}

void TrainLoop::step_finished(int64_t step, const torch::Tensor& loss, const torch::Tensor& grad_norm) {
  last_loss_ = loss.detach();
  grad_norm_sum_.add_(grad_norm.detach());
  ++window_steps_;
  chrono_.step_finished(cfg_.batch_size);
  if (!progress_) throw Error("TrainLoop: call restore() before the first step");
  if (step == start_step_ + 1) {
    progress_->finish();
    SCENIC_LOG_INFO << "first step done " << common::seconds_since_start()
                    << " s after the start (set-up, data loading, first batch, first update)";
  }
  if (ctx_.dist->is_lead() && progress_->due()) progress_->update(step, last_loss_.item<double>());
}

void TrainLoop::write_train_summary(int64_t step, std::map<std::string, double> metrics, double learning_rate,
                                    const std::vector<torch::Tensor>& params) {
  if (progress_) progress_->finish();
  // metrics are global; the last loss is this rank's, so the verdict is taken together.
  const bool finite = std::isfinite(metrics["loss"]) && std::isfinite(last_loss_.item<double>());
  if (any_process(!finite, *ctx_.dist))
    throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                "; the last good checkpoint is kept in " + ckpt_dir_);
  metrics["learning_rate"] = learning_rate;
  metrics["l2_grads"] = grad_norm_sum_.item<double>() / std::max<int64_t>(window_steps_, 1);
  metrics["l2_params"] = global_norm(params).item<double>();
  grad_norm_sum_.zero_();
  window_steps_ = 0;
  for (const auto& [k, v] : chrono_.summary()) metrics[k] = v;
  ctx_.writer->write(step, "train", metrics);
  SCENIC_LOG_INFO << "train @ " << step << ": " << format_metrics(metrics);
}

void TrainLoop::before_eval() {
  if (progress_) progress_->finish();
  average_buffers(network_, *ctx_.dist);
}

void TrainLoop::write_eval(int64_t step, const std::string& name, const std::map<std::string, double>& metrics,
                           const std::string& note) {
  ctx_.writer->write(step, name, metrics);
  SCENIC_LOG_INFO << name << note << " @ " << step << ": " << format_metrics(metrics);
}

std::string TrainLoop::metadata() const {
  nlohmann::json m{{"chrono", chrono_.state()}};
  if (best_value_) m["best_value"] = *best_value_;
  return m.dump();
}

void TrainLoop::save(const std::string& dir, int64_t step, int keep) {
  if (!ctx_.dist->is_lead()) return;
  state_.step = step;
  state_.metadata = metadata();
  save_checkpoint(dir, state_, keep);
}

void TrainLoop::maybe_save_best(const std::map<std::string, double>& m, int64_t step) {
  if (!cfg_.checkpointing || !cfg_.best_metric) return;
  auto it = m.find(*cfg_.best_metric);
  if (it == m.end())
    throw Error("config key 'checkpoint_best_metric': the valid metrics have no '" + *cfg_.best_metric + "'");
  const bool better =
      !best_value_ || (cfg_.best_mode == "max" ? it->second > *best_value_ : it->second < *best_value_);
  if (!better || !std::isfinite(it->second)) return;
  best_value_ = it->second;
  save(best_dir_, step, 1);
  SCENIC_LOG_INFO << "best " << *cfg_.best_metric << " so far (" << it->second << "): saved in " << best_dir_;
}

void TrainLoop::end_step(int64_t step) {
  const auto& dist = *ctx_.dist;
  // A signal to any process stops all of them at this step, so none waits alone.
  int signal = PreemptionGuard::requested();
  if (dist.is_distributed()) signal = any_process(signal != 0, dist) ? (signal != 0 ? signal : SIGTERM) : 0;
  if (step % cfg_.checkpoint_steps == 0 || step == total_steps() || signal != 0) {
    // Never write a diverged state over the last good checkpoint (decided together).
    if (any_process(!std::isfinite(last_loss_.item<double>()), dist))
      throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                  "; the last good checkpoint is kept in " + ckpt_dir_);
    if (cfg_.checkpointing) {
      average_buffers(network_, dist);
      save(ckpt_dir_, step, cfg_.max_checkpoint_keep);
    }
  }
  if (signal != 0) {
    if (progress_) progress_->finish();
    throw PreemptedError("stopped by signal " + std::to_string(signal) + " at step " + std::to_string(step) +
                             (cfg_.checkpointing ? "; checkpoint saved in " + ckpt_dir_ +
                                                       ", rerun the same command to resume"
                                                 : " (checkpoint: false, nothing saved)"),
                         signal);
  }
}

TrainResult TrainLoop::best_result() const {
  TrainResult r;
  if (cfg_.best_metric && best_value_) r["best_valid"] = {{*cfg_.best_metric, *best_value_}};
  return r;
}

}  // namespace scenic::train
