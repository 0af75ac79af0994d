#include "scenic/train_lib/classification_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include <ATen/autocast_mode.h>

#include "scenic/common_lib/logging.h"
#include "scenic/dataset_lib/mixup.h"
#include "scenic/train_lib/ema.h"
#include "scenic/train_lib/grad_accumulation.h"
#include "scenic/common_lib/progress.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/chrono.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace {
// Scenic's init_head_bias: every bias under `output_projection` set to a constant.
// Batch-level augmentation from `mixup.*` (Scenic's config.mixup.alpha, plus CutMix).
struct MixupConfig {
  double alpha = 0, cutmix_alpha = 0;
  uint64_t seed = 0;
  bool enabled() const { return alpha > 0 || cutmix_alpha > 0; }
};

MixupConfig read_mixup(const common::ConfigDict& config) {
  MixupConfig m;
  m.alpha = config.get<double>("mixup.alpha", 0.0);
  m.cutmix_alpha = config.get<double>("mixup.cutmix_alpha", 0.0);
  m.seed = static_cast<uint64_t>(config.get<int64_t>("rng_seed", 0));
  // Scenic binds the mixup rng to a device or host; one process draws one lambda per step.
  config.get_optional<std::string>("mixup.bind_to");
  config.get_optional<std::string>("mixup.image_format");
  return m;
}

// One lambda per step from a generator seeded by (seed, step), so a resumed run mixes
// exactly as an uninterrupted one. With both enabled, each step picks one at random.
void apply_mixup(const MixupConfig& m, dataset::Batch& batch, int64_t num_classes, int64_t step) {
  dataset::Rng rng(m.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step));
  if (!batch.at("label").is_floating_point()) dataset::target_to_one_hot(batch, num_classes);
  const bool use_cutmix = m.cutmix_alpha > 0 && (m.alpha <= 0 || (rng() & 1));
  if (use_cutmix) dataset::cutmix(batch, m.cutmix_alpha, rng);
  else dataset::mixup(batch, m.alpha, rng);
}

// `autocast_dtype: bfloat16` runs the forward pass under autocast (weights, gradients
// and optimizer state stay float32). RAII so an exception leaves autocast off.
class AutocastScope {
 public:
  AutocastScope(bool enabled, const torch::Device& device) : enabled_(enabled), type_(device.type()) {
    if (!enabled_) return;
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::set_autocast_enabled(type_, true);
  }
  ~AutocastScope() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(type_, false);
    at::autocast::clear_cache();
  }

 private:
  bool enabled_;
  c10::DeviceType type_;
};

}  // namespace

