#include "scenic/train_lib/segmentation_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/common_lib/progress.h"
#include "scenic/common_lib/summary_writer.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/chrono.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace {
const model::SegmentationModel& segmentation_model_of(const TrainerContext& ctx) {
  const auto* m = dynamic_cast<const model::SegmentationModel*>(ctx.model.get());
  if (m == nullptr)
    throw Error("segmentation_trainer needs a segmentation model (simple_cnn_segmentation, "
                "unet_segmentation, ...), but model_name is '" +
                ctx.config.get<std::string>("model_name") + "'");
  return *m;
}

}  // namespace

torch::Tensor colorize_labels(const torch::Tensor& labels) {
  // A fixed, well-separated palette: black for class 0 (background in most datasets),
  // then saturated hues; classes past the palette cycle through it.
  static const float kPalette[][3] = {{0, 0, 0},     {1, 0, 0},     {0, 1, 0},       {0, 0, 1},
                                      {1, 1, 0},     {1, 0, 1},     {0, 1, 1},       {1, 0.5f, 0},
                                      {0.5f, 0, 1},  {0, 0.5f, 0},  {0.5f, 0.5f, 1}, {1, 1, 1}};
  constexpr int64_t n = sizeof(kPalette) / sizeof(kPalette[0]);
  auto palette = torch::from_blob(const_cast<float*>(&kPalette[0][0]), {n, 3}, torch::kFloat32).clone();
  palette = torch::cat({palette, torch::full({1, 3}, 0.5f)});  // row n: out-of-range labels
  auto l = labels.to(torch::kCPU, torch::kLong);
  auto idx = torch::where((l >= 0) & (l < 256), l.remainder(n), torch::full_like(l, n));
  return palette.index_select(0, idx.flatten()).view({l.size(0), l.size(1), l.size(2), 3}).permute({0, 3, 1, 2});
}

std::map<std::string, double> evaluate_segmentation(model::Network& network, const model::SegmentationModel& model,
                                                    dataset::Dataset& dataset, const std::string& split,
                                                    const torch::Device& device, int64_t max_steps,
                                                    torch::Tensor* example) {
  torch::NoGradGuard no_grad;
  network.eval();
  auto metrics_fn = model.get_metrics_fn(split);
  MetricsAccumulator acc;
  torch::Tensor confusion;  // [K, K] float64 pixel counts, on the device
  auto it = dataset.eval_iter(split);
  int64_t steps = 0;
  while (auto batch = it->next()) {
    auto b = batch_to_device(*batch, device);
    auto logits = network.forward(b.at("inputs"));  // [B, K, H, W]
    acc.add(metrics_fn(logits, b));
    auto cm = model.batch_confusion_matrix(logits, b);
    confusion = confusion.defined() ? confusion.add_(cm) : cm;
    if (example != nullptr && steps == 0) {
      // Padding examples (no real pixel) are left out of the picture.
      auto real = b.at("batch_mask").flatten(1).amax(1).gt(0).cpu();
      auto keep = real.nonzero().flatten();
      auto inputs = b.at("inputs").cpu().index_select(0, keep);
      if (inputs.size(1) == 1) inputs = inputs.expand({-1, 3, -1, -1});
      auto truth = colorize_labels(b.at("label").cpu().index_select(0, keep));
      auto pred = colorize_labels(logits.argmax(1).cpu().index_select(0, keep));
      if (inputs.size(1) == 3 && keep.numel() > 0)
        *example = common::image_grid(torch::cat({inputs.clamp(0, 1), truth, pred}, 3), 8);
    }
    ++steps;
    if (max_steps > 0 && steps >= max_steps) break;
  }
  auto out = acc.summary();
  if (!confusion.defined()) return out;
  // Distributed hook: each process has summed the confusion matrix of its own shard of
  // the eval set; with several processes, sum them here (all_reduce_sum of
  // distributed.h on {confusion}, Scenic's all_gather of the per-device matrices) so
  // that mean IoU is that of the whole eval set. The per-batch metrics above need the
  // same psum of their (sum, normalizer) pairs.
  for (const auto& [k, v] : model.global_metrics(confusion.cpu())) out[k] = v;
  return out;
}

TrainResult segmentation_train(TrainerContext& ctx) {
  const auto& config = ctx.config;
  const auto& model = segmentation_model_of(ctx);
  auto& dataset = *ctx.dataset;
  const auto& meta = dataset.meta_data;

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = get_device(config);
  auto network = model.build_network();
  network->to(device);
  auto optimizer = make_optimizer(config, network->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(config);
  const auto max_grad_norm = config.get_optional<double>("max_grad_norm");
  const auto batch_size = config.get<int64_t>("batch_size");
  const auto steps = get_num_training_steps(config, meta);
  const int64_t total_steps = steps.total_steps;
  const int64_t log_eval_steps = config.get<int64_t>("log_eval_steps", steps.steps_per_epoch);
  if (log_eval_steps <= 0)
    throw Error("config needs 'log_eval_steps' (the dataset size is unknown, so there is no epoch default)");
  const int64_t log_summary_steps = config.get<int64_t>("log_summary_steps", log_eval_steps);
  const bool checkpointing = config.get<bool>("checkpoint", true);
  const int64_t checkpoint_steps = config.get<int64_t>("checkpoint_steps", log_eval_steps);
  const int max_checkpoint_keep = config.get<int>("max_checkpoint_keep", 3);
  const int64_t steps_per_eval = config.get<int64_t>("steps_per_eval", 0);
  const auto best_metric = config.get_optional<std::string>("checkpoint_best_metric");
  const std::string best_mode = config.get<std::string>(
      "checkpoint_best_mode", best_metric && best_metric->find("loss") != std::string::npos ? "min" : "max");
  if (best_mode != "min" && best_mode != "max")
    throw Error("config key 'checkpoint_best_mode' must be 'min' or 'max', not '" + best_mode + "'");
  auto metrics_fn = model.get_metrics_fn("train");

  const std::string ckpt_dir = (std::filesystem::path(ctx.workdir) / "checkpoints").string();
  const std::string best_dir = (std::filesystem::path(ckpt_dir) / "best").string();
  int64_t start_step = 0;
  Chrono chrono(device.is_cuda() ? 1 : at::get_num_threads());
  std::optional<double> best_value;
  TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
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
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  SCENIC_LOG_INFO << "model: " << config.get<std::string>("model_name") << ", " << num_params
                  << " parameters, " << meta.num_classes << " classes; device " << device.str() << "; "
                  << total_steps << " steps (" << steps.steps_per_epoch << " per epoch), batch " << batch_size;
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
    torch::Tensor example;
    auto m = evaluate_segmentation(*network, model, dataset, split, device, split == "valid" ? steps_per_eval : 0,
                                   ctx.summary != nullptr ? &example : nullptr);
    network->train();
    ctx.writer->write(step, split, m);
    if (ctx.summary != nullptr && example.defined()) ctx.summary->image(step, split + "/example", example);
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
  torch::Tensor l2_grads_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
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
    optimizer->zero_grad();
    auto logits = network->forward(b.at("inputs"));  // [B, K, H, W]
    auto loss = model.loss_function(logits, b, network.get());
    loss.backward();
    torch::Tensor grad_norm = max_grad_norm ? clip_grad_global_norm(params, *max_grad_norm)
                                            : global_norm(grads_of(params));
    optimizer->step();
    train_metrics.add(metrics_fn(logits.detach(), b));
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
      m["learning_rate"] = lr;
      m["l2_grads"] = l2_grads_sum.item<double>() / window_steps;
      m["l2_params"] = global_norm(params).item<double>();
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
