#include "scenic/train_lib/transfer_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/logging.h"
#include "scenic/train_lib/checkpoints.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/fewshot.h"
#include "scenic/train_lib/gradient_all_reducer.h"
#include "scenic/train_lib/linear_probe.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/preemption.h"
#include "scenic/train_lib/train_loop.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace fs = std::filesystem;
namespace {
// `eval_sets`: a list of splits or a mapping name -> split; default [valid].
std::vector<std::pair<std::string, std::string>> read_eval_sets(const common::ConfigDict& config) {
  std::vector<std::pair<std::string, std::string>> sets;
  if (!config.has("eval_sets")) {
    config.get<std::string>("eval_sets", "valid");  // records the default
    return {{"valid", "valid"}};
  }
  const auto& j = config.json("eval_sets");
  if (j.is_string()) return {{j.get<std::string>(), j.get<std::string>()}};
  if (j.is_array()) {
    for (const auto& e : j) {
      if (!e.is_string()) throw Error("config key 'eval_sets': expected split names, got " + e.dump());
      sets.emplace_back(e.get<std::string>(), e.get<std::string>());
    }
  } else if (j.is_object()) {
    for (const auto& [name, split] : j.items()) {
      if (!split.is_string())
        throw Error("config key 'eval_sets." + name + "': expected a split name, got " + split.dump());
      sets.emplace_back(name, split.get<std::string>());
    }
  } else {
    throw Error("config key 'eval_sets': expected a list of splits or a mapping name -> split, got " + j.dump());
  }
  std::set<std::string> seen;
  for (const auto& [name, _] : sets) {
    if (name == "train" || name == "fewshot" || name == "linear_eval")
      throw Error("config key 'eval_sets': '" + name + "' is reserved for other metrics; rename the eval set");
    if (!seen.insert(name).second) throw Error("config key 'eval_sets': '" + name + "' appears twice");
  }
  if (sets.empty()) throw Error("config key 'eval_sets' is empty");
  return sets;
}

// One pass over `split`; for one-hot (or multi-hot) targets, examples whose label is
// all zeros count nowhere (Scenic: batch_mask *= label.max(-1)).
std::map<std::string, double> evaluate_split(model::Network& network, const model::BaseModel& model,
                                             dataset::Dataset& dataset, const std::string& split,
                                             const torch::Device& device, int64_t max_steps,
                                             const DistributedContext& dist, const DevicePrefetchOptions& prefetch) {
  torch::NoGradGuard no_grad;
  network.eval();
  auto metrics_fn = model.get_metrics_fn(split);
  const bool onehot = dataset.meta_data.target_is_onehot;
  MetricsAccumulator acc;
  auto it = prefetch_to_device(dataset.eval_iter(split), device, prefetch);
  int64_t steps = 0;
  while (auto batch = it->next()) {
    auto b = batch_to_device(*batch, device);
    if (onehot && b.count("batch_mask") && b.at("label").dim() == 2)
      b["batch_mask"] = b.at("batch_mask") * std::get<0>(b.at("label").max(-1)).to(b.at("batch_mask").dtype());
    acc.add(metrics_fn(network.forward(b.at("inputs")), b));
    if (max_steps > 0 && ++steps >= max_steps) break;
  }
  return acc.summary(&dist);
}

std::string shape_str(const torch::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

// ---- init_from ----

std::string InitFromReport::describe() const {
  std::string s = "init_from " + path + " (step " + std::to_string(step) + "): loaded " +
                  std::to_string(loaded.size()) + " tensors";
  if (!reinitialized.empty()) {
    s += "; re-initialized:";
    for (const auto& r : reinitialized) s += " " + r + ";";
  }
  if (!unused.empty()) {
    s += " not in this network:";
    for (const auto& u : unused) s += " " + u;
  }
  return s;
}

std::string resolve_checkpoint_path(const std::string& path) {
  if (fs::is_regular_file(path)) return path;
  if (fs::is_directory(path)) {
    if (auto latest = latest_checkpoint(path)) return *latest;
    if (auto latest = latest_checkpoint((fs::path(path) / "checkpoints").string())) return *latest;
    throw Error("config key 'init_from.checkpoint_path': no checkpoint_<step> in '" + path + "' or '" + path +
                "/checkpoints'");
  }
  throw Error("config key 'init_from.checkpoint_path': '" + path + "' does not exist");
}

InitFromReport init_from_checkpoint(const std::string& path, torch::nn::Module& network, const std::string& skip_regex,
                                    const std::string& head_prefix) {
  InitFromReport report;
  report.path = resolve_checkpoint_path(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(report.path);
  } catch (const std::exception& e) {
    throw Error("init_from: checkpoint '" + report.path + "' cannot be read: " + std::string(e.what()).substr(0, 200));
  }
  c10::IValue step;
  if (archive.try_read("step", step)) report.step = step.toInt();
  std::optional<std::regex> skip;
  if (!skip_regex.empty()) {
    try {
      skip.emplace(skip_regex);
    } catch (const std::regex_error& e) {
      throw Error("config key 'init_from.skip_regex': bad regex '" + skip_regex + "': " + e.what());
    }
  }
  torch::NoGradGuard no_grad;
  auto copy_section = [&](const char* section, const std::vector<std::pair<std::string, torch::Tensor>>& targets,
                          const char* what) {
    torch::serialize::InputArchive src;
    if (!archive.try_read(section, src)) {
      if (std::string(section) == "params") throw Error("init_from: '" + report.path + "' has no 'params' section");
      return;
    }
    std::set<std::string> used;
    for (const auto& [name, target] : targets) {
      const bool is_head = name.rfind(head_prefix, 0) == 0;
      torch::Tensor value;
      const bool present = src.try_read(name, value);
      if (present) used.insert(name);
      if (skip && std::regex_search(name, *skip)) {
        report.reinitialized.push_back(name + " " + shape_str(target) + " (skip_regex)");
        continue;
      }
      if (!present) {
        if (is_head) {
          report.reinitialized.push_back(name + " " + shape_str(target) + " (not in the checkpoint)");
          continue;
        }
        throw Error("init_from: checkpoint '" + report.path + "' has no " + what + " '" + name +
                    "' (add it to init_from.skip_regex to keep it freshly initialized)");
      }
      if (value.sizes() != target.sizes()) {
        if (is_head) {
          report.reinitialized.push_back(name + " " + shape_str(target) + " (checkpoint " + shape_str(value) + ")");
          continue;
        }
        throw Error("init_from: " + std::string(what) + " '" + name + "' has shape " + shape_str(value) +
                    " in checkpoint '" + report.path + "' but the model expects " + shape_str(target));
      }
      const_cast<torch::Tensor&>(target).copy_(value);
      report.loaded.push_back(name);
    }
    for (const auto& key : src.keys())
      if (!used.count(key)) report.unused.push_back(key);
  };
  std::vector<std::pair<std::string, torch::Tensor>> params, buffers;
  for (const auto& p : network.named_parameters()) params.emplace_back(p.key(), p.value());
  for (const auto& b : network.named_buffers()) buffers.emplace_back(b.key(), b.value());
  copy_section("params", params, "parameter");
  copy_section("buffers", buffers, "buffer");
  return report;
}

// ---- The trainer ----

TrainResult transfer_train(TrainerContext& ctx) {
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
  std::optional<std::string> init_path, init_skip;
  // Weights of another library (init_from.format flax | npz | safetensors) come through
  // ctx.init_from (set by main); a checkpoint of ours is restored here.
  if (config.has("init_from") && !ctx.init_from) {
    init_path = config.get<std::string>("init_from.checkpoint_path");
    init_skip = config.get<std::string>("init_from.skip_regex", "");
  }

  auto optimizer = make_optimizer(config, network->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(config);
  const auto max_grad_norm = config.get_optional<double>("max_grad_norm");
  const LoopConfig loop_config = read_loop_config(config, meta, /*with_best=*/false);
  const auto eval_sets = read_eval_sets(config);
  auto metrics_fn = model.get_metrics_fn("train");
  std::unique_ptr<FewShotEvaluator> fewshot;
  if (config.has("fewshot")) fewshot = std::make_unique<FewShotEvaluator>(config, ctx.dataset, loop_config.log_eval_steps);
  std::unique_ptr<LinearProbeEvaluator> linear_probe;
  if (config.has("linear_probe"))
    linear_probe = std::make_unique<LinearProbeEvaluator>(config, ctx.dataset, loop_config.log_eval_steps);
  if ((fewshot || linear_probe) && dist.is_distributed())
    throw Error("transfer_trainer: the fewshot and linear_probe evaluations run on one process only (they fit "
                "on features of whole splits); remove them or run without a launcher");

  TrainStateRef state{network.get(), optimizer.get(), 0, "{}"};
  TrainLoop loop(ctx, loop_config, state, *network, device);
  const int64_t start_step = loop.restore();
  // Only a fresh run initializes from the pre-trained checkpoint (Scenic: start_step == 0);
  // a resumed one already holds the fine-tuned weights.
  std::optional<InitFromReport> init_report;
  if (init_path && start_step == 0) {
    init_report = init_from_checkpoint(*init_path, *network, *init_skip);
    SCENIC_LOG_INFO << init_report->describe();
  }
  if (ctx.init_from && start_step == 0) ctx.init_from(*network);
  loop.sync_parameters();
  int64_t num_params = 0;
  for (const auto& p : network->parameters()) num_params += p.numel();
  ctx.finish_setup();
  std::map<std::string, double> step0;
  if (init_report) {
    step0["init_from_loaded"] = static_cast<double>(init_report->loaded.size());
    step0["init_from_reinitialized"] = static_cast<double>(init_report->reinitialized.size());
  }
  loop.log_start(config.get<std::string>("model_name"), num_params, "", step0);

  auto run_eval = [&](const std::string& name, const std::string& split, int64_t step) {
    loop.before_eval();
    auto m = evaluate_split(*network, model, dataset, split, device, split == "test" ? 0 : loop_config.steps_per_eval,
                            dist, prefetch_options);
    network->train();
    loop.write_eval(step, name, m, " (" + split + ")");
    return m;
  };
  auto run_transfer_evals = [&](int64_t step, bool last) {
    if (fewshot && (last || step % fewshot->log_eval_steps() == 0)) {
      auto m = fewshot->summary(fewshot->run_all(*network, device));
      if (loop_config.steps.steps_per_epoch > 0)
        m["zz/epoch"] = static_cast<double>(step) / loop_config.steps.steps_per_epoch;
      loop.write_eval(step, "fewshot", m);
    }
    if (linear_probe && (last || (linear_probe->log_eval_steps() > 0 && step % linear_probe->log_eval_steps() == 0))) {
      auto m = linear_probe->run_all(*network, device);
      loop.write_eval(step, "linear_eval", m);
    }
    network->train();
  };

  // ---- The loop. ----
  PreemptionGuard preemption;
  std::vector<torch::Tensor> params = network->parameters();
  GradientAllReducer reducer(params, ctx.dist);  // mean gradient over processes
  auto train_iter = prefetch_to_device(dataset.train_iter(start_step), device, prefetch_options);
  network->train();
  MetricsAccumulator train_metrics;

  for (int64_t step = start_step + 1; step <= loop.total_steps(); ++step) {
    const bool last = step == loop.total_steps();
    loop.step_started();
    auto batch = train_iter->next();
    if (!batch) throw Error("the training iterator ended at step " + std::to_string(step));
    auto b = batch_to_device(*batch, device);

    const double lr = lr_fn(step - 1);  // optax counts updates from 0
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    auto logits = network->forward(b.at("inputs"));
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
    if (loop.eval_due(step))
      for (const auto& [name, split] : eval_sets) run_eval(name, split, step);
    if (!last) run_transfer_evals(step, false);
    loop.end_step(step);
  }
  loop.finish();

  // The end: every eval set, `test` (what `scenic eval` reproduces), and the transfer
  // evaluations of the final weights.
  TrainResult result;
  for (const auto& [name, split] : eval_sets) result[name] = run_eval(name, split, loop.total_steps());
  if (!result.count("test")) result["test"] = run_eval("test", "test", loop.total_steps());
  run_transfer_evals(loop.total_steps(), true);
  return result;
}

}  // namespace scenic::train
