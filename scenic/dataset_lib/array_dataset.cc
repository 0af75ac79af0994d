#include "scenic/dataset_lib/array_dataset.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/index_stream.h"
#include "scenic/dataset_lib/prefetch.h"

namespace scenic::dataset {
namespace {

std::string describe(const torch::Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  std::ostringstream os;
  os << t.scalar_type() << " " << t.sizes();
  return os.str();
}

void check_split(const std::string& name, const std::string& split, ArraySplit& s,
                 int64_t num_classes) {
  const std::string where = name + ": " + split + " split: ";
  if (!s.images.defined() || s.images.scalar_type() != torch::kUInt8 || s.images.dim() != 4) {
    throw Error(where + "images must be uint8 [N, C, H, W], got " + describe(s.images));
  }
  if (!s.labels.defined() || s.labels.scalar_type() != torch::kInt64 || s.labels.dim() != 1) {
    throw Error(where + "labels must be int64 [N], got " + describe(s.labels));
  }
  if (s.images.size(0) != s.labels.size(0)) {
    throw Error(where + std::to_string(s.images.size(0)) + " images but " +
                std::to_string(s.labels.size(0)) + " labels");
  }
  if (num_classes > 0 && s.labels.numel() > 0) {
    const int64_t lo = s.labels.min().item<int64_t>();
    const int64_t hi = s.labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      throw Error(where + "label " + std::to_string(lo < 0 ? lo : hi) + " out of range [0, " +
                  std::to_string(num_classes) + ")");
    }
  }
  s.images = s.images.cpu().contiguous();
  s.labels = s.labels.cpu().contiguous();
}

}  // namespace

Batch gather_batch(const ArraySplit& split, const torch::Tensor& indices) {
  Batch batch;
  batch["inputs"] = split.images.index_select(0, indices).to(torch::kFloat32).div_(255.0);
  batch["label"] = split.labels.index_select(0, indices);
  batch["batch_mask"] = torch::ones({indices.size(0)}, torch::kFloat32);
  return batch;
}

Batch padded_slice_batch(const ArraySplit& split, int64_t start, int64_t batch_size) {
  const int64_t real = std::max<int64_t>(0, std::min(batch_size, split.size() - start));
  start = std::min(start, split.size());  // all padding past the end
  torch::Tensor images = split.images.narrow(0, start, real).to(torch::kFloat32).div_(255.0);
  torch::Tensor labels = split.labels.narrow(0, start, real);
  Batch batch;
  if (real == batch_size) {
    batch["inputs"] = images;
    batch["label"] = labels.clone();  // don't hand out a view of the dataset's storage
    batch["batch_mask"] = torch::ones({batch_size}, torch::kFloat32);
    return batch;
  }
  std::vector<int64_t> shape = split.images.sizes().vec();
  shape[0] = batch_size;
  torch::Tensor inputs = torch::zeros(shape, torch::kFloat32);  // [B, C, H, W]
  inputs.narrow(0, 0, real).copy_(images);
  torch::Tensor label = torch::zeros({batch_size}, torch::kInt64);
  label.narrow(0, 0, real).copy_(labels);
  torch::Tensor mask = torch::zeros({batch_size}, torch::kFloat32);
  mask.narrow(0, 0, real).fill_(1.0);
  batch["inputs"] = inputs;
  batch["label"] = label;
  batch["batch_mask"] = mask;
  return batch;
}

