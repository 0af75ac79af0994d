#include "scenic/train_lib/classification_trainer.h"

#include <torch/torch.h>

#include <cmath>


#include "scenic/common_lib/logging.h"
#include "scenic/dataset_lib/mixup.h"
#include "scenic/train_lib/autocast.h"
#include "scenic/train_lib/batch_split.h"
#include "scenic/train_lib/cuda_graph_step.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/ema.h"
#include "scenic/train_lib/fused_adamw.h"
#include "scenic/train_lib/grad_accumulation.h"
#include "scenic/train_lib/gradient_all_reducer.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_loop.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace {
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

}  // namespace

TrainResult classification_train(TrainerContext& ctx) {
  const auto& config = ctx.config;
  auto& model = *ctx.model;
  auto& dataset = *ctx.dataset;
  const auto& meta = dataset.meta_data;
  const DistributedContext& dist = *ctx.dist;

  // ---- Set-up: read every key before finish_setup() checks for unknown ones. ----
  const torch::Device device = trainer_device(ctx);
  const DevicePrefetchOptions prefetch_options = device_prefetch_options(config, device);
  auto network = model.build_network();
  network->to(device);
  if (auto bias = config.get_optional<double>("init_head_bias")) init_head_bias(*network, *bias);

  auto optimizer = make_optimizer(config, network->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(config);
  const auto max_grad_norm = config.get_optional<double>("max_grad_norm");
  auto metrics_fn = model.get_metrics_fn("train");
  const MixupConfig mixup = read_mixup(config);
  const int64_t accum_steps = config.get<int64_t>("accum_steps", 1);
  if (accum_steps < 1) throw Error("config key 'accum_steps' must be >= 1");
  const bool autocast_bf16 = read_autocast_bf16(config);
  // `cuda_graph: true`: the step (forward, loss, backward, clipping, update) captured
  // once and replayed (cuda_graph_step.h); the optimizer then reads its learning rate
  // from the device.
  FusedAdamW* graph_adamw = config.get<bool>("cuda_graph", false)
                                ? &enable_cuda_graph(*optimizer, device, accum_steps, dist.is_distributed())
                                : nullptr;
  std::unique_ptr<Ema> ema;
  if (auto decay = config.get_optional<double>("ema.decay"))
    ema = std::make_unique<Ema>(*network, EmaOptions{*decay, config.get<bool>("ema.warmup", false), true});

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
  TrainLoop loop(ctx, read_loop_config(config, meta), state, *network, device);
  const int64_t start_step = loop.restore();
  if (start_step == 0 && ctx.init_from) ctx.init_from(*network);
  loop.sync_parameters();                    // every process starts from rank 0's weights
  if (start_step == 0 && ema) ema->reset();  // the average starts from these weights
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  loop.log_start(config.get<std::string>("model_name"), num_params,
                 graph_adamw != nullptr ? " (training step captured as a CUDA graph)" : "");

  auto run_eval = [&](const std::string& split, int64_t step) {
    loop.before_eval();
    // With an EMA, evaluation uses the averaged weights (as it is the model one ships).
    std::optional<ScopedEmaSwap> swap;
    if (ema) swap.emplace(*ema);
    auto m = evaluate(*network, model, dataset, split, device, loop.eval_steps(split), &dist, prefetch_options);
    network->train();
    loop.write_eval(step, split, m);
    return m;
  };

  // ---- The loop. ----
  PreemptionGuard preemption;
  std::vector<torch::Tensor> params = network->parameters();
  // Gradients averaged over processes during backward (no-op with one process).
  GradientAllReducer reducer(params, ctx.dist);
  auto train_iter = prefetch_to_device(dataset.train_iter(start_step), device, prefetch_options);
  network->train();
  MetricsAccumulator train_metrics;
  auto micro_loss = [&](const dataset::Batch& micro) {
    torch::Tensor out;
    {
      AutocastScope autocast_scope(autocast_bf16, device.type());
      out = network->forward(micro.at("inputs"));
    }
    out = out.to(torch::kFloat32);
    return std::make_pair(model.loss_function(out, micro, network.get()), out);
  };
  std::optional<GraphedStep> graphed;
  if (graph_adamw != nullptr) {
    graphed.emplace(capturable_train_step(*optimizer, params, max_grad_norm, micro_loss), device);
  }

  for (int64_t step = start_step + 1; step <= loop.total_steps(); ++step) {
    const bool summary_due = loop.summary_due(step);
    loop.step_started();
    auto batch = train_iter->next();
    if (!batch) throw Error("the training iterator ended at step " + std::to_string(step));
    auto b = batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    set_learning_rate(*optimizer, lr);
    if (mixup.enabled()) apply_mixup(mixup, b, meta.num_classes, step);
    if (step == start_step + 1 && ctx.summary != nullptr)
      ctx.summary->image(step, "train_inputs", common::image_grid(b.at("inputs")));
    // l2_updates is measured on the step that writes the summary (one copy of the
    // parameters on that step only), not averaged over the window as in Scenic.
    std::vector<torch::Tensor> before;
    if (summary_due) {
      torch::NoGradGuard no_grad;
      for (const auto& p : params) before.push_back(p.detach().clone());
    }
    torch::Tensor loss, logits, grad_norm;
    if (graphed) {
      graph_adamw->load_learning_rates();
      auto out = (*graphed)(b);  // static tensors, overwritten by the next step
      loss = out[0], logits = out[1], grad_norm = out[2];
    } else {
      optimizer->zero_grad();
      // On a multi-core CPU, one process, no accumulation: the batch split over the threads.
      const int64_t slices = accum_steps == 1 && !dist.is_distributed()
                                 ? train_split_slices(*network, b, at::get_num_threads()) : 1;
      AccumulatedStep acc;
      if (slices > 1) {
        acc = accumulate_gradients_split(b, slices, micro_loss);
      } else {
        // With accumulation, only the last micro-batch's backward communicates (DDP's
        // no_sync): `no_sync` is dropped when the last micro-batch's forward starts,
        // before accumulate_gradients runs its backward.
        std::optional<GradientAllReducer::NoSync> no_sync;
        if (accum_steps > 1) no_sync.emplace(reducer);
        int64_t micro_index = 0;
        acc = accumulate_gradients(b, accum_steps, [&](const dataset::Batch& micro) {
          if (++micro_index == accum_steps) no_sync.reset();
          return micro_loss(micro);
        });
      }
      loss = acc.loss, logits = acc.outputs;
      reducer.finish();  // every rank now holds the mean gradient
      grad_norm = clip_or_measure_grads(params, max_grad_norm);
      optimizer->step();
    }
    if (ema) ema->update(step - 1);
    train_metrics.add(metrics_fn(logits, b));
    loop.step_finished(step, loss, grad_norm);

    if (summary_due) {
      auto m = train_metrics.summary(&dist);
      std::vector<torch::Tensor> updates;
      {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) updates.push_back(params[i].detach() - before[i]);
      }
      m["l2_updates"] = global_norm(updates).item<double>();
      loop.write_train_summary(step, m, lr, params);
      train_metrics.reset();
    }
    if (loop.eval_due(step)) {
      loop.maybe_save_best(run_eval("valid", step), step);
      if (ctx.summary != nullptr)
        for (const auto& p : network->named_parameters()) ctx.summary->histogram(step, "params/" + p.key(), p.value());
    }
    loop.end_step(step);
  }
  loop.finish();

  TrainResult result = loop.best_result();
  result["test"] = run_eval("test", loop.total_steps());
  return result;
}

}  // namespace scenic::train
