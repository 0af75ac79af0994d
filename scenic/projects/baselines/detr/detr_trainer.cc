#include "scenic/projects/baselines/detr/detr_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/common_lib/summary_writer.h"
#include "scenic/dataset_lib/coco_eval.h"
#include "scenic/projects/baselines/detr/detr_base_model.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/ema.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_loop.h"
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
  if (ctx.dist->is_distributed())
    throw Error("detr_trainer runs on one process: multi-process DETR (num_boxes summed over processes, "
                "detections gathered for the COCO evaluation) is not built yet; run without a launcher");

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = train::get_device(config);
  const train::DevicePrefetchOptions prefetch_options = train::device_prefetch_options(config, device);
  auto network_base = model->build_network();
  auto network = std::dynamic_pointer_cast<DETR>(network_base);
  network->to(device);
  auto optimizer = train::make_optimizer(config, network->named_parameters());
  const train::LrFn lr_fn = train::get_learning_rate_fn(config);
  const double max_grad_norm = config.get<double>("max_grad_norm", 0.1);
  std::unique_ptr<train::Ema> ema;
  if (auto decay = config.get_optional<double>("ema.decay"))
    ema = std::make_unique<train::Ema>(*network, train::EmaOptions{*decay, config.get<bool>("ema.warmup", false), true});
  const GroundTruthSource gt_source = read_ground_truth_source(config, meta);

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
  train::TrainLoop loop(ctx, train::read_loop_config(config, meta), state, *network, device);
  const int64_t start_step = loop.restore();
  if (start_step == 0 && ctx.init_from) ctx.init_from(*network);
  if (start_step == 0 && ema) ema->reset();
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  loop.log_start("detr", num_params);

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
    loop.before_eval();
    auto m = evaluate(split, loop.eval_steps(split), detections_path);
    loop.write_eval(step, split, m);
    return m;
  };
  // ---- The loop. ----
  train::PreemptionGuard preemption;
  std::vector<torch::Tensor> params;
  for (const auto& p : network->parameters())
    if (p.requires_grad()) params.push_back(p);
  auto train_iter = train::prefetch_to_device(dataset.train_iter(start_step), device, prefetch_options);
  network->train();
  train::MetricsAccumulator train_metrics;

  for (int64_t step = start_step + 1; step <= loop.total_steps(); ++step) {
    loop.step_started();
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
    torch::Tensor grad_norm = train::clip_or_measure_grads(
        params, max_grad_norm > 0 ? std::optional<double>(max_grad_norm) : std::nullopt);
    optimizer->step();
    if (ema) ema->update(step - 1);
    train_metrics.add(result.metrics);
    loop.step_finished(step, result.total, grad_norm);

    if (loop.summary_due(step)) {
      auto m = train_metrics.summary();
      loop.write_train_summary(step, m, lr, params);
      train_metrics.reset();
    }
    if (loop.eval_due(step)) loop.maybe_save_best(run_eval("valid", step), step);
    loop.end_step(step);
  }
  loop.finish();

  TrainResult result = loop.best_result();
  result["test"] = run_eval("test", loop.total_steps(), (std::filesystem::path(ctx.workdir) / "detections_test.json").string());
  return result;
}

void register_detr_trainer(train::TrainerRegistry& registry) {
  if (!registry.contains("detr_trainer")) registry.add("detr_trainer", detr_train);
}

}  // namespace scenic::baselines::detr
