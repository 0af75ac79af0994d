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

namespace scenic::train {

namespace {
std::atomic<bool> g_eval_split_batch{true};

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
int eval_split_threads() { return g_eval_split_batch ? at::get_num_threads() : 1; }

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
  std::vector<std::exception_ptr> errors(n);
  const at::ThreadLocalState state;  // grad mode, autocast, ... of the caller
#ifdef _OPENMP
#pragma omp parallel num_threads(static_cast<int>(n))
  {
    at::ThreadLocalStateGuard guard(state);
    // The runtime may give fewer threads than asked: each takes every nt-th slice.
    const int nt = omp_get_num_threads();
    for (int64_t i = omp_get_thread_num(); i < n; i += nt) {
      try {
        outputs[i] = checked_forward(network, slices[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  }
#endif
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return torch::cat(outputs, 0);
}

}  // namespace scenic::train
