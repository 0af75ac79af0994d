// ExampleSource: random access to the decoded examples of one split.
//
// The counterpart of a TFDS split in Scenic's builders: sources (cifar, image_folder,
// segmentation_folder, coco_detection, tfds, shapes) only read and decode; shuffling,
// sharding, augmentation, batching and prefetching live in pipeline.h, shared by all.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/example.h"

namespace scenic::dataset {

// A bad example (corrupt image, truncated record, bad CRC, missing file). The pipeline
// either stops with it (on_error: raise, the default) or skips and counts it
// (on_error: skip). Its message names the file and, where there is one, the record.
class DataError : public Error {
 public:
  using Error::Error;
};

class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  virtual int64_t size() const = 0;
  // Decodes example `index` in [0, size()). Must be safe to call from several threads
  // at once. Throws DataError for bad data.
  virtual Example load(int64_t index) const = 0;
  // Where example `index` lives ("dir/cat/001.jpg", "train.tfrecord-00000-of-00004
  // record 17"), for error messages.
  virtual std::string describe(int64_t index) const = 0;
};

using SourcePtr = std::shared_ptr<const ExampleSource>;

}  // namespace scenic::dataset
