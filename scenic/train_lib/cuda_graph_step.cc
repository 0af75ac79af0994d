#include "scenic/train_lib/cuda_graph_step.h"

#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include <sstream>
#include <string>
#include <utility>

#include "scenic/common_lib/errors.h"
#include "scenic/train_lib/fused_adamw.h"
#include "scenic/train_lib/optimizers.h"

// The graph API comes with torch_cuda's headers, present when torch's CMake config found
// the CUDA toolkit (on the build machine even without a GPU).
#if __has_include(<ATen/cuda/CUDAGraph.h>) && __has_include(<cuda_runtime_api.h>)
#define SCENIC_HAVE_CUDA_GRAPHS 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace scenic::train {
namespace {
std::string describe(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes() << " " << t.scalar_type() << " on " << t.device();
  return s.str();
}

// Keeps autocast's weight-cast cache off while capturing (a cached cast made during the
// capture would live in the graph's pool and be dropped when autocast exits).
class NoAutocastCache {
 public:
  NoAutocastCache() : was_(at::autocast::is_autocast_cache_enabled()) { at::autocast::set_autocast_cache_enabled(false); }
  ~NoAutocastCache() { at::autocast::set_autocast_cache_enabled(was_); }

 private:
  bool was_;
};
}  // namespace

#ifdef SCENIC_HAVE_CUDA_GRAPHS
struct GraphedStep::Cuda {
  explicit Cuda(c10::DeviceIndex index)
      : index(index), side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index)) {}
  // `to` waits for the work queued so far on `from` (PyTorch's Stream.wait_stream).
  static void wait(const c10::cuda::CUDAStream& to, const c10::cuda::CUDAStream& from) {
    at::cuda::CUDAEvent event;
    event.record(from);
    event.block(to);
  }
  c10::DeviceIndex index;
  c10::cuda::CUDAStream side;  // warm-up and capture run here (a capture needs a non-default stream)
  at::cuda::CUDAGraph graph;
  bool captured = false;
};
bool cuda_graphs_built() { return true; }
#else
struct GraphedStep::Cuda {};
bool cuda_graphs_built() { return false; }
#endif

GraphedStep::GraphedStep(Fn fn, const torch::Device& device, int64_t warmup)
    : fn_(std::move(fn)), device_(device), warmup_(warmup) {
  if (warmup_ < 1) throw Error("GraphedStep: warmup must be >= 1 (eager steps before the capture), got " +
                               std::to_string(warmup_));
  if (device_.is_cuda()) {
#ifdef SCENIC_HAVE_CUDA_GRAPHS
    cuda_ = std::make_unique<Cuda>(device_.has_index() ? device_.index() : c10::cuda::current_device());
#else
    throw Error("GraphedStep: this build has no CUDA graph support (built without the CUDA headers)");
#endif
  }
}

GraphedStep::~GraphedStep() = default;

bool GraphedStep::captured() const {
#ifdef SCENIC_HAVE_CUDA_GRAPHS
  return cuda_ && cuda_->captured;
#else
  return false;
#endif
}

void GraphedStep::copy_in(const dataset::Batch& batch) {
  torch::NoGradGuard no_grad;
  if (static_.empty()) {
    for (const auto& [key, t] : batch) {
      if (t.device() != device_ && !(device_.is_cuda() && t.is_cuda() && !device_.has_index()))
        throw Error("GraphedStep: batch key '" + key + "' is " + describe(t) + ", the step runs on " +
                    device_.str());
      static_[key] = torch::empty_like(t).copy_(t);
    }
    return;
  }
  bool same_keys = batch.size() == static_.size();
  for (const auto& [key, t] : batch) {
    auto it = static_.find(key);
    if (it == static_.end()) {
      same_keys = false;
      break;
    }
    const auto& s = it->second;
    if (t.sizes() != s.sizes() || t.scalar_type() != s.scalar_type() || t.device() != s.device())
      throw Error("GraphedStep: batch key '" + key + "' is " + describe(t) + ", the step was built for " +
                  describe(s) + " (a captured step replays fixed shapes: every batch must have the same)");
  }
  if (!same_keys) {
    std::string have, want;
    for (const auto& kv : batch) have += (have.empty() ? "" : ", ") + kv.first;
    for (const auto& kv : static_) want += (want.empty() ? "" : ", ") + kv.first;
    throw Error("GraphedStep: batch keys {" + have + "}, the step was built for {" + want + "}");
  }
  for (const auto& [key, t] : batch) static_.at(key).copy_(t, /*non_blocking=*/true);
}

