#include "scenic/train_lib/device_prefetch.h"

#include <optional>
#include <string>
#include <utility>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"
#include "scenic/dataset_lib/prefetch.h"

// The CUDA path needs c10_cuda's stream API, present when torch's CMake config found
// the CUDA toolkit (it is on the build machine even without a GPU).
#if __has_include(<c10/cuda/CUDAStream.h>) && __has_include(<cuda_runtime_api.h>)
#define SCENIC_HAVE_CUDA_STREAMS 1
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace scenic::train {
namespace {
constexpr const char* kDepthKey = "dataset_configs.prefetch_to_device";
constexpr const char* kPinKey = "dataset_configs.pin_memory";

#ifdef SCENIC_HAVE_CUDA_STREAMS
// Host batches -> (pinned) -> device copies on a side stream, on the prefetch thread.
class CudaPrefetchIterator : public dataset::BatchIterator {
 public:
  CudaPrefetchIterator(std::unique_ptr<dataset::BatchIterator> host, const torch::Device& device,
                       const DevicePrefetchOptions& options)
      : host_(std::move(host)),
        device_(torch::kCUDA, device.has_index() ? device.index() : c10::cuda::current_device()),
        pin_memory_(options.pin_memory),
        copy_stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index())),
        queue_([this] { return copy_next(); }, options.depth) {}

  std::optional<dataset::Batch> next() override {
    auto batch = queue_.next();
    if (!batch) return batch;
    // The step reads these on its own stream; tell the allocator so it waits for that
    // stream before reusing the memory (the tensors were allocated on copy_stream_).
    const auto compute = c10::cuda::getCurrentCUDAStream(device_.index());
    for (auto& [_, t] : *batch) {
      if (t.is_cuda()) t.record_stream(compute);
    }
    return batch;
  }

 private:
  // Runs on the prefetch thread (or in next() when depth is 0).
  std::optional<dataset::Batch> copy_next() {
    auto batch = host_->next();
    if (!batch) return std::nullopt;
    c10::cuda::CUDAStreamGuard guard(copy_stream_);
    dataset::Batch out;
    for (const auto& [key, t] : *batch) {
      torch::Tensor src = t;
      if (pin_memory_ && src.is_cpu() && !src.is_pinned()) src = src.pin_memory();
      out[key] = src.to(device_, /*non_blocking=*/true);
    }
    // Only this thread waits: the batch is complete on the device before it is queued,
    // so the consumer needs no event.
    copy_stream_.synchronize();
    return out;
  }

  std::unique_ptr<dataset::BatchIterator> host_;
  const torch::Device device_;
  const bool pin_memory_;
  c10::cuda::CUDAStream copy_stream_;
  dataset::PrefetchIterator queue_;  // last: its thread uses the members above
};
#endif

}  // namespace

DevicePrefetchOptions device_prefetch_options(const common::ConfigDict& config, const torch::Device& device) {
  const bool cuda = device.is_cuda();
  const bool set_explicitly = config.has(kDepthKey) || config.has(kPinKey);
  DevicePrefetchOptions options;
  options.depth = config.get<int64_t>(kDepthKey, cuda ? 2 : 0);
  if (options.depth < 0)
    throw Error(std::string("config key '") + kDepthKey + "' must be >= 0, got " + std::to_string(options.depth));
  options.pin_memory = config.get<bool>(kPinKey, cuda);
  if (cuda) return options;
  if (set_explicitly && (options.depth > 0 || options.pin_memory))
    SCENIC_LOG_WARNING << kDepthKey << " / " << kPinKey << " are ignored on device " << device.str()
                       << " (batches are already in host memory)";
  return DevicePrefetchOptions{};
}

std::unique_ptr<dataset::BatchIterator> prefetch_to_device(std::unique_ptr<dataset::BatchIterator> host,
                                                           const torch::Device& device,
                                                           const DevicePrefetchOptions& options) {
  if (options.depth < 0) throw Error("prefetch_to_device: depth must be >= 0, got " + std::to_string(options.depth));
  if (!device.is_cuda()) return host;
#ifdef SCENIC_HAVE_CUDA_STREAMS
  return std::make_unique<CudaPrefetchIterator>(std::move(host), device, options);
#else
  throw Error("prefetch_to_device: device " + device.str() + " needs a build with CUDA (torch found no CUDA toolkit)");
#endif
}

}  // namespace scenic::train
