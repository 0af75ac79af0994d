// MNIST and Fashion-MNIST from their IDX files.
//
// Mirrors Scenic's dataset_lib/mnist_dataset.py and fashion_mnist_dataset.py
// (registered as `mnist` and `fashion_mnist`): 28x28 grayscale images, 10 classes,
// inputs normalized to [0, 1]; both eval splits ("valid" and "test") are the test split,
// as in Scenic. The directory is `dataset_configs.data_dir` and holds
// {train,t10k}-{images-idx3,labels-idx1}-ubyte, each optionally with a `.gz` suffix.
// Defaults: /usr/share/datasets/mnist and /usr/share/datasets/fashion-mnist (the Debian
// `dataset-fashion-mnist` package).
// Without `dataset_configs.pp_train` / `pp_eval` the batches are gathered straight from
// the in-memory arrays (ArrayDataset). With either, the examples go through the shared
// pipeline (pipeline.h) with those preprocessing strings, e.g.
// `pp_train: "random_crop_with_pad(28, 2)|flip_lr"` (empty means none); both give the
// same [B, 1, 28, 28] float inputs in [0, 1] and the same keys.
#pragma once

#include <memory>
#include <string>

#include "scenic/dataset_lib/array_dataset.h"
#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

inline constexpr const char* kDefaultMnistDir = "/usr/share/datasets/mnist";
inline constexpr const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct MnistArrays {
  ArraySplit train;  // images uint8 [60000, 1, 28, 28], labels int64 [60000]
  ArraySplit test;   // images uint8 [10000, 1, 28, 28], labels int64 [10000]
};

// Reads the four IDX files of `data_dir`; throws scenic::Error naming the file on any
// problem (missing, corrupt, wrong magic, image/label count mismatch, labels > 9).
MnistArrays load_mnist_arrays(const std::string& data_dir);

// The builders registered as `mnist` and `fashion_mnist`. They read only
// `dataset_configs.data_dir`.
std::unique_ptr<Dataset> build_mnist(const DatasetOptions& options);
std::unique_ptr<Dataset> build_fashion_mnist(const DatasetOptions& options);

}  // namespace scenic::dataset
