// Dataset, MetaData and Batch: the contract between input pipelines and trainers.
//
// Mirrors Scenic's dataset_utils.Dataset (train_iter / valid_iter / test_iter plus
// meta_data). A Batch is a string-keyed map of tensors: `inputs` (images are NCHW,
// float32), `label` (int64 [B], or one/multi-hot [B, K] when target_is_onehot) and
// `batch_mask` (float32 [B]: 1 real example, 0 padding), plus task keys.
//
// Train iterators are infinite and deterministic: batch k of a run with a given seed is
// the same whether the run started at step 0 or resumed at step k. Eval iterators make
// one pass over the split; the last batch is padded to full size with batch_mask = 0.
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/registry.h"

namespace scenic::dataset {

using Batch = std::map<std::string, torch::Tensor>;

struct MetaData {
  int64_t num_classes = 0;
  std::vector<int64_t> input_shape;  // [-1, C, H, W] for images (NCHW, batch dim -1)
  int64_t num_train_examples = 0;
  int64_t num_eval_examples = 0;
  torch::Dtype input_dtype = torch::kFloat32;
  bool target_is_onehot = false;
  // Task extras (segmentation; empty when the dataset has none): each class's share of
  // the training pixels (SegmentationModel's class re-balancing) and display names
  // (the `iou_per_class/NN_name` metric tags).
  std::vector<double> class_proportions;
  std::vector<std::string> class_names;
};

// Pulls batches; nullopt marks the end of a finite (eval) pass.
class BatchIterator {
 public:
  virtual ~BatchIterator() = default;
  virtual std::optional<Batch> next() = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  MetaData meta_data;

  // Infinite, shuffled, full batches; `start_step` skips the batches a resumed run
  // already consumed, so the stream continues exactly where it stopped.
  virtual std::unique_ptr<BatchIterator> train_iter(int64_t start_step) = 0;
  // One pass over an eval split ("valid" or "test"); throws for unknown splits.
  virtual std::unique_ptr<BatchIterator> eval_iter(const std::string& split) = 0;
};

// What a dataset builder receives (Scenic's get_dataset keyword arguments).
struct DatasetOptions {
  int64_t batch_size = 0;       // per process
  int64_t eval_batch_size = 0;  // per process
  uint64_t shuffle_seed = 0;
  int64_t prefetch = 2;         // batches produced ahead on a background thread
  int64_t process_index = 0;    // this process's rank; each process reads a disjoint shard
  int64_t process_count = 1;
  common::ConfigDict dataset_configs;  // the `dataset_configs` sub-tree
};

using DatasetBuilder = std::function<std::unique_ptr<Dataset>(const DatasetOptions&)>;

// Name -> builder. main() calls register_builtin_datasets() once; projects add theirs.
class DatasetRegistry : public common::Registry<DatasetBuilder> {
 public:
  DatasetRegistry() : Registry("dataset_name") {}
  static DatasetRegistry& global();
  std::unique_ptr<Dataset> build(const std::string& name, const DatasetOptions& opts) const {
    return get(name)(opts);
  }
};

void register_builtin_datasets(DatasetRegistry& registry);

}  // namespace scenic::dataset
