#include "scenic/train_lib/batch_split.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <sstream>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/layers/random_masks.h"

namespace scenic::train {

namespace {
std::atomic<bool> g_eval_split_batch{true};
std::atomic<bool> g_train_split_batch{true};

#ifdef _OPENMP
// Called first by each thread of our region: from here to the region's end this thread's
// omp_get_max_threads() is 1, so the libraries size their work (ATen's per-thread
// buffers, oneDNN's primitives) for the one thread that runs it. Without it oneDNN
// built primitives for the whole team inside the region, ran them alone (nested
// regions do not open) and a convolution's weight gradient came out wrong on every
// step; with it, still on the first step (bench/README.md, 2026-12-07), which is why
// training splits only networks that opt in (model::Network::splits_batch_on_cpu).
void one_thread_inside() { omp_set_num_threads(1); }
#endif

// Runs fn(i) for i in [0, n) at once, one OpenMP thread per slice, each thread with
// the caller's thread-local state (grad mode, autocast, ...); rethrows the first
// exception (by slice index) here. Callers check batch_split_available().
template <typename Fn>
void run_slices(int64_t n, const Fn& fn) {
  std::vector<std::exception_ptr> errors(n);
  const at::ThreadLocalState state;
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(n))
  {
    at::ThreadLocalStateGuard guard(state);
    one_thread_inside();
    // The runtime may give fewer threads than asked: each takes every nt-th slice.
    const int nt = omp_get_num_threads();
    for (int64_t i = omp_get_thread_num(); i < n; i += nt) {
      try {
        fn(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  }
#endif
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

torch::Tensor checked_forward(model::Network& network, const torch::Tensor& slice) {
  auto y = network.forward(slice);
  if (y.dim() == 0 || y.size(0) != slice.size(0)) {
    std::ostringstream s;
    s << "eval_split_batch: the network maps a batch of " << slice.size(0) << " to an output of shape "
      << y.sizes() << ", not [" << slice.size(0)
      << ", ...]; set the config key eval_split_batch: false for this model";
    throw Error(s.str());
  }
  return y;
}
}  // namespace

bool batch_split_available() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

void set_eval_split_batch(bool on) { g_eval_split_batch = on; }
bool eval_split_batch() { return g_eval_split_batch; }
void set_train_split_batch(bool on) { g_train_split_batch = on; }
bool train_split_batch() { return g_train_split_batch; }
int eval_split_threads(const model::Network& network) {
  return g_eval_split_batch && network.splits_batch_on_cpu() ? at::get_num_threads() : 1;
}

int64_t split_slices(int64_t batch, int threads, int64_t min_per_thread) {
  const int64_t n = std::min<int64_t>(threads, batch / std::max<int64_t>(1, min_per_thread));
  return batch_split_available() && n >= 2 ? n : 1;
}

torch::Tensor forward_split_batch(model::Network& network, const torch::Tensor& inputs, int threads,
                                  int64_t min_per_thread) {
  const int64_t n = split_slices(inputs.dim() > 0 ? inputs.size(0) : 0, threads, min_per_thread);
  if (n < 2 || !inputs.device().is_cpu() || c10::GradMode::is_enabled() || at::in_parallel_region())
    return network.forward(inputs);
  const auto slices = inputs.tensor_split(n, 0);
  std::vector<torch::Tensor> outputs(n);
  run_slices(n, [&](int64_t i) { outputs[i] = checked_forward(network, slices[i]); });
  return torch::cat(outputs, 0);
}

int64_t train_split_slices(const model::Network& network, const dataset::Batch& batch, int threads) {
  if (!g_train_split_batch || batch.empty() || !network.splits_batch_on_cpu() || !network.buffers().empty()) return 1;
  int64_t size = -1;
  for (const auto& [key, t] : batch) {
    if (!t.defined() || t.dim() == 0 || !t.device().is_cpu()) return 1;
    if (size >= 0 && t.size(0) != size) return 1;  // split_batch would refuse it
    size = t.size(0);
  }
  int64_t n = split_slices(size, threads);
  while (n > 1 && size % n != 0) --n;
  return n >= 2 ? n : 1;
}

AccumulatedStep accumulate_gradients_split(const dataset::Batch& batch, int64_t slices,
                                           const MicrobatchLossFn& loss_fn) {
  if (slices < 2 || !batch_split_available() || at::in_parallel_region())
    return accumulate_gradients(batch, 1, loss_fn);
  const auto micro = split_batch(batch, slices);
  const auto weights = microbatch_weights(batch, micro);
  // In slice order on this thread: the same generators whichever thread runs a slice.
  std::vector<at::Generator> generators;
  for (int64_t i = 0; i < slices; ++i) generators.push_back(model::fork_default_cpu_generator());
  std::vector<torch::Tensor> losses(slices), outputs(slices);
  run_slices(slices, [&](int64_t i) {
    model::ScopedMaskGenerator masks(generators[i]);
    auto [loss, out] = loss_fn(micro[i]);
    if (!loss.defined() || loss.dim() != 0) throw Error("the micro-batch loss must be a 0-dim tensor");
    torch::Tensor weighted = loss * weights[i].to(loss.scalar_type());
    weighted.backward();  // AccumulateGrad adds into a shared .grad under its own lock
    losses[i] = weighted.detach();
    if (out.defined()) outputs[i] = out.detach();
  });
  AccumulatedStep result;
  torch::NoGradGuard no_grad;
  result.loss = losses[0];
  for (int64_t i = 1; i < slices; ++i) result.loss = result.loss + losses[i];
  if (outputs[0].defined()) result.outputs = torch::cat(outputs, 0);
  return result;
}

}  // namespace scenic::train
