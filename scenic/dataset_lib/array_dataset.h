// ArrayDataset: an image classification dataset held in memory as uint8 arrays.
//
// Mirrors the part of Scenic's tf.data pipelines (dataset_utils + the mnist/cifar
// builders) that turns decoded examples into batches: shuffle + repeat + batch for train,
// one ordered pass with zero padding (batch_mask = 0) for eval, Scenic's `normalize`
// (uint8 / 255 -> float32 in [0, 1]) and prefetching on a background thread. Loaders
// (mnist.cc, later cifar) only read files and hand over the arrays; the pixels are kept
// once as uint8 [N, C, H, W] and float batches are gathered from them with index_select.
//
// Batches: `inputs` float32 [B, C, H, W] (NCHW), `label` int64 [B], `batch_mask`
// float32 [B]. Train order: see index_stream.h. Iterators keep the arrays alive, so
// they may outlive the dataset object.
//
// Several processes (options.process_index of process_count, batch sizes per process):
// process p takes slots [p*B, (p+1)*B) of every batch of the GLOBAL stream (batch
// P*B), so P processes together see exactly the batches one process with batch P*B
// sees, whatever P is. Eval batch k of process p is examples
// [(k*P + p)*E, (k*P + p + 1)*E), padded; every process makes the same number of
// batches (ceil(n / (P*E))), so collectives over eval metrics always pair up.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

struct ArraySplit {
  torch::Tensor images;  // uint8 [N, C, H, W]
  torch::Tensor labels;  // int64 [N], in [0, num_classes)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// inputs = images[indices] / 255, label = labels[indices], batch_mask = 1.
// indices: int64 [B].
Batch gather_batch(const ArraySplit& split, const torch::Tensor& indices);

// Examples [start, start + batch_size) in order; past the end of the split the batch is
// padded with zero inputs, label 0 and batch_mask 0.
Batch padded_slice_batch(const ArraySplit& split, int64_t start, int64_t batch_size);

class ArrayDataset : public Dataset {
 public:
  // `name` prefixes error messages. `eval_splits` maps split names ("valid", "test") to
  // arrays; several names may share the same tensors (no copy is made).
  // meta_data.num_eval_examples is the size of "valid" (else "test", else 0).
  // options.eval_batch_size 0 means "same as batch_size" (Scenic's default).
  // Throws scenic::Error for bad shapes/dtypes, labels out of range, batch sizes <= 0,
  // or a batch_size larger than the training split.
  ArrayDataset(std::string name, ArraySplit train, std::map<std::string, ArraySplit> eval_splits,
               int64_t num_classes, const DatasetOptions& options);

  std::unique_ptr<BatchIterator> train_iter(int64_t start_step) override;
  std::unique_ptr<BatchIterator> eval_iter(const std::string& split) override;

  const ArraySplit& train_split() const;
  const ArraySplit& eval_split(const std::string& split) const;  // throws for unknown names
  int64_t batch_size() const { return batch_size_; }
  int64_t eval_batch_size() const { return eval_batch_size_; }

 private:
  struct Splits {
    ArraySplit train;
    std::map<std::string, ArraySplit> eval;
  };
  std::string name_;
  std::shared_ptr<const Splits> splits_;
  int64_t batch_size_, eval_batch_size_, prefetch_;
  int64_t process_index_, process_count_;
  uint64_t seed_;
};

}  // namespace scenic::dataset
