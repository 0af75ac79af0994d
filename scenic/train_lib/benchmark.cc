#include "scenic/train_lib/benchmark.h"

#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/torch.h>


#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define SCENIC_HAVE_CUDA_ALLOCATOR 1
#endif

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/flop_counter.h"
#include "scenic/model_lib/layers/dense.h"
#include "scenic/train_lib/autocast.h"
#include "scenic/train_lib/batch_split.h"
#include "scenic/train_lib/cuda_graph_step.h"
#include "scenic/train_lib/fused_adamw.h"
#include "scenic/train_lib/optimizers.h"
#include "scenic/train_lib/setup.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {
namespace {

using Clock = std::chrono::steady_clock;

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

std::vector<int64_t> batch_shape(const std::vector<int64_t>& input_shape, int64_t batch) {
  if (input_shape.empty()) throw Error("the dataset's meta data has no input_shape");
  auto shape = input_shape;
  shape[0] = batch;
  return shape;
}

// A classification batch: inputs ~ N(0, 1), labels uniform (one-hot when the dataset's
// targets are), every example real.
dataset::Batch synthetic_batch(const dataset::MetaData& meta, int64_t batch, const torch::Device& device) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  dataset::Batch b;
  b["inputs"] = torch::randn(batch_shape(meta.input_shape, batch), f32);
  if (meta.num_classes > 0) {
    auto labels = torch::randint(meta.num_classes, {batch}, torch::TensorOptions().dtype(torch::kLong).device(device));
    b["label"] = meta.target_is_onehot ? torch::one_hot(labels, meta.num_classes).to(torch::kFloat32) : labels;
  }
  b["batch_mask"] = torch::ones({batch}, f32);
  return b;
}

// numpy's default (linear) percentile of sorted values.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

// The resident-set high-water mark, reset so that it covers the steps only: Linux resets
// it on "5" > /proc/self/clear_refs and reports it as VmHWM. getrusage's ru_maxrss is the
// fallback (it also remembers the peaks of exited threads, so it cannot be reset).
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (f) f << "5";
}
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // kB
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kB on Linux
}

void reset_gpu_peak(const torch::Device& device) {
#ifdef SCENIC_HAVE_CUDA_ALLOCATOR
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index() < 0 ? 0 : device.index());
#else
  (void)device;
#endif
}
double gpu_peak_mib(const torch::Device& device) {
#ifdef SCENIC_HAVE_CUDA_ALLOCATOR
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    const auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<double>(stats.allocated_bytes[agg].peak) / (1024.0 * 1024.0);
  }
#else
  (void)device;
#endif
  return -1;
}

// Multiply-adds per second of the best of several n x n x n fp32 products, on the GEMM
// library the layers use (gemm_backend: MKL's and oneDNN's peaks differ by 2x on AMD).
double matmul_gflops(int64_t n, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  auto a = torch::randn({n, n}, f32), b = torch::randn({n, n}, f32), c = torch::empty({n, n}, f32);
  const bool onednn = device.is_cpu() && model::gemm_backend() == model::GemmBackend::kOneDnn;
  auto product = [&] {
    if (onednn) c = model::dense(a, b, torch::Tensor());  // a b^T: the same work
    else at::mm_out(c, a, b);
  };
  product();  // warm-up (thread pool, BLAS buffers, cuBLAS handle)
  sync(device);
  double best = INFINITY, total = 0;
  for (int reps = 0; reps < 3 || (total < 0.5 && reps < 200); ++reps) {
    const auto t0 = Clock::now();
    product();
    sync(device);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  return static_cast<double>(n) * n * n / best / 1e9;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

dataset::MetaData meta_for(const common::ConfigDict& config, const MetaOverride& override_meta) {
  if (override_meta.input_shape.empty()) return build_dataset(config)->meta_data;
  if (override_meta.num_classes <= 0) throw Error("--input_shape needs --num_classes (> 0)");
  dataset::MetaData meta;
  meta.input_shape = {-1};
  for (int64_t d : override_meta.input_shape) {
    if (d <= 0) throw Error("--input_shape: dimensions must be positive, got " + shape_str(override_meta.input_shape));
    meta.input_shape.push_back(d);
  }
  meta.num_classes = override_meta.num_classes;
  return meta;
}

common::ConfigDict load_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto config = common::ConfigDict::from_yaml_file(path);
  config.apply_overrides(overrides);
  set_threads(config);
  torch::manual_seed(static_cast<uint64_t>(config.get<int64_t>("rng_seed", 0)));
  return config;
}

}  // namespace