TrainResult classification_train(TrainerContext& ctx) {
  const auto& config = ctx.config;
  auto& model = *ctx.model;
  auto& dataset = *ctx.dataset;
  const auto& meta = dataset.meta_data;

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = get_device(config);
  auto network = model.build_network();
  network->to(device);
  if (auto bias = config.get_optional<double>("init_head_bias")) init_head_bias(*network, *bias);

  auto optimizer = make_optimizer(config, network->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(config);
  const auto max_grad_norm = config.get_optional<double>("max_grad_norm");
  const auto batch_size = config.get<int64_t>("batch_size");
  const auto steps = get_num_training_steps(config, meta);
  const int64_t total_steps = steps.total_steps;
  int64_t log_eval_steps = config.get<int64_t>("log_eval_steps", steps.steps_per_epoch);
  if (log_eval_steps <= 0)
    throw Error("config needs 'log_eval_steps' (the dataset size is unknown, so there is no epoch default)");
  const int64_t log_summary_steps = config.get<int64_t>("log_summary_steps", log_eval_steps);
  const bool checkpointing = config.get<bool>("checkpoint", true);
  const int64_t checkpoint_steps = config.get<int64_t>("checkpoint_steps", log_eval_steps);
  const int max_checkpoint_keep = config.get<int>("max_checkpoint_keep", 3);
  const int64_t steps_per_eval = config.get<int64_t>("steps_per_eval", 0);
  // Keep the best checkpoint by a validation metric in checkpoints/best/.
  const auto best_metric = config.get_optional<std::string>("checkpoint_best_metric");
  const std::string best_mode = config.get<std::string>(
      "checkpoint_best_mode", best_metric && best_metric->find("loss") != std::string::npos ? "min" : "max");
  if (best_mode != "min" && best_mode != "max")
    throw Error("config key 'checkpoint_best_mode' must be 'min' or 'max', not '" + best_mode + "'");
  auto metrics_fn = model.get_metrics_fn("train");
  const MixupConfig mixup = read_mixup(config);
  const int64_t accum_steps = config.get<int64_t>("accum_steps", 1);
  if (accum_steps < 1) throw Error("config key 'accum_steps' must be >= 1");
  const std::string autocast = config.get<std::string>("autocast_dtype", "float32");
  if (autocast != "float32" && autocast != "bfloat16")
    throw Error("config key 'autocast_dtype' must be 'float32' or 'bfloat16', not '" + autocast + "'");
  std::unique_ptr<Ema> ema;
  if (auto decay = config.get_optional<double>("ema.decay"))
    ema = std::make_unique<Ema>(*network, EmaOptions{*decay, config.get<bool>("ema.warmup", false), true});

  const std::string ckpt_dir = (std::filesystem::path(ctx.workdir) / "checkpoints").string();
  const std::string best_dir = (std::filesystem::path(ckpt_dir) / "best").string();
  int64_t start_step = 0;
  Chrono chrono(device.is_cuda() ? 1 : at::get_num_threads());
  std::optional<double> best_value;
  TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
  if (ema) {
    state.save_extra = [&](torch::serialize::OutputArchive& a) {
      torch::serialize::OutputArchive e;
      ema->save(e);
      a.write("ema", e);
    };
    state.load_extra = [&](torch::serialize::InputArchive& a) {
      torch::serialize::InputArchive e;
      if (a.try_read("ema", e)) ema->load(e);
    };
  }
  if (checkpointing) {
    if (auto latest = latest_checkpoint(ckpt_dir)) {
      restore_checkpoint(*latest, state);
      start_step = state.step;
      const auto meta_json = nlohmann::json::parse(state.metadata, nullptr, /*allow_exceptions=*/false);
      chrono.restore(meta_json.is_object() ? meta_json.value("chrono", nlohmann::json{}) : nlohmann::json{});
      if (meta_json.is_object() && meta_json.contains("best_value")) best_value = meta_json["best_value"].get<double>();
      SCENIC_LOG_INFO << "resumed from " << *latest << " at step " << start_step;
    }
  }
  if (start_step == 0 && ctx.init_from) {
    ctx.init_from(*network);
    if (ema) ema->reset();  // the average starts from the imported weights
  }
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  SCENIC_LOG_INFO << "model: " << config.get<std::string>("model_name") << ", " << num_params
                  << " parameters; device " << device.str() << "; " << total_steps << " steps ("
                  << steps.steps_per_epoch << " per epoch), batch " << batch_size;
  if (start_step == 0) ctx.writer->write(0, "train", {{"num_trainable_params", double(num_params)}});

  auto metadata = [&] {
    nlohmann::json m{{"chrono", chrono.state()}};
    if (best_value) m["best_value"] = *best_value;
    return m;
  };
  auto save = [&](int64_t step) {
    if (!checkpointing) return;
    state.step = step;
    state.metadata = metadata().dump();
    save_checkpoint(ckpt_dir, state, max_checkpoint_keep);
  };
  auto run_eval = [&](const std::string& split, int64_t step) {
    // With an EMA, evaluation uses the averaged weights (as it is the model one ships).
    std::optional<ScopedEmaSwap> swap;
    if (ema) swap.emplace(*ema);
    auto m = evaluate(*network, model, dataset, split, device, split == "valid" ? steps_per_eval : 0);
    network->train();
    ctx.writer->write(step, split, m);
    SCENIC_LOG_INFO << split << " @ " << step << ": " << format_metrics(m);
    return m;
  };
  auto maybe_save_best = [&](const std::map<std::string, double>& m, int64_t step) {
    if (!checkpointing || !best_metric) return;
    auto it = m.find(*best_metric);
    if (it == m.end())
      throw Error("config key 'checkpoint_best_metric': the valid metrics have no '" + *best_metric + "'");
    const bool better = !best_value || (best_mode == "max" ? it->second > *best_value : it->second < *best_value);
    if (!better || !std::isfinite(it->second)) return;
    best_value = it->second;
    state.step = step;
    state.metadata = metadata().dump();
    save_checkpoint(best_dir, state, 1);
    SCENIC_LOG_INFO << "best " << *best_metric << " so far (" << it->second << "): saved in " << best_dir;
  };

  // ---- The loop. ----
  PreemptionGuard preemption;
  std::vector<torch::Tensor> params = network->parameters();
  auto train_iter = dataset.train_iter(start_step);
  network->train();
  MetricsAccumulator train_metrics;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  torch::Tensor l2_grads_sum = torch::zeros({}, f64);
  int64_t window_steps = 0;
  common::ProgressBar progress(total_steps, start_step, batch_size);
  torch::Tensor last_loss;

  for (int64_t step = start_step + 1; step <= total_steps; ++step) {
    const bool last = step == total_steps;
    const bool summary_due = step % log_summary_steps == 0 || last;
    chrono.step_started();
    auto batch = train_iter->next();
    if (!batch) throw Error("the training iterator ended at step " + std::to_string(step));
    auto b = batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    set_learning_rate(*optimizer, lr);
    if (mixup.enabled()) apply_mixup(mixup, b, meta.num_classes, step);
    if (step == start_step + 1 && ctx.summary != nullptr)
      ctx.summary->image(step, "train_inputs", common::image_grid(b.at("inputs")));
    optimizer->zero_grad();
    auto [loss, logits] = accumulate_gradients(b, accum_steps, [&](const dataset::Batch& micro) {
      torch::Tensor out;
      {
        AutocastScope autocast_scope(autocast == "bfloat16", device);
        out = network->forward(micro.at("inputs"));
      }
      out = out.to(torch::kFloat32);
      return std::make_pair(model.loss_function(out, micro, network.get()), out);
    });
    torch::Tensor grad_norm = max_grad_norm ? clip_grad_global_norm(params, *max_grad_norm)
                                            : global_norm(grads_of(params));
    // l2_updates is measured on the step that writes the summary (one copy of the
    // parameters on that step only), not averaged over the window as in Scenic.
    std::vector<torch::Tensor> before;
    if (summary_due) {
      torch::NoGradGuard no_grad;
      for (const auto& p : params) before.push_back(p.detach().clone());
    }
    optimizer->step();
    if (ema) ema->update(step - 1);
    train_metrics.add(metrics_fn(logits, b));
    l2_grads_sum.add_(grad_norm.detach());
    last_loss = loss.detach();
    ++window_steps;
    chrono.step_finished(batch_size);

    if (progress.due()) progress.update(step, last_loss.item<double>());

    if (summary_due) {
      auto m = train_metrics.summary();
      if (!std::isfinite(m["loss"]) || !std::isfinite(last_loss.item<double>())) {
        progress.finish();
        throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " +
                                    std::to_string(step) + "; the last good checkpoint is kept in " + ckpt_dir);
      }
      std::vector<torch::Tensor> updates;
      {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) updates.push_back(params[i].detach() - before[i]);
      }
      m["learning_rate"] = lr;
      m["l2_grads"] = l2_grads_sum.item<double>() / window_steps;
      m["l2_params"] = global_norm(params).item<double>();
      m["l2_updates"] = global_norm(updates).item<double>();
      for (const auto& [k, v] : chrono.summary()) m[k] = v;
      ctx.writer->write(step, "train", m);
      progress.finish();
      SCENIC_LOG_INFO << "train @ " << step << ": " << format_metrics(m);
      train_metrics.reset();
      l2_grads_sum.zero_();
      window_steps = 0;
    }
    if (step % log_eval_steps == 0 && !last) {
      progress.finish();
      maybe_save_best(run_eval("valid", step), step);
      if (ctx.summary != nullptr)
        for (const auto& p : network->named_parameters()) ctx.summary->histogram(step, "params/" + p.key(), p.value());
    }
    const int signal = PreemptionGuard::requested();
    if (step % checkpoint_steps == 0 || last || signal != 0) {
      // Never write a diverged state over the last good checkpoint.
      if (!std::isfinite(last_loss.item<double>()))
        throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                    "; the last good checkpoint is kept in " + ckpt_dir);
      save(step);
    }
    if (signal != 0) {
      progress.finish();
      throw PreemptedError("stopped by signal " + std::to_string(signal) + " at step " + std::to_string(step) +
                               (checkpointing ? "; checkpoint saved in " + ckpt_dir + ", rerun the same command to resume"
                                              : " (checkpoint: false, nothing saved)"),
                           signal);
    }
  }
  progress.finish();

  TrainResult result;
  if (best_metric && best_value) result["best_valid"] = {{*best_metric, *best_value}};
  result["test"] = run_eval("test", total_steps);
  return result;
}

}  // namespace scenic::train
