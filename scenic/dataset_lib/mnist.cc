#include "scenic/dataset_lib/mnist.h"

#include <torch/torch.h>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/idx_reader.h"
#include "scenic/dataset_lib/pipeline.h"
#include "scenic/dataset_lib/tensor_source.h"

namespace scenic::dataset {
namespace {

constexpr int64_t kNumClasses = 10;

ArraySplit load_split(const std::string& dir, const std::string& prefix) {
  const std::string images_path = find_data_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_data_file(dir, prefix + "-labels-idx1-ubyte");
  ArraySplit split{read_idx_images(images_path), read_idx_labels(labels_path)};
  if (split.images.size(0) != split.labels.size(0)) {
    throw Error(images_path + ": has " + std::to_string(split.images.size(0)) +
                " images but " + labels_path + " has " + std::to_string(split.labels.size(0)) +
                " labels");
  }
  if (split.labels.numel() > 0) {
    const int64_t hi = split.labels.max().item<int64_t>();
    if (hi >= kNumClasses) {
      throw Error(labels_path + ": label " + std::to_string(hi) + " out of range [0, " +
                  std::to_string(kNumClasses) + ")");
    }
  }
  return split;
}

// An ExampleSource over a split ([N, 1, H, W] -> the HWC layout decoded images have).
SourcePtr make_source(const std::string& dir, const std::string& split, const ArraySplit& arrays) {
  auto describe = [dir, split](int64_t i) { return dir + " " + split + " example " + std::to_string(i); };
  return std::make_shared<TensorImageSource>(arrays.images.permute({0, 2, 3, 1}).contiguous(), arrays.labels,
                                             describe);
}

std::unique_ptr<Dataset> build(const std::string& name, const std::string& default_dir,
                               const DatasetOptions& options) {
  const std::string dir = options.dataset_configs.get<std::string>("data_dir", default_dir);
  MnistArrays arrays = load_mnist_arrays(dir);
  if (options.dataset_configs.has("pp_train") || options.dataset_configs.has("pp_eval")) {
    // Augmentation asked for: the shared pipeline (same batches, same global-batch
    // slicing across processes, per-example random ops on worker threads).
    PipelineConfig cfg = PipelineConfig::from_options(name, Task::kClassification, options, "", "");
    MetaData meta;  // input_shape: probed through pp_train (it may resize)
    meta.num_classes = kNumClasses;
    SourcePtr test = make_source(dir, "test", arrays.test);
    return make_pipeline_dataset(std::move(cfg), make_source(dir, "train", arrays.train),
                                 {{"valid", test}, {"test", test}}, meta);
  }
  // Scenic evaluates MNIST-style datasets on the test split under both names.
  std::map<std::string, ArraySplit> eval{{"valid", arrays.test}, {"test", arrays.test}};
  return std::make_unique<ArrayDataset>(name, std::move(arrays.train), std::move(eval),
                                        kNumClasses, options);
}

}  // namespace

MnistArrays load_mnist_arrays(const std::string& data_dir) {
  MnistArrays arrays;
  arrays.train = load_split(data_dir, "train");
  arrays.test = load_split(data_dir, "t10k");
  return arrays;
}

std::unique_ptr<Dataset> build_mnist(const DatasetOptions& options) {
  return build("mnist", kDefaultMnistDir, options);
}

std::unique_ptr<Dataset> build_fashion_mnist(const DatasetOptions& options) {
  return build("fashion_mnist", kDefaultFashionMnistDir, options);
}

}  // namespace scenic::dataset