int64_t forward_flops_per_example(model::Network& network, const std::vector<int64_t>& input_shape,
                                  const torch::Device& device, std::map<std::string, int64_t>* by_op) {
  torch::NoGradGuard no_grad;
  network.eval();
  const auto x = torch::randn(batch_shape(input_shape, 1), torch::TensorOptions().device(device));
  return common::count_flops([&] { network.forward(x); }, by_op);
}

ModelInfo model_info(const model::BaseModel& model, const std::string& model_name) {
  ModelInfo info;
  info.model_name = model_name;
  info.input_shape = model.meta_data().input_shape;
  info.num_classes = model.meta_data().num_classes;
  auto network = model.build_network();
  info.params = common::parameter_overview(*network);
  info.num_params = common::total_size(info.params);
  info.flops_per_example = forward_flops_per_example(*network, info.input_shape, torch::kCPU, &info.flops_by_op);
  return info;
}

std::string format_model_info(const ModelInfo& info) {
  std::ostringstream out;
  out << "model " << info.model_name << ": input " << shape_str(info.input_shape) << ", " << info.num_classes
      << " classes\n";
  out << common::format_parameter_overview(info.params);
  out << "GFLOPs per example (forward, batch 1, multiply-add = 1 FLOP): "
      << fmt("%.4f", static_cast<double>(info.flops_per_example) / 1e9) << " ("
      << common::with_commas(info.flops_per_example) << " multiply-adds)\n";
  for (const auto& [op, f] : info.flops_by_op)
    out << "  " << op << ": " << common::with_commas(f) << " ("
        << fmt("%.1f", info.flops_per_example > 0 ? 100.0 * static_cast<double>(f) / info.flops_per_example : 0.0)
        << "%)\n";
  return out.str();
}

