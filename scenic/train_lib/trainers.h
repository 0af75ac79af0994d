// The trainer registry and what a trainer receives (Scenic's train_lib/trainers.py:
// `train(*, rng, config, model_cls, dataset, workdir, writer)`).
//
// main() builds the dataset and the model from the config, then hands them to the
// trainer named by `trainer_name`. A trainer reads its keys, calls `finish_setup()`
// (which rejects unknown config keys and writes the resolved config.yaml) and trains.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/metric_writer.h"
#include "scenic/common_lib/registry.h"
#include "scenic/common_lib/summary_writer.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/train_lib/distributed.h"

namespace scenic::train {

struct TrainerContext {
  common::ConfigDict config;
  std::shared_ptr<model::BaseModel> model;
  std::shared_ptr<dataset::Dataset> dataset;
  std::string workdir;
  common::MetricWriter* writer = nullptr;      // metrics.jsonl (mirrored to TensorBoard)
  common::SummaryWriter* summary = nullptr;    // TensorBoard; null with write_summary: false
  std::function<void()> finish_setup = [] {};
  // Initializes a fresh network from `init_from.*` (Scenic's transfer: a checkpoint of
  // another run or of another library); set by main, where the weight importers of the
  // projects are known. Trainers call it only when not resuming. May be empty.
  std::function<void(model::Network&)> init_from;
  // The data-parallel job this process belongs to (distributed.h); one process unless
  // main joined a launcher's job. The dataset was built with this process's shard and
  // per-process batch size; `writer` and `summary` write nothing on non-lead ranks.
  std::shared_ptr<DistributedContext> dist = DistributedContext::single();
};

// Final metrics per split, e.g. {"test": {"accuracy": 0.9, "loss": 0.3}}.
using TrainResult = std::map<std::string, std::map<std::string, double>>;
using TrainFn = std::function<TrainResult(TrainerContext&)>;

class TrainerRegistry : public common::Registry<TrainFn> {
 public:
  TrainerRegistry() : Registry("trainer_name") {}
  static TrainerRegistry& global();
};

void register_builtin_trainers(TrainerRegistry& registry);

}  // namespace scenic::train
