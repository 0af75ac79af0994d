#include "scenic/train_lib/grad_accumulation.h"

#include <torch/torch.h>

#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::train {

std::vector<dataset::Batch> split_batch(const dataset::Batch& batch, int64_t num_microbatches) {
  if (num_microbatches < 1)
    throw Error("num_microbatches must be >= 1, got " + std::to_string(num_microbatches));
  int64_t size = -1;
  std::string first;
  for (const auto& [key, t] : batch) {
    if (!t.defined() || t.dim() == 0) {
      throw Error("cannot split batch key '" + key + "' into micro-batches: it has no batch dim");
    }
    if (size < 0) {
      size = t.size(0);
      first = key;
    } else if (t.size(0) != size) {
      std::ostringstream ss;
      ss << "batch keys '" << first << "' and '" << key << "' have different batch sizes (" << size
         << " vs " << t.size(0) << ")";
      throw Error(ss.str());
    }
  }
  if (size >= 0 && size % num_microbatches != 0) {
    std::ostringstream ss;
    ss << "batch size " << size << " is not divisible by num_microbatches " << num_microbatches;
    throw Error(ss.str());
  }
  std::vector<dataset::Batch> out(num_microbatches);
  const int64_t per = size < 0 ? 0 : size / num_microbatches;
  for (const auto& [key, t] : batch)
    for (int64_t k = 0; k < num_microbatches; ++k) out[k][key] = t.narrow(0, k * per, per);
  return out;
}

std::vector<torch::Tensor> microbatch_weights(const dataset::Batch& batch,
                                              const std::vector<dataset::Batch>& microbatches) {
  const auto mask_it = batch.find("batch_mask");
  std::vector<torch::Tensor> weights;
  if (mask_it == batch.end()) {
    const auto device = batch.empty() ? torch::Device(torch::kCPU) : batch.begin()->second.device();
    const double w = 1.0 / static_cast<double>(microbatches.size());
    for (size_t k = 0; k < microbatches.size(); ++k)
      weights.push_back(torch::full({}, w, torch::TensorOptions().dtype(torch::kDouble).device(device)));
    return weights;
  }
  const torch::Tensor total = mask_it->second.sum(torch::kDouble);  // on its device
  for (const auto& mb : microbatches) {
    const torch::Tensor part = mb.at("batch_mask").sum(torch::kDouble);
    weights.push_back(torch::where(total > 0, part / total.clamp_min(1e-300), torch::zeros_like(part)));
  }
  return weights;
}

AccumulatedStep accumulate_gradients(const dataset::Batch& batch, int64_t num_microbatches,
                                     const MicrobatchLossFn& loss_fn) {
  const auto micro = split_batch(batch, num_microbatches);
  const auto weights = microbatch_weights(batch, micro);
  AccumulatedStep result;
  std::vector<torch::Tensor> outputs;
  for (size_t k = 0; k < micro.size(); ++k) {
    auto [loss, out] = loss_fn(micro[k]);
    if (!loss.defined() || loss.dim() != 0) throw Error("the micro-batch loss must be a 0-dim tensor");
    torch::Tensor weighted = loss * weights[k].to(loss.scalar_type());
    weighted.backward();
    {
      torch::NoGradGuard no_grad;
      result.loss = result.loss.defined() ? result.loss + weighted.detach() : weighted.detach();
    }
    if (out.defined()) outputs.push_back(out.detach());
  }
  if (!outputs.empty()) result.outputs = torch::cat(outputs, 0);
  return result;
}

}  // namespace scenic::train
