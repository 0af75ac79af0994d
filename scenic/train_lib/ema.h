// Exponential moving average (EMA) of a network's weights, for evaluation and export.
//
// Scenic's classification trainer has no EMA; its projects (and big_vision) keep one as
// an optax-style trace of the parameters. This is the common practice:
//   ema <- d * ema + (1 - d) * w after every optimizer step, where
//   d = decay, or with warmup d = min(decay, (1 + step) / (10 + step))
// and `step` counts the updates before this one (0 at the first), so early averages
// are not dominated by the random initialization. The averages live on the weights'
// device and are updated with one fused kernel per dtype/device, with no host
// synchronization.
//
// Tracked tensors: the module's parameters and, optionally, its floating-point buffers
// (BatchNorm running statistics); non-floating buffers (num_batches_tracked) are
// copied, not averaged. Frozen parameters are averaged like the others (they do not
// change, so their average is the value).
//
// `swap()` exchanges the averages with the live weights by swapping storages (no copy),
// so the network evaluates or checkpoints the EMA weights; `swap()` again restores the
// trained weights. `ScopedEmaSwap` does the pair for one scope. The optimizer keeps
// working on the same tensors (only their storages move). `save`/`load` store the
// averages by name in a torch archive, to keep them across resumes.
#pragma once

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace scenic::train {

struct EmaOptions {
  double decay = 0.9999;
  bool warmup = false;           // d = min(decay, (1 + step) / (10 + step))
  bool include_buffers = true;   // average floating buffers too
};

class Ema {
 public:
  Ema(torch::nn::Module& module, EmaOptions options);
  // General form: any named tensors (kept by reference; the averages start as copies).
  Ema(std::vector<std::pair<std::string, torch::Tensor>> tensors, EmaOptions options);

  // The decay used for the update after `step` earlier updates.
  double decay_at(int64_t step) const;
  // One EMA update; returns the decay used. Throws while swapped in.
  double update(int64_t step);
  // Averages := live values (e.g. after loading pretrained weights).
  void reset();

  // Exchanges averages and live weights; `swapped()` tells which state holds.
  void swap();
  bool swapped() const { return swapped_; }

  // (name, average) pairs; while swapped these hold the trained weights.
  std::vector<std::pair<std::string, torch::Tensor>> averages() const;

  // The EMA values by name (CPU copies; the EMA whether swapped in or not). Write them
  // into a sub-archive of a checkpoint, e.g. archive.write("ema", ema_archive).
  void save(torch::serialize::OutputArchive& archive) const;
  // Throws scenic::Error naming the tensor when one is missing or has another shape.
  void load(torch::serialize::InputArchive& archive);

 private:
  std::vector<std::string> names_;
  std::vector<torch::Tensor> live_, averages_;
  std::vector<size_t> float_idx_, other_idx_;  // averaged / copied
  EmaOptions options_;
  bool swapped_ = false;
};

// Swaps the EMA in for this scope (evaluation, saving an EMA checkpoint).
class ScopedEmaSwap {
 public:
  explicit ScopedEmaSwap(Ema& ema) : ema_(ema) { ema_.swap(); }
  ~ScopedEmaSwap() { ema_.swap(); }
  ScopedEmaSwap(const ScopedEmaSwap&) = delete;
  ScopedEmaSwap& operator=(const ScopedEmaSwap&) = delete;

 private:
  Ema& ema_;
};

}  // namespace scenic::train
