// `segmentation_folder`: semantic segmentation from images plus label PNGs on disk.
//
// Mirrors Scenic's cityscapes / oxford_pets builders (dataset_lib/cityscapes_dataset.py:
// raw label ids mapped to train ids, void classes -> label -1 with batch_mask 0) for data
// laid out Cityscapes-style instead of in TFDS:
//
//   <data_dir>/<images_dir>/<split>/[subdirs/]<stem><image_suffix>.{png,jpg,jpeg}
//   <data_dir>/<labels_dir>/<split>/[subdirs/]<stem><label_suffix>.png
//
// images_dir "images" and labels_dir "labels" by default; for Cityscapes itself use
// images_dir "leftImg8bit", labels_dir "gtFine", image_suffix "_leftImg8bit",
// label_suffix "_gtFine_labelIds" and the labelId -> trainId table as label_map.
// Label PNGs are single-channel, 8- or 16-bit; each pixel's raw id v becomes:
//   with a label_map:    label_map[v] (a target that is a void label means void), or
//                        void when v is not in the map;
//   without a label_map: v, or void when v is one of void_labels; any other v outside
//                        [0, num_classes) is bad data (DataError naming the file).
// Void pixels are kIgnoreLabel in Example::mask (batch_mask 0 in the batch).
//
// Files are listed when the source is built (sorted, recursively); a missing label file,
// an undecodable image or label, a multi-channel label or one whose size differs from its
// image throws DataError naming the file when that example is loaded.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {

struct SegmentationFolderOptions {
  std::string data_dir;
  std::string images_dir = "images";
  std::string labels_dir = "labels";
  std::string image_suffix;  // stripped from the image stem
  std::string label_suffix;  // appended to the stem of the label file
  int64_t num_classes = 0;
  std::vector<int64_t> void_labels = {255};
  std::optional<std::map<int64_t, int64_t>> label_map;  // raw id -> train id
};

class SegmentationFolderSource : public ExampleSource {
 public:
  // Lists <data_dir>/<images_dir>/<split>; throws scenic::Error when it is missing or
  // holds no image, or for a label_map target outside [0, num_classes) that is not void.
  SegmentationFolderSource(SegmentationFolderOptions options, std::string split);
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override { return images_.at(index); }
  const std::string& image_path(int64_t index) const { return images_.at(index); }
  const std::string& label_path(int64_t index) const { return labels_.at(index); }

  // Train id (or kIgnoreLabel) of raw label id `raw` in [0, 65536); kOutOfRange marks
  // ids that are bad data.
  static constexpr int32_t kOutOfRange = -2;
  int32_t map_label(int64_t raw) const { return lut_.at(raw); }

 private:
  SegmentationFolderOptions options_;
  std::vector<std::string> images_, labels_;
  std::vector<int32_t> lut_;  // [65536]
};

// The builder registered as `segmentation_folder`. dataset_configs: data_dir (required),
// images_dir, labels_dir, image_suffix, label_suffix, train_split ("train"), eval_split
// ("val"; both "valid" and "test"), classes (list of names) or num_classes, void_labels
// ([255]), label_map (a mapping {raw: train} or a list indexed by raw id), input_size
// ([H, W] that the default chains resize to; default [512, 512]), plus the keys of
// PipelineConfig::from_options. meta: num_classes, class_names, input_shape [-1, 3, H, W].
std::unique_ptr<Dataset> build_segmentation_folder(const DatasetOptions& options);

}  // namespace scenic::dataset
