// image_folder: a class-per-subfolder tree of JPEG/PNG images, the way most users hold
// their own data (torchvision's ImageFolder layout).
//
// Scenic has no such builder (its users convert to TFDS first); this one feeds the same
// pipeline as every other source (pipeline.h). Layout under `dataset_configs.data_dir`:
//   with split folders:  train/<class>/*.jpg, valid/ (or val/, validation/), test/;
//                        a missing valid or test split is the other one; with neither,
//                        valid is carved out of train as below.
//   without:             <class>/*.jpg; `dataset_configs.valid_fraction` (default 0.1) of
//                        each class goes to valid (test = valid), chosen by a permutation
//                        seeded with `dataset_configs.split_seed` (default 0; not the
//                        shuffle seed, so the held-out set stays put across runs).
// Classes are the train folder's subfolders sorted by name (label = rank). Files ending
// in .jpg/.jpeg/.png/.bmp (any case) are used, sorted by name; others and dot-files are
// ignored. Images decode to RGB uint8 (grey ones are expanded to 3 channels).
// Default chains for `dataset_configs.image_size` S (default 224):
//   train: decode|inception_crop(S)|flip_lr|value_range(0, 1)
//   eval:  decode|resize_small(S * 8 / 7)|central_crop(S)|value_range(0, 1)
// meta_data.input_shape is the train chain's output size.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/example_source.h"

namespace scenic::dataset {

struct ImageFile {
  std::string path;
  int64_t label = 0;
};

// Decodes image files (cv::imdecode, BGR -> RGB). A missing, unreadable or undecodable
// file is a DataError naming the file.
class ImageFileSource : public ExampleSource {
 public:
  explicit ImageFileSource(std::vector<ImageFile> files) : files_(std::move(files)) {}
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  Example load(int64_t index) const override;
  std::string describe(int64_t index) const override;
  const std::vector<ImageFile>& files() const { return files_; }

 private:
  std::vector<ImageFile> files_;
};

// Reads an image file into an RGB (or, with channels 1, grey) uint8 matrix; throws
// DataError naming `path` when it cannot be read or decoded.
cv::Mat read_image_file(const std::string& path, int channels = 3);

struct ImageFolderSplits {
  std::vector<std::string> classes;  // sorted; label = index
  std::vector<ImageFile> train, valid, test;
};

// Scans `dir` as described above; throws scenic::Error for a missing directory, no
// classes, a valid/test class the train split lacks, or a bad valid_fraction.
ImageFolderSplits scan_image_folder(const std::string& dir, double valid_fraction,
                                    uint64_t split_seed);

// The builder registered as `image_folder`.
std::unique_ptr<Dataset> build_image_folder(const DatasetOptions& options);

}  // namespace scenic::dataset