ArrayDataset::ArrayDataset(std::string name, ArraySplit train,
                           std::map<std::string, ArraySplit> eval_splits, int64_t num_classes,
                           const DatasetOptions& options)
    : name_(std::move(name)),
      batch_size_(options.batch_size),
      eval_batch_size_(options.eval_batch_size == 0 ? options.batch_size
                                                    : options.eval_batch_size),
      prefetch_(options.prefetch),
      process_index_(options.process_index),
      process_count_(options.process_count),
      seed_(options.shuffle_seed) {
  if (process_count_ < 1 || process_index_ < 0 || process_index_ >= process_count_) {
    throw Error(name_ + ": process_index " + std::to_string(process_index_) + " out of range [0, " +
                std::to_string(process_count_) + ")");
  }
  if (batch_size_ <= 0) {
    throw Error(name_ + ": batch_size must be > 0, got " + std::to_string(batch_size_));
  }
  if (eval_batch_size_ <= 0) {
    throw Error(name_ + ": eval_batch_size must be > 0, got " + std::to_string(eval_batch_size_));
  }
  if (prefetch_ < 0) {
    throw Error(name_ + ": prefetch must be >= 0, got " + std::to_string(prefetch_));
  }
  auto splits = std::make_shared<Splits>();
  check_split(name_, "train", train, num_classes);
  for (auto& [split, arrays] : eval_splits) {
    check_split(name_, split, arrays, num_classes);
    if (arrays.images.sizes().slice(1) != train.images.sizes().slice(1)) {
      throw Error(name_ + ": " + split + " images are " + describe(arrays.images) +
                  " but train images are " + describe(train.images) +
                  " (per-example shapes differ)");
    }
  }
  if (batch_size_ * process_count_ > train.size()) {
    throw Error(name_ + ": batch_size " + std::to_string(batch_size_ * process_count_) +
                " is larger than the " + std::to_string(train.size()) +
                " training examples");
  }

  meta_data.num_classes = num_classes;
  meta_data.input_shape = train.images.sizes().vec();
  meta_data.input_shape[0] = -1;
  meta_data.num_train_examples = train.size();
  meta_data.input_dtype = torch::kFloat32;
  meta_data.target_is_onehot = false;
  if (eval_splits.count("valid")) {
    meta_data.num_eval_examples = eval_splits.at("valid").size();
  } else if (eval_splits.count("test")) {
    meta_data.num_eval_examples = eval_splits.at("test").size();
  }

  splits->train = std::move(train);
  splits->eval = std::move(eval_splits);
  splits_ = std::move(splits);
}

const ArraySplit& ArrayDataset::train_split() const { return splits_->train; }

const ArraySplit& ArrayDataset::eval_split(const std::string& split) const {
  auto it = splits_->eval.find(split);
  if (it == splits_->eval.end()) {
    std::string valid;
    for (const auto& [s, _] : splits_->eval) valid += (valid.empty() ? "" : ", ") + s;
    throw Error(name_ + ": unknown eval split '" + split + "'; valid splits: " +
                (valid.empty() ? "(none)" : valid));
  }
  return it->second;
}

std::unique_ptr<BatchIterator> ArrayDataset::train_iter(int64_t start_step) {
  if (start_step < 0) {
    throw Error(name_ + ": train_iter start_step must be >= 0, got " + std::to_string(start_step));
  }
  // The global stream (batch P*B); this process takes its B slots of each batch.
  TrainIndexStream stream(splits_->train.size(), batch_size_ * process_count_, seed_, start_step);
  auto producer = [splits = splits_, stream, first = process_index_ * batch_size_,
                   bs = batch_size_]() mutable -> std::optional<Batch> {
    std::vector<int64_t> idx = stream.next();
    torch::Tensor indices = torch::tensor(idx, torch::kInt64).narrow(0, first, bs);  // [B]
    return gather_batch(splits->train, indices);
  };
  return std::make_unique<PrefetchIterator>(std::move(producer), prefetch_);
}

std::unique_ptr<BatchIterator> ArrayDataset::eval_iter(const std::string& split) {
  const ArraySplit& arrays = eval_split(split);  // validates the name
  // Copies the tensor handles, which keep the storage alive past the dataset.
  // Global batch k covers [k*P*E, (k+1)*P*E); this process takes its E of them.
  auto producer = [arrays, pos = int64_t{0}, bs = eval_batch_size_, p = process_index_,
                   P = process_count_]() mutable -> std::optional<Batch> {
    if (pos >= arrays.size()) return std::nullopt;
    Batch batch = padded_slice_batch(arrays, pos + p * bs, bs);
    pos += P * bs;
    return batch;
  };
  return std::make_unique<PrefetchIterator>(std::move(producer), prefetch_);
}

}  // namespace scenic::dataset
