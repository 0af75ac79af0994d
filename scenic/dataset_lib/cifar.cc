#include "scenic/dataset_lib/cifar.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <fstream>
#include <iterator>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/pipeline.h"
#include "scenic/dataset_lib/tensor_source.h"

namespace scenic::dataset {
namespace {

constexpr int64_t kSide = 32, kPixels = 3 * kSide * kSide;

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// The directory that holds `probe`: data_dir itself or the tarball's folder inside it.
std::string resolve_dir(const std::string& data_dir, const std::string& tar_folder,
                        const std::string& probe) {
  if (exists(data_dir + "/" + probe)) return data_dir;
  if (exists(data_dir + "/" + tar_folder + "/" + probe)) return data_dir + "/" + tar_folder;
  if (!exists(data_dir)) {
    throw Error(data_dir + ": data directory does not exist (set dataset_configs.data_dir)");
  }
  throw Error(data_dir + "/" + probe + ": not found (looked in " + data_dir + " and " +
              data_dir + "/" + tar_folder + "; set dataset_configs.data_dir)");
}

SourcePtr make_source(const std::string& name, const std::string& split, CifarArrays arrays) {
  auto files = arrays.files;
  auto describe = [name, split, files](int64_t index) {
    int64_t i = index;
    for (const auto& [path, n] : files) {
      if (i < n) return path + " record " + std::to_string(i);
      i -= n;
    }
    return name + " " + split + " example " + std::to_string(index);
  };
  return std::make_shared<TensorImageSource>(arrays.images, arrays.labels, describe);
}

std::string standardize(const double mean[3], const double std[3]) {
  auto tuple = [](const double v[3]) {
    std::string s = "(";
    for (int i = 0; i < 3; ++i) s += (i ? ", " : "") + std::to_string(v[i] * 255.0);
    return s + ")";
  };
  return "standardize(" + tuple(mean) + ", " + tuple(std) + ")";
}

std::unique_ptr<Dataset> build(const std::string& name, const DatasetOptions& options,
                               CifarArrays train, CifarArrays test, int64_t num_classes,
                               const double mean[3], const double std[3]) {
  const std::string norm = standardize(mean, std);
  PipelineConfig cfg = PipelineConfig::from_options(
      name, Task::kClassification, options,
      "random_crop_with_pad(32, 4)|flip_lr|" + norm, norm);
  MetaData meta;
  meta.num_classes = num_classes;
  meta.input_shape = {-1, 3, kSide, kSide};
  SourcePtr test_source = make_source(name, "test", std::move(test));
  return make_pipeline_dataset(std::move(cfg), make_source(name, "train", std::move(train)),
                               {{"valid", test_source}, {"test", test_source}}, meta);
}

}  // namespace

CifarArrays read_cifar_files(const std::vector<std::string>& paths, int label_bytes,
                             int label_index, int64_t num_classes) {
  const int64_t record = label_bytes + kPixels;
  std::vector<torch::Tensor> images, labels;
  CifarArrays out;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (missing or unreadable)");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0) throw Error(path + ": empty file");
    if (size % record != 0) {
      throw Error(path + ": truncated: " + std::to_string(size) + " bytes is not a whole number of " +
                  std::to_string(record) + "-byte records (record " + std::to_string(size / record) +
                  " is incomplete)");
    }
    const int64_t n = size / record;
    // [n, record] -> labels [n], pixels [n, 3, 32, 32] -> HWC [n, 32, 32, 3].
    torch::Tensor raw = torch::from_blob(bytes.data(), {n, record}, torch::kUInt8);
    torch::Tensor lab = raw.select(1, label_index).to(torch::kInt64);
    const int64_t hi = lab.max().item<int64_t>();
    if (hi >= num_classes) {
      const int64_t at = lab.ge(num_classes).nonzero()[0][0].item<int64_t>();
      throw Error(path + ": record " + std::to_string(at) + ": label " +
                  std::to_string(lab[at].item<int64_t>()) + " out of range [0, " +
                  std::to_string(num_classes) + ")");
    }
    images.push_back(
        raw.narrow(1, label_bytes, kPixels).reshape({n, 3, kSide, kSide}).permute({0, 2, 3, 1}).contiguous());
    labels.push_back(lab);
    out.files.emplace_back(path, n);
  }
  out.images = torch::cat(images);
  out.labels = torch::cat(labels);
  return out;
}

std::unique_ptr<Dataset> build_cifar10(const DatasetOptions& options) {
  const std::string dir = resolve_dir(
      options.dataset_configs.get<std::string>("data_dir", kDefaultCifar10Dir),
      "cifar-10-batches-bin", "test_batch.bin");
  std::vector<std::string> train_files;
  for (int i = 1; i <= 5; ++i) train_files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  static const double mean[3] = {0.4914, 0.4822, 0.4465}, std[3] = {0.2470, 0.2435, 0.2616};
  CifarArrays train = read_cifar_files(train_files, 1, 0, 10);  // train first: errors in order
  CifarArrays test = read_cifar_files({dir + "/test_batch.bin"}, 1, 0, 10);
  return build("cifar10", options, std::move(train), std::move(test), 10, mean, std);
}

std::unique_ptr<Dataset> build_cifar100(const DatasetOptions& options) {
  const std::string dir = resolve_dir(
      options.dataset_configs.get<std::string>("data_dir", kDefaultCifar100Dir),
      "cifar-100-binary", "test.bin");
  const std::string mode = options.dataset_configs.get<std::string>("label_mode", "fine");
  if (mode != "fine" && mode != "coarse") {
    throw Error("cifar100: dataset_configs.label_mode must be 'fine' or 'coarse', got '" + mode +
                "'");
  }
  const int index = mode == "fine" ? 1 : 0;
  const int64_t k = mode == "fine" ? 100 : 20;
  static const double mean[3] = {0.5071, 0.4865, 0.4409}, std[3] = {0.2673, 0.2564, 0.2762};
  CifarArrays train = read_cifar_files({dir + "/train.bin"}, 2, index, k);
  CifarArrays test = read_cifar_files({dir + "/test.bin"}, 2, index, k);
  return build("cifar100", options, std::move(train), std::move(test), k, mean, std);
}

}  // namespace scenic::dataset
