// The shared input pipeline: ExampleSources -> shuffle/shard -> decode + preprocess on
// worker threads -> collate -> prefetch, for every image dataset.
//
// Mirrors Scenic's dataset_utils + the tf.data builders (shuffle(seed) -> repeat ->
// map(pp, num_parallel_calls) -> batch -> prefetch; eval: one pass, last batch padded
// with batch_mask = 0) without TensorFlow. Properties:
// - Deterministic: batch k of a seed is the same for any number of worker threads; the
//   preprocessing RNG of an example is derived from (seed, step, slot), and the order of
//   indices comes from TrainIndexStream (index_stream.h). train_iter(k) resumes at step k.
// - Sharded: `batch_size` is per process. Train: process p of P takes slots
//   [p*B, (p+1)*B) of each batch of the global stream (batch P*B), slot numbers and
//   augmentation seeds included, so P processes together train on exactly the batches
//   of one process with batch P*B. Eval: process p reads examples i with i % P == p;
//   every process makes the same number of eval batches, ceil(ceil(N / P) /
//   eval_batch_size), so collective ops in the eval loop stay in step; a process with a
//   smaller shard pads more.
// - Bad examples (DataError from a source or a preprocessing op): on_error "raise" stops
//   with the error naming the file; "skip" drops the example, counts it and logs the
//   count and the first few files once per epoch (train) or per pass (eval). In train
//   batches a replacement index drawn from (seed, step, slot, attempt) takes its place,
//   so batch k stays a function of (seed, k) and resuming stays exact; eval batches are
//   filled from the following examples and the pass ends with more padding.
// - Workers: `num_workers` threads in total (the prefetch thread is one of them) load
//   and preprocess the examples of a batch; see worker_pool.h for their thread settings.
// - Cache: with `cache`, decoded examples (before pp) this process has read are kept in
//   memory after first use and deep-copied for each use.
//
// Batches (NCHW float32 `inputs` from the preprocessed image; uint8 images are divided
// by 255 at collate time, as Scenic's `normalize`):
//   classification: `label` int64 [B] (or float [B, K] multi_hot when multilabel),
//                   `batch_mask` float [B].
//   segmentation:   `label` int64 [B, H, W] (void pixels 0), `batch_mask` float [B, H, W]
//                   (0 on padding examples and void pixels).
//   detection:      `label` dict flattened as `boxes` float [B, max_boxes, 4] normalized
//                   (cx, cy, w, h), `labels` int64 [B, max_boxes] (category + 1; 0 is
//                   padding), `box_mask` float [B, max_boxes], `is_crowd` int64,
//                   `orig_size` and `size` int64 [B, 2] (h, w), `image_id` int64 [B],
//                   `padding_mask` float [B, H, W] (1 on real pixels) and `batch_mask` [B].
//   Classification and segmentation examples of a batch must have the same image size
//   (resize or crop in the pp chain); detection images are zero-padded at the bottom and
//   right to the largest of the batch, boxes normalized by each image's real (unpadded)
//   size, as DETR does.
//   Layout details: collate.h.
// meta.input_shape, when left empty, is the train chain's output for the first train
// example ([-1, C, H, W]).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "scenic/dataset_lib/collate.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"
#include "scenic/dataset_lib/preprocess.h"

namespace scenic::dataset {

struct PipelineConfig {
  std::string name;  // dataset name, prefixes messages
  Task task = Task::kClassification;
  int64_t batch_size = 0;       // per process
  int64_t eval_batch_size = 0;  // per process; 0: batch_size
  uint64_t seed = 0;
  int64_t prefetch = 2;         // batches ahead
  int64_t num_workers = 1;      // decode + preprocess threads
  int64_t process_index = 0, process_count = 1;
  bool cache = false;           // keep decoded (pre-pp) examples in memory
  bool skip_errors = false;     // dataset_configs.on_error: skip
  int64_t max_boxes = 100;      // detection padding
  PreprocessChain train_pp, eval_pp;

  // Reads the common `dataset_configs` keys: pp_train, pp_eval (defaults given),
  // num_workers (default: 1), cache (false), on_error ("raise" | "skip"), max_boxes,
  // plus batch sizes, seed, prefetch and process index/count from `options`.
  static PipelineConfig from_options(const std::string& name, Task task,
                                     const DatasetOptions& options,
                                     const std::string& default_pp_train,
                                     const std::string& default_pp_eval);
};

// The Dataset over a train source and named eval sources ("valid", "test").
// meta.num_train_examples / num_eval_examples are filled in from the sources when 0.
std::unique_ptr<Dataset> make_pipeline_dataset(PipelineConfig config, SourcePtr train,
                                               std::map<std::string, SourcePtr> eval,
                                               MetaData meta);

// What make_pipeline_dataset returns, for callers (and tests) that want the counters.
class PipelineDataset : public Dataset {
 public:
  // Bad examples skipped so far by all iterators of this dataset (on_error: skip).
  virtual int64_t num_skipped() const = 0;
};

}  // namespace scenic::dataset
