// The metadata of a dataset directory prepared by TensorFlow Datasets, read without TFDS.
//
// Scenic gets every dataset through `tfds.builder(name, data_dir=...)`; on disk a
// prepared dataset is
//   <data_dir>/<name>[/<config>]/<version>/dataset_info.json   splits, shard lengths
//                                         /features.json       feature types and shapes
//                                         /<feature>.labels.txt  ClassLabel names
//                                         /<name>-<split>.tfrecord-NNNNN-of-MMMMM
// (dataset_info.json is the DatasetInfo proto in JSON: int64 values are strings; newer
// TFDS versions may also embed `features` in it). This file resolves the version
// directory (the highest X.Y.Z by default, or a pattern like "3.*.*"), parses the info,
// and resolves TFDS split strings ("train", "train[:90%]", "train[10:-5]",
// "train+test") into ranges of records. Errors are scenic::Error naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace scenic::dataset {

struct TfdsSplitInfo {
  std::string name;
  std::vector<int64_t> shard_lengths;  // one per shard, in shard order
  std::vector<std::string> shard_paths;
  int64_t num_examples() const;
};

struct TfdsFeatureInfo {
  std::string type;              // "Image", "ClassLabel", "Tensor", ... (python class name)
  std::vector<int64_t> shape;    // Image/Tensor: dims, -1 where unknown
  std::string encoding_format;   // Image: "png", "jpeg" or ""
  int64_t num_classes = 0;       // ClassLabel
  std::vector<std::string> class_names;  // ClassLabel, from <key>.labels.txt when present
};

struct TfdsInfo {
  std::string dir;      // the version directory
  std::string name;     // dataset name as in dataset_info.json
  std::string version;  // "1.0.0"
  std::vector<TfdsSplitInfo> splits;
  std::map<std::string, TfdsFeatureInfo> features;  // top-level features by key

  bool has_split(const std::string& name) const;
  // Throws naming the available splits.
  const TfdsSplitInfo& split(const std::string& name) const;
  // Throws naming the available features.
  const TfdsFeatureInfo& feature(const std::string& key) const;
};

// `<data_dir>/<name>/<version>` where version "" means the highest prepared one and may
// hold '*' components ("3.*.*"). `name` may carry a config ("imagenet2012/5shot") and a
// TFDS-style version suffix ("mnist:3.0.1"), which `version` must then not contradict.
std::string resolve_tfds_dir(const std::string& data_dir, const std::string& name,
                             const std::string& version);

// Reads dataset_info.json (+ features.json, *.labels.txt) of a version directory, and
// checks that every shard file exists. Only the tfrecord file format is supported.
TfdsInfo load_tfds_info(const std::string& dir);

// One contiguous range [begin, end) of records of a split (indices over its shards).
struct TfdsSplitRange {
  std::string split;
  int64_t begin = 0, end = 0;
};

// Resolves a TFDS split string: '+'-joined parts, each `split` or `split[from:to]` with
// integers (negative counts from the end) or percents (rounded to the closest record,
// as TFDS does: round(n * p / 100), halves to even). Throws for a bad spec or split.
std::vector<TfdsSplitRange> resolve_split_spec(const TfdsInfo& info, const std::string& spec);

}  // namespace scenic::dataset
