// Building an experiment from its config: intra-op threads, the dataset, the model.
//
// What Scenic's main.py does before it calls the trainer (`get_dataset`,
// `get_model_cls(config.model_name)(config, dataset.meta_data)`), shared by the `scenic`
// subcommands (train, eval, info, bench). The registries must be filled first
// (main's register_everything()).
#pragma once

#include <memory>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/train_lib/distributed.h"

namespace scenic::train {

// LibTorch's intra-op pool: `num_threads` when set, else OMP_NUM_THREADS when the
// environment sets it (launchers do: `scenic launch` gives cores / processes, torchrun
// 1), else all cores divided by LOCAL_WORLD_SIZE (processes sharing this machine).
// Also sets the CPU GEMM library from `gemm_backend` (auto | aten | onednn, default auto; layers/dense.h)
// and whether evaluation and training steps split their batches over the threads from
// `eval_split_batch` and `train_split_batch` (default true; batch_split.h).
void set_threads(const common::ConfigDict& config);

// `dataset_name` from the dataset registry with `batch_size`, `eval_batch_size`,
// `shuffle_seed` (default `rng_seed`), `dataset_configs.*`; float32 data only.
// The batch sizes are global: with several processes (`dist`) each loads
// batch_size / world_size examples of its shard (a clear error when that does not divide).
std::shared_ptr<dataset::Dataset> build_dataset(const common::ConfigDict& config,
                                                const DistributedContext* dist = nullptr);

// `model_name` from the model registry, for a dataset's meta data.
std::shared_ptr<model::BaseModel> build_model(const common::ConfigDict& config, const dataset::MetaData& meta);

}  // namespace scenic::train
