// `tfds`: datasets prepared by TensorFlow Datasets, read natively (no TensorFlow).
//
// Mirrors how Scenic gets most of its data (`tfds.builder(name, data_dir).as_dataset(
// split)`, e.g. in dataset_utils.load_split_from_tfds and the `bit` builder's
// `dataset`, `train_split`, `val_split` keys), so that users with TFDS data already on
// disk can train without TensorFlow. The directory layout and the split strings are
// described in tfds_info.h; the records are TFRecord (common_lib/tfrecord.h) holding
// tf.train.Example (common_lib/tf_example.h) with an encoded image (PNG or JPEG, decoded
// with OpenCV to RGB, or kept single-channel for grayscale data) and an int64 label.
//
// Config keys (under `dataset_configs`):
//   name        TFDS name, "mnist", "cifar10", "imagenet2012/5shot" or "mnist:3.*.*"
//   data_dir    where TFDS prepared it (default: $TFDS_DATA_DIR, else
//               ~/tensorflow_datasets, as TFDS)
//   version     "1.0.0" or "3.*.*" (default: the highest prepared)
//   train_split TFDS split string (default "train"), e.g. "train[:90%]"
//   eval_split  (default "test", else "validation" when there is no test split); the
//               eval split is served under both "valid" and "test"
//   image_key, label_key   feature keys (defaults "image", "label")
//   num_classes            default: the label feature's ClassLabel num_classes
//   pp_train, pp_eval, num_workers, cache, on_error, ...   see pipeline.h
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "scenic/common_lib/tfrecord.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"
#include "scenic/dataset_lib/tfds_info.h"

namespace scenic::dataset {

struct TfdsSourceOptions {
  std::string image_key = "image";
  std::string label_key = "label";  // "" for no label (label -1)
  int64_t num_classes = 0;          // > 0: labels outside [0, num_classes) are DataErrors
};

// The examples of a (sliced, '+'-joined) split, in shard order. Shards are indexed on
// first use (or at construction when dataset_info.json lacks shard lengths). A shard
// shorter than dataset_info.json says (truncated), a bad CRC, a malformed Example, an
// undecodable image or a bad label make load() throw DataError naming the shard file and
// the record index within it.
class TfdsSource : public ExampleSource {
 public:
  TfdsSource(TfdsInfo info, const std::string& split_spec, TfdsSourceOptions options = {});

  int64_t size() const override { return size_; }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override;

  const TfdsInfo& info() const { return info_; }

 private:
  struct Shard {
    std::string path;
    int64_t length = 0;  // records per dataset_info.json
    mutable std::once_flag once;
    mutable std::unique_ptr<common::TFRecordReader> reader;
  };
  struct Location {
    const Shard* shard;
    int64_t record;
  };
  Location locate(int64_t index) const;
  const common::TFRecordReader& reader(const Shard& shard) const;

  TfdsInfo info_;
  TfdsSourceOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;  // of every split used, in order
  // Selected ranges over the concatenated records of shards_: [begin, end) and the
  // example index at which each range starts.
  std::vector<int64_t> shard_start_;            // first record of each shard (+ total)
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::vector<int64_t> range_start_;
  int64_t size_ = 0;
  int image_channels_ = 0;  // from the feature's shape; 0 when unknown
};

// The builder registered as `tfds`.
std::unique_ptr<Dataset> build_tfds(const DatasetOptions& options);

}  // namespace scenic::dataset