BenchResult bench(const common::ConfigDict& config, const model::BaseModel& model, const BenchOptions& o) {
  if (o.mode != "train" && o.mode != "eval") throw Error("bench: --mode must be train or eval, not '" + o.mode + "'");
  if (o.steps < 1 || o.warmup_steps < 0) throw Error("bench: --steps must be >= 1 and --warmup_steps >= 0");
  BenchResult r;
  r.model_name = config.get<std::string>("model_name", "");
  r.mode = o.mode;
  r.steps = o.steps;
  r.warmup_steps = o.warmup_steps;
  if (o.batch_size < 0) throw Error("bench: --batch_size must be >= 1, got " + std::to_string(o.batch_size));
  r.batch_size = o.batch_size > 0 ? o.batch_size : config.get<int64_t>("batch_size");
  if (r.batch_size < 1) throw Error("config key 'batch_size' must be >= 1, got " + std::to_string(r.batch_size));
  r.threads = at::get_num_threads();
  r.gemm_backend = model::gemm_backend_name(model::gemm_backend());
  double load[1];
  if (getloadavg(load, 1) == 1) r.load_average = load[0];
  const torch::Device device = get_device(config);
  r.device = device.str();
  const auto& meta = model.meta_data();

  auto network = model.build_network();
  network->to(device);
  for (const auto& p : network->parameters()) r.num_params += p.numel();
  r.flops_per_example = forward_flops_per_example(*network, meta.input_shape, device);

  const auto batch = synthetic_batch(meta, r.batch_size, device);
  const bool train = o.mode == "train";
  if (!train && device.is_cpu()) r.batch_split = split_slices(r.batch_size, eval_split_threads(*network));
  if (train) r.batch_split = train_split_slices(*network, batch, at::get_num_threads());
  const bool autocast_bf16 = read_autocast_bf16(config);
  auto metrics_fn = model.get_metrics_fn(train ? "train" : "test");
  MetricsAccumulator metrics;
  std::vector<torch::Tensor> params = network->parameters();
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::optional<double> max_grad_norm;
  torch::Tensor l2_grads_sum, last_loss;
  if (train) {
    optimizer = make_optimizer(config, network->named_parameters());
    // The learning rate's value does not change the work of a step; the schedule's base
    // value keeps the random-label loss finite.
    set_learning_rate(*optimizer, config.get<double>("lr_configs.base_learning_rate", 1e-3));
    max_grad_norm = config.get_optional<double>("max_grad_norm");
    l2_grads_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  }
  auto train_loss = [&](const dataset::Batch& slice) {
    torch::Tensor y;
    {
      AutocastScope scope(autocast_bf16, device.type());
      y = network->forward(slice.at("inputs"));
    }
    y = y.to(torch::kFloat32);
    return std::make_pair(model.loss_function(y, slice, network.get()), y);
  };
  // `cuda_graph: true`: the train step captured once (after the warm-up steps it needs)
  // and replayed, as the classification trainer runs it (cuda_graph_step.h).
  std::optional<GraphedStep> graphed;
  if (config.get<bool>("cuda_graph", false)) {
    if (!train) throw Error("config key 'cuda_graph' captures the training step: use it with --mode train");
    if (o.warmup_steps < 2)
      throw Error("bench: --warmup_steps must be >= 2 with cuda_graph (eager warm-up steps, then the capture)");
    enable_cuda_graph(*optimizer, device).load_learning_rates();  // a constant learning rate here
    graphed.emplace(capturable_train_step(*optimizer, params, max_grad_norm, train_loss), device,
                    std::min<int64_t>(3, o.warmup_steps - 1));  // captured within the warm-up
  }

  // One step as classification_train / evaluate run it, minus data loading.
  auto step = [&] {
    if (!train) {
      torch::NoGradGuard no_grad;
      torch::Tensor out;
      {
        AutocastScope scope(autocast_bf16, device.type());
        out = forward_split_batch(*network, batch.at("inputs"), eval_split_threads(*network));
      }
      metrics.add(metrics_fn(out.to(torch::kFloat32), batch));
      return;
    }
    torch::Tensor loss, out, grad_norm;
    if (graphed) {
      const auto outs = (*graphed)(batch);
      loss = outs[0], out = outs[1], grad_norm = outs[2];
    } else {
      optimizer->zero_grad();
      auto acc = accumulate_gradients_split(batch, r.batch_split, train_loss);
      loss = acc.loss, out = acc.outputs;
      grad_norm = clip_or_measure_grads(params, max_grad_norm);
      optimizer->step();
    }
    metrics.add(metrics_fn(out, batch));
    l2_grads_sum.add_(grad_norm.detach());
    last_loss = loss.detach();
  };

  train ? network->train() : network->eval();
  for (int64_t i = 0; i < o.warmup_steps; ++i) step();
  sync(device);
  reset_peak_rss();
  reset_gpu_peak(device);
  std::vector<double> ms;
  ms.reserve(o.steps);
  for (int64_t i = 0; i < o.steps; ++i) {
    const auto t0 = Clock::now();
    step();
    sync(device);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  r.peak_rss_mib = peak_rss_mib();
  r.gpu_peak_allocated_mib = gpu_peak_mib(device);
  if (train) {
    r.last_loss = last_loss.item<double>();
    if (!std::isfinite(r.last_loss)) throw Error("bench: the loss became NaN/Inf on synthetic data");
  }
  metrics.summary();  // what the trainer's summary does once per window

  double total_ms = 0;
  for (double t : ms) total_ms += t;
  std::sort(ms.begin(), ms.end());
  r.ms_median = percentile(ms, 50);
  r.ms_p10 = percentile(ms, 10);
  r.ms_p90 = percentile(ms, 90);
  r.ms_min = ms.front();
  r.ms_max = ms.back();
  r.examples_per_sec = static_cast<double>(r.batch_size * r.steps) / (total_ms / 1000.0);
  r.achieved_gflops =
      static_cast<double>(r.flops_per_example) * (train ? 3.0 : 1.0) * r.examples_per_sec / 1e9;
  if (o.matmul_size > 0) {
    r.matmul_gflops = matmul_gflops(o.matmul_size, device);
    r.peak_fraction = r.achieved_gflops / r.matmul_gflops;
  }
  return r;
}

std::string format_bench_result(const BenchResult& r) {
  std::ostringstream out;
  out << "bench " << r.model_name << " " << r.mode << " on " << r.device << " (" << r.threads
      << " intra-op threads, gemm_backend " << r.gemm_backend
      << (r.batch_split > 1 ? ", batch split over " + std::to_string(r.batch_split) + " threads" : std::string())
      << ", load average " << fmt("%.2f", r.load_average) << "): batch " << r.batch_size << ", "
      << r.steps << " timed steps after " << r.warmup_steps << " warm-up\n";
  out << "  examples/s          " << fmt("%.1f", r.examples_per_sec) << "\n";
  out << "  ms/step             " << fmt("%.2f", r.ms_median) << " median (p10 " << fmt("%.2f", r.ms_p10) << ", p90 "
      << fmt("%.2f", r.ms_p90) << ", min " << fmt("%.2f", r.ms_min) << ", max " << fmt("%.2f", r.ms_max) << ")\n";
  out << "  parameters          " << common::with_commas(r.num_params) << "\n";
  out << "  GFLOPs/example      " << fmt("%.4f", static_cast<double>(r.flops_per_example) / 1e9)
      << " forward (multiply-add = 1 FLOP)\n";
  out << "  achieved GFLOP/s    " << fmt("%.2f", r.achieved_gflops) << (r.mode == "train" ? " (3 x forward)" : "")
      << "\n";
  if (r.matmul_gflops > 0)
    out << "  matmul peak GFLOP/s " << fmt("%.2f", r.matmul_gflops) << " (best fp32 n^3 product) -> "
        << fmt("%.1f", 100.0 * r.peak_fraction) << "% of it\n";
  out << "  peak RSS            " << fmt("%.1f", r.peak_rss_mib) << " MiB\n";
  if (r.gpu_peak_allocated_mib >= 0)
    out << "  GPU peak allocated  " << fmt("%.1f", r.gpu_peak_allocated_mib) << " MiB\n";
  if (r.mode == "train") out << "  last loss           " << fmt("%.4f", r.last_loss) << "\n";
  return out.str();
}

nlohmann::json to_json(const BenchResult& r) {
  return {{"model_name", r.model_name},
          {"mode", r.mode},
          {"device", r.device},
          {"batch_size", r.batch_size},
          {"steps", r.steps},
          {"warmup_steps", r.warmup_steps},
          {"threads", r.threads},
          {"gemm_backend", r.gemm_backend},
          {"batch_split", r.batch_split},
          {"num_params", r.num_params},
          {"flops_per_example", r.flops_per_example},
          {"examples_per_sec", r.examples_per_sec},
          {"ms_median", r.ms_median},
          {"ms_p10", r.ms_p10},
          {"ms_p90", r.ms_p90},
          {"ms_min", r.ms_min},
          {"ms_max", r.ms_max},
          {"peak_rss_mib", r.peak_rss_mib},
          {"gpu_peak_allocated_mib", r.gpu_peak_allocated_mib},
          {"achieved_gflops", r.achieved_gflops},
          {"matmul_gflops", r.matmul_gflops},
          {"peak_fraction", r.peak_fraction},
          {"last_loss", r.last_loss},
          {"load_average", r.load_average}};
}

int run_info(const std::string& config_path, const std::vector<std::string>& overrides, const MetaOverride& meta) {
  const auto config = load_config(config_path, overrides);
  auto model = build_model(config, meta_for(config, meta));
  std::cout << format_model_info(model_info(*model, config.get<std::string>("model_name"))) << std::flush;
  return 0;
}

int run_bench(const std::string& config_path, const std::vector<std::string>& overrides, const MetaOverride& meta,
              const BenchOptions& options, bool json) {
  const auto config = load_config(config_path, overrides);
  const dataset::MetaData meta_data = meta_for(config, meta);  // the dataset is released here
  auto model = build_model(config, meta_data);
  const auto result = bench(config, *model, options);
  if (json) std::cout << to_json(result).dump() << std::endl;
  else std::cout << format_bench_result(result) << std::flush;
  return 0;
}

}  // namespace scenic::train
