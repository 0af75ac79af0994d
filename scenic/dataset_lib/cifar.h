// CIFAR-10 and CIFAR-100 from their binary distributions.
//
// Mirrors Scenic's dataset_lib/cifar10_dataset.py (registered as `cifar10`; Scenic reads
// it through TFDS) and the same for CIFAR-100 (`cifar100`, which Scenic reaches through
// the `bit` builder). Files, as in the official "binary version" tarballs:
//   cifar10:  data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin; each record
//             is <label byte> <1024 R> <1024 G> <1024 B> (3073 bytes, rows top first).
//   cifar100: train.bin, test.bin; records <coarse byte> <fine byte> <3072 pixels>.
// `dataset_configs.data_dir` holds the files, or the tarball's folder
// (cifar-10-batches-bin / cifar-100-binary) inside it. Defaults:
// /usr/share/datasets/cifar10 and /usr/share/datasets/cifar100.
// `dataset_configs.label_mode`: fine (default, 100 classes) | coarse (20) for cifar100.
//
// The 60,000 images (180 MB) are read into memory once and served by a
// TensorImageSource through the shared pipeline, not through ArrayDataset: Scenic's
// cifar10 augments (reflect-pad 4, random crop 32, flip) and standardizes per example,
// which is exactly what the pp chains do. Default chains (pp_train / pp_eval):
//   train: random_crop_with_pad(32, 4)|flip_lr|standardize(mean, std)
//   eval:  standardize(mean, std)
// with Scenic's CIFAR-10 mean/std (x255) and the usual CIFAR-100 ones. Both eval
// splits ("valid" and "test") are the test set, as in Scenic.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

inline constexpr const char* kDefaultCifar10Dir = "/usr/share/datasets/cifar10";
inline constexpr const char* kDefaultCifar100Dir = "/usr/share/datasets/cifar100";

struct CifarArrays {
  torch::Tensor images;  // uint8 [N, 32, 32, 3] (HWC, RGB)
  torch::Tensor labels;  // int64 [N]
  std::vector<std::pair<std::string, int64_t>> files;  // (path, records) in order
};

// Reads and concatenates CIFAR binary files whose records start with `label_bytes`
// label bytes (1 for cifar10, 2 for cifar100); the label is byte `label_index` of them
// and must be < num_classes. Throws scenic::Error naming the file for a missing,
// empty or truncated file (not a whole number of records) and for a bad label (with
// its record index).
CifarArrays read_cifar_files(const std::vector<std::string>& paths, int label_bytes,
                             int label_index, int64_t num_classes);

// The builders registered as `cifar10` and `cifar100`.
std::unique_ptr<Dataset> build_cifar10(const DatasetOptions& options);
std::unique_ptr<Dataset> build_cifar100(const DatasetOptions& options);

}  // namespace scenic::dataset
