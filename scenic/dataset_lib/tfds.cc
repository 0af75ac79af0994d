#include "scenic/dataset_lib/tfds.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "scenic/common_lib/tf_example.h"
#include "scenic/dataset_lib/pipeline.h"

namespace scenic::dataset {
namespace {

std::string default_tfds_data_dir() {
  if (const char* env = std::getenv("TFDS_DATA_DIR"); env != nullptr && *env != '\0') return env;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/tensorflow_datasets";
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// The split names a spec mentions ("train[:10%]+test" -> train, test).
std::vector<std::string> split_names(const std::string& spec) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t plus = spec.find('+', start);
    if (plus == std::string::npos) plus = spec.size();
    const std::string part = spec.substr(start, plus - start);
    names.push_back(trim(part.substr(0, part.find('['))));
    start = plus + 1;
  }
  return names;
}

// The decoded image as H x W x C uint8, C = 1 or 3 (RGB); `channels` (from the feature's
// shape, 0 if unknown) forces grayscale or RGB, as TFDS's decode_image(channels=...) does.
cv::Mat decode_image(const std::string& bytes, int channels, const std::string& where) {
  if (bytes.empty()) throw DataError(where + ": empty image bytes");
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  cv::Mat img;
  try {
    // UNCHANGED: no EXIF rotation (TF's decoders ignore it too) and no forced colour.
    img = cv::imdecode(raw, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw DataError(where + ": cannot decode image: " + e.what());
  }
  if (img.empty()) {
    throw DataError(where + ": cannot decode image (" + std::to_string(bytes.size()) +
                    " bytes, not a valid PNG/JPEG)");
  }
  if (img.depth() != CV_8U) {
    throw DataError(where + ": image is not 8-bit (OpenCV depth " + std::to_string(img.depth()) +
                    "); only uint8 images are supported");
  }
  cv::Mat out;
  switch (img.channels()) {
    case 1: out = img; break;
    case 3: cv::cvtColor(img, out, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(img, out, cv::COLOR_BGRA2RGB); break;
    default:
      throw DataError(where + ": image has " + std::to_string(img.channels()) + " channels");
  }
  if (channels == 1 && out.channels() == 3) {
    cv::Mat gray;
    cv::cvtColor(out, gray, cv::COLOR_RGB2GRAY);
    out = gray;
  } else if (channels == 3 && out.channels() == 1) {
    cv::Mat rgb;
    cv::cvtColor(out, rgb, cv::COLOR_GRAY2RGB);
    out = rgb;
  }
  return out;
}

}  // namespace

TfdsSource::TfdsSource(TfdsInfo info, const std::string& split_spec, TfdsSourceOptions options)
    : info_(std::move(info)), options_(std::move(options)) {
  // Every shard of the splits the spec names, each split once.
  std::map<std::string, int64_t> split_first_record;
  int64_t total = 0;
  for (const auto& name : split_names(split_spec)) {
    if (name.empty() || split_first_record.count(name) || !info_.has_split(name)) continue;
    TfdsSplitInfo& split = *std::find_if(info_.splits.begin(), info_.splits.end(),
                                         [&](const TfdsSplitInfo& s) { return s.name == name; });
    split_first_record[name] = total;
    for (size_t i = 0; i < split.shard_paths.size(); ++i) {
      auto shard = std::make_unique<Shard>();
      shard->path = split.shard_paths[i];
      if (split.shard_lengths[i] < 0) {
        // No length in dataset_info.json: index now; a broken tail record still counts
        // (loading it reports the damage).
        std::call_once(shard->once, [&] {
          shard->reader = std::make_unique<common::TFRecordReader>(shard->path);
        });
        split.shard_lengths[i] = static_cast<int64_t>(shard->reader->size());
      }
      shard->length = split.shard_lengths[i];
      shard_start_.push_back(total);
      total += shard->length;
      shards_.push_back(std::move(shard));
    }
  }
  shard_start_.push_back(total);
  for (const auto& r : resolve_split_spec(info_, split_spec)) {
    const int64_t base = split_first_record.at(r.split);
    range_start_.push_back(size_);
    ranges_.emplace_back(base + r.begin, base + r.end);
    size_ += r.end - r.begin;
  }
  if (!options_.image_key.empty() && info_.features.count(options_.image_key)) {
    const auto& shape = info_.features.at(options_.image_key).shape;
    if (shape.size() == 3 && (shape[2] == 1 || shape[2] == 3)) {
      image_channels_ = static_cast<int>(shape[2]);
    }
  }
}

TfdsSource::Location TfdsSource::locate(int64_t index) const {
  if (index < 0 || index >= size_) {
    throw Error(info_.dir + ": example index " + std::to_string(index) + " out of range [0, " +
                std::to_string(size_) + ")");
  }
  const size_t r = static_cast<size_t>(
      std::upper_bound(range_start_.begin(), range_start_.end(), index) - range_start_.begin() - 1);
  const int64_t record = ranges_[r].first + (index - range_start_[r]);
  const size_t s = static_cast<size_t>(
      std::upper_bound(shard_start_.begin(), shard_start_.end(), record) - shard_start_.begin() - 1);
  return {shards_[s].get(), record - shard_start_[s]};
}

const common::TFRecordReader& TfdsSource::reader(const Shard& shard) const {
  std::call_once(shard.once, [&] {
    try {
      shard.reader = std::make_unique<common::TFRecordReader>(shard.path);
    } catch (const common::TFRecordError& e) {
      throw DataError(e.what());  // the call is retried by the next load
    }
  });
  return *shard.reader;
}

std::string TfdsSource::describe(int64_t index) const {
  const Location loc = locate(index);
  // The same words as the errors of load() and TFRecordReader, so messages that carry
  // both say it once.
  return loc.shard->path + ": record " + std::to_string(loc.record);
}

Example TfdsSource::load(int64_t index) const {
  const Location loc = locate(index);
  const std::string where = describe(index);
  const common::TFRecordReader& rd = reader(*loc.shard);
  const auto record = static_cast<size_t>(loc.record);
  // Damage shows in the framing: fewer intact records than dataset_info.json lists.
  if (record >= rd.num_intact() && !(rd.is_broken() && record + 1 == rd.size())) {
    throw DataError(where + ": missing: the shard holds " + std::to_string(rd.num_intact()) +
                    " intact records but dataset_info.json lists " +
                    std::to_string(loc.shard->length) +
                    (rd.is_broken() ? " (the file is truncated or corrupt)" : ""));
  }
  if (static_cast<int64_t>(rd.num_intact()) > loc.shard->length) {
    throw DataError(where + ": the shard holds " + std::to_string(rd.num_intact()) +
                    " records but dataset_info.json lists " + std::to_string(loc.shard->length) +
                    ": the metadata does not match the files");
  }
  std::string bytes;
  common::TfExample tf_example;
  try {
    bytes = rd.read(record);
    tf_example = common::parse_tf_example(bytes);
  } catch (const common::TFRecordError& e) {
    throw DataError(e.what());  // names the file and the record already
  } catch (const Error& e) {
    throw DataError(where + ": " + e.what());
  }
  Example ex;
  try {
    const auto& image = tf_example.get(options_.image_key, common::TfFeature::Kind::kBytes);
    if (image.bytes_list.size() != 1) {
      throw DataError(where + ": feature '" + options_.image_key + "' has " +
                      std::to_string(image.bytes_list.size()) + " values, expected 1 encoded image");
    }
    ex.image = decode_image(image.bytes_list[0], image_channels_, where);
    if (!options_.label_key.empty()) {
      const auto& label = tf_example.get(options_.label_key, common::TfFeature::Kind::kInt64);
      if (label.int64_list.size() != 1) {
        throw DataError(where + ": feature '" + options_.label_key + "' has " +
                        std::to_string(label.int64_list.size()) + " values, expected 1 label");
      }
      ex.label = label.int64_list[0];
      if (options_.num_classes > 0 && (ex.label < 0 || ex.label >= options_.num_classes)) {
        throw DataError(where + ": label " + std::to_string(ex.label) + " out of range [0, " +
                        std::to_string(options_.num_classes) + ")");
      }
    }
  } catch (const DataError&) {
    throw;
  } catch (const Error& e) {
    throw DataError(where + ": " + e.what());
  }
  ex.orig_size = {ex.image.rows, ex.image.cols};
  ex.image_id = index;
  ex.source = where;
  return ex;
}

std::unique_ptr<Dataset> build_tfds(const DatasetOptions& options) {
  const common::ConfigDict& dc = options.dataset_configs;
  const std::string name = dc.get<std::string>("name");
  const std::string data_dir = dc.get<std::string>("data_dir", default_tfds_data_dir());
  const std::string version = dc.get<std::string>("version", "");
  TfdsInfo info = load_tfds_info(resolve_tfds_dir(data_dir, name, version));

  TfdsSourceOptions so;
  so.image_key = dc.get<std::string>("image_key", "image");
  so.label_key = dc.get<std::string>("label_key", "label");
  info.feature(so.image_key);  // throws naming the features when absent
  int64_t feature_classes = 0;
  if (info.features.count(so.label_key)) feature_classes = info.features.at(so.label_key).num_classes;
  so.num_classes = dc.get<int64_t>("num_classes", feature_classes);
  if (so.num_classes <= 0) {
    throw Error("tfds: " + info.dir + ": the number of classes is unknown (label feature '" +
                so.label_key + "' is not a ClassLabel): set dataset_configs.num_classes");
  }
  const std::string train_split = dc.get<std::string>("train_split", "train");
  const std::string default_eval =
      info.has_split("test") ? "test" : (info.has_split("validation") ? "validation" : "");
  const std::string eval_split = default_eval.empty() ? dc.get<std::string>("eval_split")
                                                      : dc.get<std::string>("eval_split", default_eval);
  auto train = std::make_shared<const TfdsSource>(info, train_split, so);
  auto eval = std::make_shared<const TfdsSource>(info, eval_split, so);

  MetaData meta;
  meta.num_classes = so.num_classes;
  PipelineConfig config =
      PipelineConfig::from_options("tfds(" + name + ")", Task::kClassification, options, "", "");
  return make_pipeline_dataset(std::move(config), train, {{"valid", eval}, {"test", eval}},
                               std::move(meta));
}

}  // namespace scenic::dataset
