// `coco_detection`: object detection from a COCO-format JSON file plus an image folder.
//
// Mirrors the data side of Scenic's DETR (projects/baselines/detr/
// input_pipeline_detection.py over TFDS `coco/2017`) for data held the way COCO ships
// it: `instances_<split>.json` with `images` (id, file_name, width, height),
// `annotations` (image_id, bbox [x, y, w, h] in pixels, category_id, iscrowd, area) and
// `categories` (id, name). The source yields, per image:
//   boxes      float [N, 4] absolute pixel (x0, y0, x1, y1) = (x, y, x + w, y + h),
//              clipped to the image; boxes left with no area are dropped (DETR's
//              ConvertCocoPolysToMask does the same);
//   box_labels int64 [N] contiguous 0-based category index: categories sorted by id, so
//              index i is categories()[i]; the pipeline adds 1 (0 is padding), and the
//              evaluator maps back with category_ids();
//   is_crowd   int64 [N] from `iscrowd` (absent: 0). Crowd boxes are kept and flagged;
//   orig_size  the decoded (height, width); image_id the COCO id.
// Images without annotations are kept (undefined box tensors, as example.h says).
//
// Bad input: a JSON key missing (the message names the key, the entry and the file), an
// annotation whose image_id or category_id is not listed, or a malformed bbox throw
// scenic::Error when the dataset is built. A missing or undecodable image file, or one
// whose size differs from the JSON's width/height, throws DataError naming the file when
// loaded (the pipeline stops on it, or skips it with on_error: skip).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {

struct CocoCategory {
  int64_t id = 0;
  std::string name;
};

struct CocoImageRecord {
  int64_t id = 0;
  std::string file_name;
  int64_t width = 0, height = 0;     // from the JSON; 0 when not given
  std::vector<float> boxes;          // [N * 4] x0, y0, x1, y1 (unclipped)
  std::vector<int64_t> labels;       // [N] contiguous category index
  std::vector<int64_t> is_crowd;     // [N]
};

struct CocoAnnotations {
  std::string path;                          // the JSON file, for messages
  std::vector<CocoCategory> categories;      // sorted by id; index = contiguous label
  std::vector<CocoImageRecord> images;       // in the file's order
  // Index of each category id in `categories`.
  std::map<int64_t, int64_t> category_index;
  int64_t num_annotations = 0;

  std::vector<int64_t> category_ids() const;  // [K] index -> COCO id
};

// Parses a COCO-format JSON file; throws scenic::Error naming the file and the key.
CocoAnnotations read_coco_annotations(const std::string& json_path);

class CocoDetectionSource : public ExampleSource {
 public:
  CocoDetectionSource(CocoAnnotations annotations, std::string image_dir);
  int64_t size() const override { return static_cast<int64_t>(annotations_.images.size()); }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override;
  const CocoAnnotations& annotations() const { return annotations_; }
  std::string image_path(int64_t index) const;

 private:
  CocoAnnotations annotations_;
  std::string image_dir_;
};

// DETR's chains: train flip_lr | detr_train_resize (multi-scale resize with max size
// 1333, or resize -> random size crop -> multi-scale resize) | vgg_value_range; eval
// random_resize_multiscale(800, max_size=1333) | vgg_value_range. Unlike Scenic (TPU,
// static shapes) there is no pad_to(1333): collate pads each batch to its largest image
// with a padding_mask, as DETR's PyTorch code does; add pad_to to pp_* for fixed shapes.
extern const char* const kCocoDefaultTrainPp;
extern const char* const kCocoDefaultEvalPp;

// The builder registered as `coco_detection`. dataset_configs: train_annotations,
// train_images, eval_annotations, eval_images (paths; required), max_boxes, pp_train,
// pp_eval and the other keys of PipelineConfig::from_options. Eval splits "valid" and
// "test" are both the eval files. meta: num_classes = K + 1 (DETR's: label 0 is
// padding), class_names ["padding", category names by index...], input_shape
// [-1, 3, 1333, 1333] (the largest image the default chains make).
// Train and eval files must list the same categories.
std::unique_ptr<Dataset> build_coco_detection(const DatasetOptions& options);

}  // namespace scenic::dataset
