#include "scenic/train_lib/classification_trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/common_lib/progress.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace {

using Clock = std::chrono::steady_clock;

std::string format_metrics(const std::map<std::string, double>& m) {
  std::string s;
  for (const auto& [k, v] : m) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s%s=%.5g", s.empty() ? "" : " ", k.c_str(), v);
    s += buf;
  }
  return s;
}

// Scenic's init_head_bias: every bias under `output_projection` set to a constant.
void init_head_bias(model::Network& network, double value) {
  torch::NoGradGuard no_grad;
  for (auto& p : network.named_parameters())
    if (p.key().rfind("output_projection.", 0) == 0 && p.key().size() > 5 &&
        p.key().compare(p.key().size() - 5, 5, ".bias") == 0)
      p.value().fill_(value);
}

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
  auto metrics_fn = model.get_metrics_fn("train");

  const std::string ckpt_dir = (std::filesystem::path(ctx.workdir) / "checkpoints").string();
  int64_t start_step = 0;
  double accum_train_time = 0.0;  // seconds spent in train steps, kept across resumes
  TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
  if (checkpointing) {
    if (auto latest = latest_checkpoint(ckpt_dir)) {
      restore_checkpoint(*latest, state);
      start_step = state.step;
      accum_train_time = nlohmann::json::parse(state.metadata).value("accum_train_time", 0.0);
      SCENIC_LOG_INFO << "resumed from " << *latest << " at step " << start_step;
    }
  }
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  SCENIC_LOG_INFO << "model: " << config.get<std::string>("model_name") << ", " << num_params
                  << " parameters; device " << device.str() << "; " << total_steps << " steps ("
                  << steps.steps_per_epoch << " per epoch), batch " << batch_size;
  if (start_step == 0) ctx.writer->write(0, "train", {{"num_trainable_params", double(num_params)}});

  auto save = [&](int64_t step) {
    if (!checkpointing) return;
    state.step = step;
    state.metadata = nlohmann::json{{"accum_train_time", accum_train_time}}.dump();
    save_checkpoint(ckpt_dir, state, max_checkpoint_keep);
  };
  auto run_eval = [&](const std::string& split, int64_t step) {
    auto m = evaluate(*network, model, dataset, split, device, split == "valid" ? steps_per_eval : 0);
    network->train();
    ctx.writer->write(step, split, m);
    SCENIC_LOG_INFO << split << " @ " << step << ": " << format_metrics(m);
    return m;
  };

  // ---- The loop. ----
  std::vector<torch::Tensor> params = network->parameters();
  auto train_iter = dataset.train_iter(start_step);
  network->train();
  MetricsAccumulator train_metrics;
  torch::Tensor l2_grads_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  int64_t window_steps = 0;
  double window_time = 0.0;
  common::ProgressBar progress(total_steps, start_step, batch_size);
  torch::Tensor last_loss;

  for (int64_t step = start_step + 1; step <= total_steps; ++step) {
    const auto t0 = Clock::now();
    auto batch = train_iter->next();
    if (!batch) throw Error("the training iterator ended at step " + std::to_string(step));
    auto b = batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    auto logits = network->forward(b.at("inputs"));
    auto loss = model.loss_function(logits, b, network.get());
    loss.backward();
    torch::Tensor grad_norm = max_grad_norm ? clip_grad_global_norm(params, *max_grad_norm)
                                            : global_norm([&] {
                                                std::vector<torch::Tensor> g;
                                                for (auto& p : params) g.push_back(p.grad());
                                                return g;
                                              }());
    optimizer->step();
    train_metrics.add(metrics_fn(logits.detach(), b));
    l2_grads_sum.add_(grad_norm.detach());
    last_loss = loss.detach();
    ++window_steps;
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    window_time += dt;
    accum_train_time += dt;

    if (progress.due()) progress.update(step, last_loss.item<double>());

    const bool last = step == total_steps;
    if (step % log_summary_steps == 0 || last) {
      auto m = train_metrics.summary();
      if (!std::isfinite(m["loss"]) || !std::isfinite(last_loss.item<double>())) {
        progress.finish();
        throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " +
                                    std::to_string(step) + "; the last good checkpoint is kept in " + ckpt_dir);
      }
      m["learning_rate"] = lr;
      m["l2_grads"] = l2_grads_sum.item<double>() / window_steps;
      m["l2_params"] = global_norm(params).item<double>();
      m["examples_per_sec"] = window_time > 0 ? window_steps * batch_size / window_time : 0.0;
      m["accum_train_time_s"] = accum_train_time;
      ctx.writer->write(step, "train", m);
      progress.finish();
      SCENIC_LOG_INFO << "train @ " << step << ": " << format_metrics(m);
      train_metrics.reset();
      l2_grads_sum.zero_();
      window_steps = 0;
      window_time = 0.0;
    }
    if (step % log_eval_steps == 0 && !last) {
      progress.finish();
      run_eval("valid", step);
    }
    if ((step % checkpoint_steps == 0 || last)) {
      // Never write a diverged state over the last good checkpoint.
      if (!std::isfinite(last_loss.item<double>()))
        throw TrainingDivergedError("training diverged: the loss is NaN/Inf at step " + std::to_string(step) +
                                    "; the last good checkpoint is kept in " + ckpt_dir);
      save(step);
    }
  }
  progress.finish();

  TrainResult result;
  result["test"] = run_eval("test", total_steps);
  return result;
}

}  // namespace scenic::train
