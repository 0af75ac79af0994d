#include "scenic/train_lib/ema.h"

#include <torch/torch.h>

#include <ATen/ops/_foreach_copy.h>
#include <ATen/ops/_foreach_lerp.h>

#include <algorithm>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

std::vector<std::pair<std::string, torch::Tensor>> module_tensors(torch::nn::Module& module,
                                                                  bool include_buffers) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value());
  if (include_buffers)
    for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

std::vector<torch::Tensor> pick(const std::vector<torch::Tensor>& v, const std::vector<size_t>& idx) {
  std::vector<torch::Tensor> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(v[i]);
  return out;
}

}  // namespace

Ema::Ema(torch::nn::Module& module, EmaOptions options)
    : Ema(module_tensors(module, options.include_buffers), options) {}

Ema::Ema(std::vector<std::pair<std::string, torch::Tensor>> tensors, EmaOptions options)
    : options_(options) {
  if (!(options.decay >= 0 && options.decay <= 1)) {
    std::ostringstream ss;
    ss << "EMA decay must be in [0, 1], got " << options.decay;
    throw Error(ss.str());
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : tensors) {
    if (!t.defined()) continue;
    (t.is_floating_point() ? float_idx_ : other_idx_).push_back(live_.size());
    names_.push_back(name);
    live_.push_back(t);
    averages_.push_back(t.detach().clone());
  }
}

double Ema::decay_at(int64_t step) const {
  if (!options_.warmup) return options_.decay;
  const double s = static_cast<double>(step);
  return std::min(options_.decay, (1.0 + s) / (10.0 + s));
}

double Ema::update(int64_t step) {
  if (swapped_) throw Error("Ema::update while the averages are swapped in; swap back first");
  const double d = decay_at(step);
  torch::NoGradGuard no_grad;
  // ema + (1 - d) * (w - ema) = d * ema + (1 - d) * w.
  if (!float_idx_.empty())
    at::_foreach_lerp_(pick(averages_, float_idx_), pick(live_, float_idx_), 1.0 - d);
  if (!other_idx_.empty()) at::_foreach_copy_(pick(averages_, other_idx_), pick(live_, other_idx_));
  return d;
}

void Ema::reset() {
  if (swapped_) throw Error("Ema::reset while the averages are swapped in; swap back first");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) averages_[i].copy_(live_[i]);
}

void Ema::swap() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) {
    // The live tensor (same TensorImpl the module and optimizer hold) takes the other
    // storage; the average keeps the live one.
    torch::Tensor live_storage = live_[i].detach();
    live_[i].set_data(averages_[i]);
    averages_[i] = live_storage;
  }
  swapped_ = !swapped_;
}

std::vector<std::pair<std::string, torch::Tensor>> Ema::averages() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < names_.size(); ++i) out.emplace_back(names_[i], averages_[i]);
  return out;
}

void Ema::save(torch::serialize::OutputArchive& archive) const {
  // CPU copies, as checkpoints.cc stores parameters; while swapped, the EMA values are live.
  const auto& ema = swapped_ ? live_ : averages_;
  for (size_t i = 0; i < names_.size(); ++i) archive.write(names_[i], ema[i].detach().cpu(), true);
}

void Ema::load(torch::serialize::InputArchive& archive) {
  if (swapped_) throw Error("Ema::load while the averages are swapped in; swap back first");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < names_.size(); ++i) {
    torch::Tensor t;
    if (!archive.try_read(names_[i], t, true))
      throw Error("EMA state has no tensor for '" + names_[i] + "'");
    if (t.sizes() != averages_[i].sizes()) {
      std::ostringstream ss;
      ss << "EMA state for '" << names_[i] << "' has shape " << t.sizes() << ", expected "
         << averages_[i].sizes();
      throw Error(ss.str());
    }
    averages_[i].copy_(t);
  }
}

}  // namespace scenic::train
