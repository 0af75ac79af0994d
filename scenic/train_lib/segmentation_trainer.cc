#include "scenic/train_lib/segmentation_trainer.h"

#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/summary_writer.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/gradient_all_reducer.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_loop.h"
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
                                                    torch::Tensor* example, const DistributedContext* dist,
                                                    const DevicePrefetchOptions& prefetch) {
  torch::NoGradGuard no_grad;
  network.eval();
  auto metrics_fn = model.get_metrics_fn(split);
  MetricsAccumulator acc;
  torch::Tensor confusion;  // [K, K] float64 pixel counts, on the device
  auto it = prefetch_to_device(dataset.eval_iter(split), device, prefetch);
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
  auto out = acc.summary(dist);
  if (!confusion.defined()) return out;
  // Each process summed the matrix of its shard; the sum over processes is that of the
  // whole split (Scenic all-gathers the per-device matrices and sums them).
  if (dist != nullptr && dist->is_distributed()) {
    std::vector<torch::Tensor> t{confusion};
    all_reduce_sum(t, *dist);
  }
  for (const auto& [k, v] : model.global_metrics(confusion.cpu())) out[k] = v;
  return out;
}

TrainResult segmentation_train(TrainerContext& ctx) {
  const auto& config = ctx.config;
  const auto& model = segmentation_model_of(ctx);
  auto& dataset = *ctx.dataset;
  const auto& meta = dataset.meta_data;
  const DistributedContext& dist = *ctx.dist;

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = trainer_device(ctx);
  const DevicePrefetchOptions prefetch_options = device_prefetch_options(config, device);
  auto network = model.build_network();
  network->to(device);
  auto optimizer = make_optimizer(config, network->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(config);
  const auto max_grad_norm = config.get_optional<double>("max_grad_norm");
  auto metrics_fn = model.get_metrics_fn("train");

  TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
  TrainLoop loop(ctx, read_loop_config(config, meta), state, *network, device);
  const int64_t start_step = loop.restore();
  loop.sync_parameters();
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  loop.log_start(config.get<std::string>("model_name"), num_params,
                 ", " + std::to_string(meta.num_classes) + " classes");

  auto run_eval = [&](const std::string& split, int64_t step) {
    loop.before_eval();
    torch::Tensor example;
    auto m = evaluate_segmentation(*network, model, dataset, split, device, loop.eval_steps(split),
                                   ctx.summary != nullptr ? &example : nullptr, &dist, prefetch_options);
    network->train();
    loop.write_eval(step, split, m);
    if (ctx.summary != nullptr && example.defined()) ctx.summary->image(step, split + "/example", example);
    return m;
  };

  // ---- The loop. ----
  PreemptionGuard preemption;
  std::vector<torch::Tensor> params = network->parameters();
  GradientAllReducer reducer(params, ctx.dist);  // mean gradient over processes
  auto train_iter = prefetch_to_device(dataset.train_iter(start_step), device, prefetch_options);
  network->train();
  MetricsAccumulator train_metrics;

  for (int64_t step = start_step + 1; step <= loop.total_steps(); ++step) {
    loop.step_started();
    auto batch = train_iter->next();
    if (!batch) throw Error("the training iterator ended at step " + std::to_string(step));
    auto b = batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    auto logits = network->forward(b.at("inputs"));  // [B, K, H, W]
    auto loss = model.loss_function(logits, b, network.get());
    loss.backward();
    reducer.finish();
    torch::Tensor grad_norm = clip_or_measure_grads(params, max_grad_norm);
    optimizer->step();
    train_metrics.add(metrics_fn(logits.detach(), b));
    loop.step_finished(step, loss, grad_norm);

    if (loop.summary_due(step)) {
      auto m = train_metrics.summary(&dist);
      loop.write_train_summary(step, m, lr, params);
      train_metrics.reset();
    }
    if (loop.eval_due(step)) loop.maybe_save_best(run_eval("valid", step), step);
    loop.end_step(step);
  }
  loop.finish();

  TrainResult result = loop.best_result();
  result["test"] = run_eval("test", loop.total_steps());
  return result;
}

}  // namespace scenic::train