std::vector<torch::Tensor> GraphedStep::operator()(const dataset::Batch& batch) {
  copy_in(batch);
  const int64_t call = calls_++;
  if (!cuda_) return fn_(static_);  // CPU: nothing to capture
#ifdef SCENIC_HAVE_CUDA_GRAPHS
  auto& c = *cuda_;
  if (c.captured) {
    c.graph.replay();  // on the current stream, after the copies above
    return outputs_;
  }
  const auto current = c10::cuda::getCurrentCUDAStream(c.index);
  Cuda::wait(c.side, current);  // the side stream sees the copied batch
  std::vector<torch::Tensor> out;
  if (call < warmup_) {
    {
      c10::cuda::CUDAStreamGuard guard(c.side);
      out = fn_(static_);
    }
    Cuda::wait(current, c.side);
    return out;
  }
  // The capture: the whole step recorded on the side stream into a private memory pool.
  c10::cuda::getCurrentCUDAStream(c.index).synchronize();
  c10::cuda::CUDACachingAllocator::emptyCache();  // leave the graph's pool the most room
  {
    NoAutocastCache no_cache;
    c10::cuda::CUDAStreamGuard guard(c.side);
    // Dropout's philox offsets advance on every replay only for generators registered
    // with the graph; LibTorch 2.11's capture_begin registers the default one itself,
    // newer versions leave it to the caller (registering twice is harmless).
    c.graph.register_generator_state(at::cuda::detail::getDefaultCUDAGenerator(c.index));
    // Thread-local mode: the device prefetcher's thread keeps copying the next batch on
    // its own stream (and synchronizing it) during the capture; in the default global
    // mode those calls would invalidate the capture.
    c.graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      outputs_ = fn_(static_);
    } catch (const std::exception& e) {
      try {
        c.graph.capture_end();
      } catch (const std::exception&) {  // the capture is already invalid; its error is below
      }
      throw Error(std::string("cuda_graph: capturing the training step failed (a captured step may not "
                              "synchronize with the host: .item(), printing a tensor, data-dependent shapes; "
                              "run without cuda_graph): ") +
                  e.what());
    }
    c.graph.capture_end();
  }
  Cuda::wait(current, c.side);
  c.captured = true;
  c.graph.replay();  // the capture ran nothing: this is the step's work
  return outputs_;
#else
  return fn_(static_);
#endif
}

FusedAdamW& enable_cuda_graph(torch::optim::Optimizer& optimizer, const torch::Device& device, int64_t accum_steps,
                              bool distributed) {
  if (!device.is_cuda())
    throw Error("config key 'cuda_graph': CUDA graphs need a CUDA device; this run's device is " + device.str());
  if (!cuda_graphs_built())
    throw Error("config key 'cuda_graph': this build has no CUDA graph support (built without the CUDA headers)");
  if (accum_steps != 1)
    throw Error("config key 'cuda_graph' does not combine with accum_steps = " + std::to_string(accum_steps) +
                " (only 1)");
  if (distributed)
    throw Error("config key 'cuda_graph' does not combine with several processes (the gradient all-reduce runs "
                "outside a graph)");
  auto* adamw = dynamic_cast<FusedAdamW*>(&optimizer);
  if (adamw == nullptr)
    throw Error("config key 'cuda_graph' needs optimizer_configs.optimizer 'adamw' (its fused update reads the "
                "learning rate from the device); the configured optimizer has no graph-safe update");
  adamw->set_graph_safe(true);
  return *adamw;
}

GraphedStep::Fn capturable_train_step(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> params,
                                      std::optional<double> max_grad_norm, MicrobatchLossFn loss_fn) {
  return [&optimizer, params = std::move(params), max_grad_norm, loss_fn = std::move(loss_fn)](
             const dataset::Batch& batch) {
    optimizer.zero_grad();
    auto [loss, outputs] = loss_fn(batch);
    loss.backward();
    auto grad_norm = clip_or_measure_grads(params, max_grad_norm);
    optimizer.step();
    return std::vector<torch::Tensor>{loss.detach(), outputs.detach(), grad_norm};
  };
}

}  // namespace scenic::train
