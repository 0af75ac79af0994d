// The random masks of training-mode layers (dropout, stochastic depth, attention-weight
// dropout) and the generator they draw from.
//
// By default every mask is drawn from LibTorch's default generator (seeded by the
// config's `rng_seed`), as torch::dropout does. A split training step
// (train_lib/batch_split.h) runs slices of one batch on several threads at once: drawing
// from one shared generator would make the masks depend on which thread got there first.
// There each slice installs its own generator for its thread with ScopedMaskGenerator,
// seeded from the default generator before the threads start, so a run is reproducible.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <optional>

namespace scenic::model {

// Inverted dropout: in training, zeroes each element of `x` with probability `rate` and
// scales the rest by 1 / (1 - rate); identity when not training or rate <= 0; zeros for
// rate >= 1. Without an installed generator this is torch::dropout; with one, the same
// arithmetic (mask of ones at 1 - rate, divided by 1 - rate, times x) on its draws.
torch::Tensor dropout(const torch::Tensor& x, double rate, bool training);

// A float mask of `shape` (dtype and device of `options`) with ones at probability
// `keep_prob`, zeros elsewhere.
torch::Tensor bernoulli_mask(torch::IntArrayRef shape, double keep_prob, const torch::TensorOptions& options);

// The generator the calling thread's masks on `device` draw from: the one installed by a
// ScopedMaskGenerator for a CPU device, else none (the default generator).
std::optional<at::Generator> mask_generator(const torch::Device& device);

// Installs `generator` (a CPU generator) for the masks this thread draws on the CPU,
// until destruction (then the previous one is back). Not copyable.
class ScopedMaskGenerator {
 public:
  explicit ScopedMaskGenerator(at::Generator generator);
  ~ScopedMaskGenerator();
  ScopedMaskGenerator(const ScopedMaskGenerator&) = delete;
  ScopedMaskGenerator& operator=(const ScopedMaskGenerator&) = delete;

 private:
  std::optional<at::Generator> previous_;
};

// A new CPU generator seeded by one 64-bit draw from the default CPU generator (so a
// run's sequence of these is fixed by `rng_seed`).
at::Generator fork_default_cpu_generator();

}  // namespace scenic::model
