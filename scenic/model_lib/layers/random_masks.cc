#include "scenic/model_lib/layers/random_masks.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <mutex>

namespace scenic::model {
namespace {
thread_local std::optional<at::Generator> t_cpu_generator;
}  // namespace

std::optional<at::Generator> mask_generator(const torch::Device& device) {
  return device.is_cpu() ? t_cpu_generator : std::nullopt;
}

ScopedMaskGenerator::ScopedMaskGenerator(at::Generator generator) : previous_(t_cpu_generator) {
  t_cpu_generator = std::move(generator);
}

ScopedMaskGenerator::~ScopedMaskGenerator() { t_cpu_generator = previous_; }

at::Generator fork_default_cpu_generator() {
  auto gen = at::detail::getDefaultCPUGenerator();
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = gen.get<at::CPUGeneratorImpl>()->random64();
  }
  return at::detail::createCPUGenerator(seed);
}

torch::Tensor bernoulli_mask(torch::IntArrayRef shape, double keep_prob, const torch::TensorOptions& options) {
  return torch::empty(shape, options).bernoulli_(keep_prob, mask_generator(options.device()));
}

torch::Tensor dropout(const torch::Tensor& x, double rate, bool training) {
  if (!training || rate <= 0.0) return x;
  const auto gen = mask_generator(x.device());
  // Without an installed generator: torch::dropout itself (its fused kernel on CUDA).
  if (!gen || rate >= 1.0) return torch::dropout(x, rate, true);
  auto noise = torch::empty_like(x).bernoulli_(1.0 - rate, gen);
  noise.div_(1.0 - rate);
  return x * noise;
}

}  // namespace scenic::model
