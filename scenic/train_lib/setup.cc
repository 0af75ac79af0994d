#include "scenic/train_lib/setup.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/dense.h"
#include "scenic/model_lib/models.h"
#include "scenic/train_lib/batch_split.h"

namespace scenic::train {

namespace {
int positive_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != v && *end == '\0' && n > 0 ? static_cast<int>(n) : 0;
}
}  // namespace

void set_threads(const common::ConfigDict& config) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int n = config.get<int>("num_threads", 0);
  if (n <= 0) n = positive_env("OMP_NUM_THREADS");
  if (n <= 0) n = std::max(1, hw / std::max(1, positive_env("LOCAL_WORLD_SIZE")));
  torch::set_num_threads(n);
  model::set_gemm_backend(model::parse_gemm_backend(config.get<std::string>("gemm_backend", "auto")));
  set_eval_split_batch(config.get<bool>("eval_split_batch", true));
  set_train_split_batch(config.get<bool>("train_split_batch", true));
}

std::shared_ptr<dataset::Dataset> build_dataset(const common::ConfigDict& config, const DistributedContext* dist) {
  dataset::DatasetOptions opts;
  opts.batch_size = config.get<int64_t>("batch_size");
  opts.eval_batch_size = config.get<int64_t>("eval_batch_size", opts.batch_size);
  if (dist != nullptr && dist->is_distributed()) {
    opts.batch_size = per_process_batch_size(opts.batch_size, *dist, "batch_size");
    opts.eval_batch_size = per_process_batch_size(opts.eval_batch_size, *dist, "eval_batch_size");
    opts.process_index = dist->rank;
    opts.process_count = dist->world_size;
  }
  opts.shuffle_seed = static_cast<uint64_t>(
      config.get<int64_t>("shuffle_seed", config.get<int64_t>("rng_seed", 0)));
  opts.prefetch = config.get<int64_t>("dataset_configs.prefetch", 2);
  opts.dataset_configs = config.sub("dataset_configs");
  const auto dtype = config.get<std::string>("data_dtype_str", "float32");
  if (dtype != "float32") throw Error("config key 'data_dtype_str': only float32 is supported, got '" + dtype + "'");
  return dataset::DatasetRegistry::global().build(config.get<std::string>("dataset_name"), opts);
}

std::shared_ptr<model::BaseModel> build_model(const common::ConfigDict& config, const dataset::MetaData& meta) {
  const auto name = config.get<std::string>("model_name");
  return model::ModelRegistry::global().get(name)(config, meta);
}

}  // namespace scenic::train
