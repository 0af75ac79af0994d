// TensorBoard event files written natively: scalars, histograms, images and text.
//
// The counterpart of the CLU metric writers Scenic trainers use (`writer.write_scalars`,
// `write_histograms`, `write_images`, `write_texts`). Files are what TensorFlow's
// `tf.summary` writes: `<logdir>/events.out.tfevents.<unix time>.<host>.<pid>`, a
// TFRecord file (tfrecord.h) of `tensorflow.Event` protos: first a `file_version`
// event ("brain.Event:2"), then one event per call with a `Summary` of one value.
// Scalars use `simple_value`; histograms `HistogramProto` (30 equal-width buckets);
// images a PNG in `Summary.Image`; text a DT_STRING tensor tagged for the `text`
// plugin. Every record is flushed, so TensorBoard sees a live run and a killed process
// loses at most the record being written (TensorBoard stops at a truncated tail).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace scenic::common {

class TFRecordWriter;

class SummaryWriter {
 public:
  // Creates `logdir` if needed and a new event file in it; throws scenic::Error naming
  // the path if it cannot.
  explicit SummaryWriter(const std::string& logdir);
  ~SummaryWriter();
  SummaryWriter(const SummaryWriter&) = delete;
  SummaryWriter& operator=(const SummaryWriter&) = delete;

  const std::string& path() const { return path_; }

  void scalar(int64_t step, const std::string& tag, double value);
  // Each entry as `<prefix><name>` (Scenic: prefix "train_" / "valid_").
  void scalars(int64_t step, const std::string& prefix, const std::map<std::string, double>& values);
  // Histogram of the finite values of `values` (any shape, any floating dtype).
  void histogram(int64_t step, const std::string& tag, const torch::Tensor& values);
  // `image`: [C, H, W] (C = 1 or 3, RGB) or [H, W]; uint8, or floating in [0, 1].
  void image(int64_t step, const std::string& tag, const torch::Tensor& image);
  void text(int64_t step, const std::string& tag, const std::string& text);

 private:
  void write_value(int64_t step, const std::string& value_proto);
  std::string path_;
  std::unique_ptr<TFRecordWriter> file_;
};

// Tiles a batch of images [B, C, H, W] into one [C, rows*H, cols*W] grid (for `image`),
// rescaling each image's values to [0, 1] (inputs are often normalized).
torch::Tensor image_grid(const torch::Tensor& batch, int64_t max_images = 16);

}  // namespace scenic::common
