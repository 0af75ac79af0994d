#include "scenic/projects/baselines/detr/detr_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/common_lib/progress.h"
#include "scenic/dataset_lib/coco_eval.h"
#include "scenic/projects/baselines/detr/detr_base_model.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/chrono.h"
#include "scenic/train_lib/ema.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::baselines::detr {
namespace {

using train::TrainResult;
using train::TrainerContext;
// The evaluation ground truth: the COCO JSON when there is one, else built per pass.
struct GroundTruthSource {
  std::optional<dataset::CocoGroundTruth> from_json;
  std::vector<int64_t> category_ids;  // label l (1-based) -> category_ids[l - 1]
};

GroundTruthSource read_ground_truth_source(const common::ConfigDict& config, const dataset::MetaData& meta) {
  GroundTruthSource s;
  if (config.get<std::string>("dataset_name") == "coco_detection") {
    if (auto path = config.get_optional<std::string>("dataset_configs.eval_annotations")) {
      s.from_json = dataset::read_coco_ground_truth(*path);
      s.category_ids = s.from_json->category_ids;
      return s;
    }
  }
  for (int64_t c = 1; c < meta.num_classes; ++c) s.category_ids.push_back(c);
  return s;
}

}  // namespace

TrainResult detr_train(TrainerContext& ctx) {
  const auto& config = ctx.config;
  auto* model = dynamic_cast<DetrModel*>(ctx.model.get());
  if (model == nullptr) throw Error("trainer_name 'detr_trainer' needs model_name 'detr'");
  auto& dataset = *ctx.dataset;
  const auto& meta = dataset.meta_data;

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = train::get_device(config);
  auto network_base = model->build_network();
  auto network = std::dynamic_pointer_cast<DETR>(network_base);
  network->to(device);
  auto optimizer = train::make_optimizer(config, network->named_parameters());
  const train::LrFn lr_fn = train::get_learning_rate_fn(config);
  const double max_grad_norm = config.get<double>("max_grad_norm", 0.1);
  const auto batch_size = config.get<int64_t>("batch_size");
  const auto steps = train::get_num_training_steps(config, meta);
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
  std::unique_ptr<train::Ema> ema;
  if (auto decay = config.get_optional<double>("ema.decay"))
    ema = std::make_unique<train::Ema>(*network, train::EmaOptions{*decay, config.get<bool>("ema.warmup", false), true});
  const GroundTruthSource gt_source = read_ground_truth_source(config, meta);

  const std::string ckpt_dir = (std::filesystem::path(ctx.workdir) / "checkpoints").string();
  const std::string best_dir = (std::filesystem::path(ckpt_dir) / "best").string();
  int64_t start_step = 0;
  train::Chrono chrono(device.is_cuda() ? 1 : at::get_num_threads());
  std::optional<double> best_value;
  train::TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
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
    if (auto latest = train::latest_checkpoint(ckpt_dir)) {
      train::restore_checkpoint(*latest, state);
      start_step = state.step;
      const auto meta_json = nlohmann::json::parse(state.metadata, nullptr, /*allow_exceptions=*/false);
      chrono.restore(meta_json.is_object() ? meta_json.value("chrono", nlohmann::json{}) : nlohmann::json{});
      if (meta_json.is_object() && meta_json.contains("best_value")) best_value = meta_json["best_value"].get<double>();
      SCENIC_LOG_INFO << "resumed from " << *latest << " at step " << start_step;
    }
  }
  if (start_step == 0 && ctx.init_from) {
    ctx.init_from(*network);
    if (ema) ema->reset();
  }
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  SCENIC_LOG_INFO << "model: detr, " << num_params << " parameters; device " << device.str() << "; "
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
    train::save_checkpoint(ckpt_dir, state, max_checkpoint_keep);
  };

  // One pass over `split`: loss metrics + COCO AP (DetrGlobalEvaluator).
  auto evaluate = [&](const std::string& split, int64_t max_steps, const std::string& detections_path) {
    std::optional<train::ScopedEmaSwap> swap;
    if (ema) swap.emplace(*ema);
    torch::NoGradGuard no_grad;
    network->eval();
    dataset::CocoGroundTruth gt;
    if (gt_source.from_json) gt = *gt_source.from_json;
    else gt.category_ids = gt_source.category_ids;
    dataset::CocoGroundTruth labels_only;  // what add_predictions needs: the category ids
    labels_only.category_ids = gt_source.category_ids;
    dataset::CocoEvaluator evaluator(labels_only);
    train::MetricsAccumulator acc;
    auto it = dataset.eval_iter(split);
    int64_t n = 0;
    while (auto batch = it->next()) {
      if (max_steps > 0 && n++ >= max_steps) break;
      auto b = train::batch_to_device(*batch, device);
      auto outputs = network->forward_detr(b.at("inputs"), b.count("padding_mask") ? b.at("padding_mask") : torch::Tensor());
      acc.add(model->loss_and_metrics(outputs, b).metrics);
      evaluator.add_predictions(outputs.pred_logits.cpu(), outputs.pred_boxes.cpu(), *batch);
      if (!gt_source.from_json) gt.add_batch(*batch);
    }
    auto m = acc.summary();
    auto coco = dataset::evaluate_coco(gt, evaluator.detections(), evaluator.image_ids_seen());
    for (const auto& [k, v] : coco.to_map()) m[k] = v;
    if (!detections_path.empty()) {
      evaluator.write_detections_json(detections_path);
      SCENIC_LOG_INFO << "wrote " << evaluator.detections().size() << " detections to " << detections_path;
    }
    network->train();
    return m;
  };
  auto run_eval = [&](const std::string& split, int64_t step, const std::string& detections_path = "") {
    auto m = evaluate(split, split == "valid" ? steps_per_eval : 0, detections_path);
    ctx.writer->write(step, split, m);
    SCENIC_LOG_INFO << split << " @ " << step << ": " << train::format_metrics(m);
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
    train::save_checkpoint(best_dir, state, 1);
    SCENIC_LOG_INFO << "best " << *best_metric << " so far (" << it->second << "): saved in " << best_dir;
  };

  // ---- The loop. ----
  train::PreemptionGuard preemption;
  std::vector<torch::Tensor> params;
  for (const auto& p : network->parameters())
    if (p.requires_grad()) params.push_back(p);
  auto train_iter = dataset.train_iter(start_step);
  network->train();
  train::MetricsAccumulator train_metrics;
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
    auto b = train::batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    train::set_learning_rate(*optimizer, lr);
    if (step == start_step + 1 && ctx.summary != nullptr)
      ctx.summary->image(step, "train_inputs", common::image_grid(b.at("inputs")));
    optimizer->zero_grad();
    auto outputs = network->forward_detr(b.at("inputs"), b.count("padding_mask") ? b.at("padding_mask") : torch::Tensor());
    auto result = model->loss_and_metrics(outputs, b);
    result.total.backward();
    torch::Tensor grad_norm = max_grad_norm > 0 ? train::clip_grad_global_norm(params, max_grad_norm)
                                                : train::global_norm([&] {
                                                    std::vector<torch::Tensor> g;
                                                    for (const auto& p : params) g.push_back(p.grad());
                                                    return g;
                                                  }());
    optimizer->step();
    if (ema) ema->update(step - 1);
    train_metrics.add(result.metrics);
    l2_grads_sum.add_(grad_norm.detach());
    last_loss = result.total.detach();
    ++window_steps;
    chrono.step_finished(batch_size);

    if (progress.due()) progress.update(step, last_loss.item<double>());

    if (summary_due) {
      auto m = train_metrics.summary();
      if (!std::isfinite(m["loss"]) || !std::isfinite(last_loss.item<double>())) {
        progress.finish();
        throw train::TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                           "; the last good checkpoint is kept in " + ckpt_dir);
      }
      m["learning_rate"] = lr;
      m["l2_grads"] = l2_grads_sum.item<double>() / window_steps;
      m["l2_params"] = train::global_norm(params).item<double>();
      for (const auto& [k, v] : chrono.summary()) m[k] = v;
      ctx.writer->write(step, "train", m);
      progress.finish();
      SCENIC_LOG_INFO << "train @ " << step << ": " << train::format_metrics(m);
      train_metrics.reset();
      l2_grads_sum.zero_();
      window_steps = 0;
    }
    if (step % log_eval_steps == 0 && !last) {
      progress.finish();
      maybe_save_best(run_eval("valid", step), step);
    }
    const int signal = train::PreemptionGuard::requested();
    if (step % checkpoint_steps == 0 || last || signal != 0) {
      if (!std::isfinite(last_loss.item<double>()))
        throw train::TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                           "; the last good checkpoint is kept in " + ckpt_dir);
      save(step);
    }
    if (signal != 0) {
      progress.finish();
      throw train::PreemptedError(
          "stopped by signal " + std::to_string(signal) + " at step " + std::to_string(step) +
              (checkpointing ? "; checkpoint saved in " + ckpt_dir + ", rerun the same command to resume"
                             : " (checkpoint: false, nothing saved)"),
          signal);
    }
  }
  progress.finish();

  TrainResult result;
  if (best_metric && best_value) result["best_valid"] = {{*best_metric, *best_value}};
  result["test"] = run_eval("test", total_steps, (std::filesystem::path(ctx.workdir) / "detections_test.json").string());
  return result;
}

void register_detr_trainer(train::TrainerRegistry& registry) {
  if (!registry.contains("detr_trainer")) registry.add("detr_trainer", detr_train);
}

}  // namespace scenic::baselines::detr
