#include "scenic/train_lib/train_utils.h"

#include <torch/torch.h>

#include <cstdio>

#include "scenic/train_lib/batch_split.h"

namespace scenic::train {

TrainingSteps get_num_training_steps(const common::ConfigDict& config, const dataset::MetaData& meta) {
  const auto batch_size = config.get<int64_t>("batch_size");
  TrainingSteps steps;
  if (meta.num_train_examples > 0) steps.steps_per_epoch = meta.num_train_examples / batch_size;
  auto num_steps = config.get_optional<int64_t>("num_training_steps");
  auto num_epochs = config.get_optional<double>("num_training_epochs");
  if (num_steps) {
    steps.total_steps = *num_steps;
  } else if (num_epochs) {
    if (steps.steps_per_epoch == 0)
      throw Error("config key 'num_training_epochs' needs a dataset with a known size; set num_training_steps");
    steps.total_steps = static_cast<int64_t>(*num_epochs * steps.steps_per_epoch);
  } else {
    throw Error("config needs 'num_training_steps' or 'num_training_epochs'");
  }
  if (steps.total_steps <= 0)
    throw Error("config: the run has " + std::to_string(steps.total_steps) + " training steps");
  return steps;
}

torch::Device get_device(const common::ConfigDict& config) {
  const auto name = config.get<std::string>("device", "auto");
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  try {
    torch::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available())
      throw Error("config key 'device' is '" + name + "' but no CUDA device is available");
    return device;
  } catch (const c10::Error&) {
    throw Error("config key 'device': '" + name + "' is not a device (auto, cpu, cuda, cuda:N)");
  }
}

dataset::Batch batch_to_device(const dataset::Batch& batch, const torch::Device& device) {
  if (device.is_cpu()) return batch;
  dataset::Batch out;
  for (const auto& [k, v] : batch) out[k] = v.to(device, /*non_blocking=*/true);
  return out;
}

void MetricsAccumulator::add(const model::MetricsDict& metrics) {
  for (const auto& [name, pair] : metrics) {
    auto it = sums_.find(name);
    if (it == sums_.end()) {
      sums_[name] = {pair.first.detach().to(torch::kFloat64), pair.second.detach().to(torch::kFloat64)};
    } else {
      it->second.first.add_(pair.first.detach());
      it->second.second.add_(pair.second.detach());
    }
  }
}

std::map<std::string, double> MetricsAccumulator::summary(const DistributedContext* dist) const {
  std::map<std::string, double> out;
  if (sums_.empty()) return out;
  // One transfer (and one all-reduce) for all metrics instead of one per value.
  std::vector<torch::Tensor> flat;
  for (const auto& [_, pair] : sums_) {
    flat.push_back(pair.first.reshape({1}));
    flat.push_back(pair.second.reshape({1}));
  }
  std::vector<torch::Tensor> sums{torch::cat(flat)};  // [2 * metrics] float64
  if (dist != nullptr && dist->is_distributed()) all_reduce_sum(sums, *dist);
  auto host = sums[0].cpu();
  auto* v = host.data_ptr<double>();
  size_t i = 0;
  for (const auto& [name, _] : sums_) {
    out[name] = v[i] / (v[i + 1] + 1e-9);
    i += 2;
  }
  return out;
}

void check_same_start_step(int64_t start_step, const std::string& ckpt_dir, const DistributedContext& dist) {
  if (!dist.is_distributed()) return;
  // sum(s)^2 == P * sum(s^2) exactly when every s is equal (Cauchy-Schwarz); the values
  // are integers far below 2^26, so float64 holds them exactly.
  const double s = static_cast<double>(start_step);
  std::vector<torch::Tensor> t{torch::tensor({s, s * s}, torch::kFloat64).to(dist.device)};
  all_reduce_sum(t, dist);
  auto host = t[0].cpu();
  const double sum = host[0].item<double>(), sum_sq = host[1].item<double>();
  if (sum * sum != dist.world_size * sum_sq)
    throw Error("the processes resume from different steps (rank " + std::to_string(dist.rank) + ": step " +
                std::to_string(start_step) + ", from '" + ckpt_dir +
                "'): every process must see the same workdir (a shared filesystem)");
}

std::map<std::string, double> evaluate(model::Network& network, const model::BaseModel& model,
                                       dataset::Dataset& dataset, const std::string& split,
                                       const torch::Device& device, int64_t max_steps,
                                       const DistributedContext* dist, const DevicePrefetchOptions& prefetch) {
  torch::NoGradGuard no_grad;
  network.eval();
  auto metrics_fn = model.get_metrics_fn(split);
  MetricsAccumulator acc;
  auto it = prefetch_to_device(dataset.eval_iter(split), device, prefetch);
  int64_t steps = 0;
  while (auto batch = it->next()) {
    auto b = batch_to_device(*batch, device);
    acc.add(metrics_fn(forward_split_batch(network, b.at("inputs"), eval_split_threads(network)), b));
    if (max_steps > 0 && ++steps >= max_steps) break;
  }
  return acc.summary(dist);
}

std::string format_metrics(const std::map<std::string, double>& metrics) {
  std::string s;
  for (const auto& [k, v] : metrics) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s%s=%.5g", s.empty() ? "" : " ", k.c_str(), v);
    s += buf;
  }
  return s;
}

void init_head_bias(model::Network& network, double value) {
  torch::NoGradGuard no_grad;
  for (auto& p : network.named_parameters())
    if (p.key().rfind("output_projection.", 0) == 0 && p.key().size() > 5 &&
        p.key().compare(p.key().size() - 5, 5, ".bias") == 0)
      p.value().fill_(value);
}

}  // namespace scenic::train
