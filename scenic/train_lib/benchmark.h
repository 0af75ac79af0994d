// `scenic info` and `scenic bench`: what a model is (parameters, FLOPs) and how fast its
// training or evaluation step runs on this machine.
//
// `info` mirrors Scenic's debug_utils: log_param_shapes (the parameter table) and
// compute_flops (GFLOPs per example at batch size 1, a multiply-add counted as one FLOP;
// see common_lib/flop_counter.h for what is counted). Scenic has no `bench`; it plays the
// role of timm's benchmark script: the step of classification_trainer (forward, loss,
// backward, gradient norm / clipping, optimizer step, train metrics kept on the device)
// or of evaluate() (forward + metrics, no grad) on synthetic batches of the model's
// input shape, so no data loading is timed. After `warmup_steps`, each of `steps` steps
// is timed on its own (with a device sync on CUDA): examples/s = steps x batch / the sum
// of the step times; ms/step median, p10 and p90. Achieved GFLOP/s = FLOPs per example
// x 3 (train: forward + backward ~ 3 forwards) or x 1 (eval) x examples/s, against a
// matmul "peak" measured in the same run (the best of several fp32 n x n x n products on
// the same device, same unit). The FLOPs are the model's nominal ones (FlopCounter::active:
// models run in full while counted), so where a model skips work nothing reads (ViT's
// token classifier), achieved GFLOP/s is model FLOP/s, as in MFU figures. Peak RSS is the process's high-water mark from getrusage
// after resetting it (/proc/self/clear_refs) once the setup is done; on CUDA also the
// peak bytes the caching allocator handed out during the steps. With `cuda_graph: true`
// (CUDA, train mode, adamw) the step is captured during the warm-up steps and replayed
// in the timed ones, as the classification trainer does.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/debug_utils.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::train {

struct ModelInfo {
  std::string model_name;
  std::vector<int64_t> input_shape;  // [-1, C, H, W]
  int64_t num_classes = 0;
  std::vector<common::ParamInfo> params;
  int64_t num_params = 0;
  int64_t flops_per_example = 0;  // multiply-adds of one forward pass
  std::map<std::string, int64_t> flops_by_op;
};

// Multiply-adds of one eval-mode forward pass of a batch of 1 of `input_shape`
// ([-1, ...]; the batch dim is replaced). The network is left in eval mode.
int64_t forward_flops_per_example(model::Network& network, const std::vector<int64_t>& input_shape,
                                  const torch::Device& device, std::map<std::string, int64_t>* by_op = nullptr);

// Builds the network of `model` on the CPU and describes it.
ModelInfo model_info(const model::BaseModel& model, const std::string& model_name);
std::string format_model_info(const ModelInfo& info);

struct BenchOptions {
  int64_t steps = 20;
  int64_t warmup_steps = 3;
  int64_t batch_size = 0;      // 0: the config's batch_size
  std::string mode = "train";  // train | eval
  int64_t matmul_size = 2048;  // n of the n x n x n fp32 peak probe (0: skip)
};

struct BenchResult {
  std::string model_name, mode, device, gemm_backend;
  int64_t batch_size = 0, steps = 0, warmup_steps = 0, threads = 0, num_params = 0;
  int64_t batch_split = 1;  // the slices each step splits its batch into (batch_split.h)
  int64_t flops_per_example = 0;  // forward multiply-adds
  double examples_per_sec = 0;
  double ms_median = 0, ms_p10 = 0, ms_p90 = 0, ms_min = 0, ms_max = 0;
  double peak_rss_mib = 0;
  double gpu_peak_allocated_mib = -1;  // -1: not on CUDA
  double achieved_gflops = 0;          // multiply-add = 1 FLOP
  double matmul_gflops = 0;            // same unit; 0 when not measured
  double peak_fraction = 0;            // achieved / matmul (0 when not measured)
  double last_loss = 0;                // train mode: the loss of the last step (finite)
  double load_average = -1;            // 1-minute load average at the start (-1: unknown)
};

// Times `options.mode` steps of the config's model (with its optimizer, clipping and
// autocast settings) on synthetic batches shaped by `model.meta_data()`.
BenchResult bench(const common::ConfigDict& config, const model::BaseModel& model, const BenchOptions& options);

std::string format_bench_result(const BenchResult& r);
nlohmann::json to_json(const BenchResult& r);

// Meta data for info/bench without building the dataset (e.g. ImageNet-sized inputs on
// a machine without ImageNet): `input_shape` [C, H, W] (or any per-example shape) and
// `num_classes`. Empty input_shape: build the config's dataset for its meta data.
struct MetaOverride {
  std::vector<int64_t> input_shape;
  int64_t num_classes = 0;
};

// The subcommands: load the config and overrides, set threads and seed, build the meta
// data and the model (train/setup.h; registries must be filled), print to stdout.
// `json`: bench prints one JSON object instead of the table. Return the exit status.
int run_info(const std::string& config_path, const std::vector<std::string>& overrides, const MetaOverride& meta);
int run_bench(const std::string& config_path, const std::vector<std::string>& overrides, const MetaOverride& meta,
              const BenchOptions& options, bool json);

}  // namespace scenic::train
