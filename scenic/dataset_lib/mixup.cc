// Mixup / CutMix (mixup.h), after Scenic's dataset_utils.mixup.
#include "scenic/dataset_lib/mixup.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

namespace {

struct Pair {
  torch::Tensor inputs, labels;
};

Pair checked(const Batch& batch, const std::string& input_key, const std::string& label_key,
             const char* what) {
  auto in = batch.find(input_key), lab = batch.find(label_key);
  if (in == batch.end() || lab == batch.end()) {
    throw Error(std::string(what) + ": the batch needs '" + input_key + "' and '" + label_key +
                "'");
  }
  const torch::Tensor& labels = lab->second;
  if (labels.dim() < 2 || labels.size(-1) == 1 || !labels.is_floating_point()) {
    throw Error(std::string(what) + " requires one-hot float targets [B, K]; '" + label_key +
                "' has shape " + c10::str(labels.sizes()) +
                " (convert with target_to_one_hot)");
  }
  const torch::Tensor& inputs = in->second;
  if (inputs.dim() < 1 || inputs.size(0) != labels.size(0) || !inputs.is_floating_point()) {
    throw Error(std::string(what) + ": '" + input_key + "' must be float with the batch size " +
                std::to_string(labels.size(0)) + " first, got shape " +
                c10::str(inputs.sizes()));
  }
  return {inputs, labels};
}

torch::Tensor reversed(const torch::Tensor& t) { return t.flip({0}); }

}  // namespace

double sample_beta(double alpha, Rng& rng) {
  if (!(alpha > 0)) throw Error("mixup alpha must be > 0, got " + std::to_string(alpha));
  std::gamma_distribution<double> gamma(alpha, 1.0);
  const double x = gamma(rng), y = gamma(rng);
  return x + y > 0 ? x / (x + y) : 0.5;  // both underflow only for tiny alpha
}

double mixup(Batch& batch, double alpha, Rng& rng, const std::string& input_key,
             const std::string& label_key) {
  auto [inputs, labels] = checked(batch, input_key, label_key, "mixup");
  const double lam = sample_beta(alpha, rng);
  batch[label_key] = labels * lam + reversed(labels) * (1 - lam);
  batch[input_key] = inputs * lam + reversed(inputs) * (1 - lam);
  return lam;
}

CutMixBox cutmix(Batch& batch, double alpha, Rng& rng, const std::string& input_key,
                 const std::string& label_key) {
  auto [inputs, labels] = checked(batch, input_key, label_key, "cutmix");
  if (inputs.dim() != 4) {
    throw Error("cutmix: '" + input_key + "' must be NCHW [B, C, H, W], got " +
                c10::str(inputs.sizes()));
  }
  const int64_t H = inputs.size(2), W = inputs.size(3);
  const double lam = sample_beta(alpha, rng);
  // Box side ratio sqrt(1 - lambda) so its area is (1 - lambda) H W before clipping.
  const double cut = std::sqrt(1 - lam);
  const int64_t cut_h = static_cast<int64_t>(H * cut), cut_w = static_cast<int64_t>(W * cut);
  const int64_t cy = std::uniform_int_distribution<int64_t>(0, H - 1)(rng);
  const int64_t cx = std::uniform_int_distribution<int64_t>(0, W - 1)(rng);
  CutMixBox box;
  box.y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, H);
  box.y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, H);
  box.x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, W);
  box.x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, W);
  box.lambda = 1.0 - static_cast<double>((box.y1 - box.y0) * (box.x1 - box.x0)) / (H * W);

  using torch::indexing::Slice;
  torch::Tensor mixed = inputs.clone();
  torch::Tensor rev = reversed(inputs);
  mixed.index_put_({Slice(), Slice(), Slice(box.y0, box.y1), Slice(box.x0, box.x1)},
                   rev.index({Slice(), Slice(), Slice(box.y0, box.y1), Slice(box.x0, box.x1)}));
  batch[input_key] = mixed;
  batch[label_key] = labels * box.lambda + reversed(labels) * (1 - box.lambda);
  return box;
}

void target_to_one_hot(Batch& batch, int64_t num_classes, const std::string& label_key) {
  auto it = batch.find(label_key);
  if (it == batch.end()) throw Error("target_to_one_hot: the batch has no '" + label_key + "'");
  const torch::Tensor& label = it->second;
  if (label.dim() != 1 || label.is_floating_point()) {
    throw Error("target_to_one_hot: '" + label_key + "' must be integer [B], got shape " +
                c10::str(label.sizes()));
  }
  if (label.numel() > 0 && (label.min().item<int64_t>() < 0 ||
                            label.max().item<int64_t>() >= num_classes)) {
    throw Error("target_to_one_hot: labels outside [0, " + std::to_string(num_classes) + ")");
  }
  it->second = torch::one_hot(label.to(torch::kInt64), num_classes).to(torch::kFloat32);
}

}  // namespace scenic::dataset
