// Prefetching batches onto the accelerator: Scenic's `dataset_configs.prefetch_to_device`
// (flax.jax_utils.prefetch_to_device) for LibTorch, with PyTorch's `pin_memory`.
//
// On a CUDA device a background thread takes each host batch, copies it into
// page-locked (pinned) memory when `pin_memory` is on, and copies it to the GPU with
// non-blocking copies on a side CUDA stream, `prefetch_to_device` batches ahead of the
// step that reads it (the training step, and the forward of the evaluation passes in
// train_utils.h, segmentation_trainer.h and the transfer trainer), so the host-to-device
// transfer overlaps the step instead of stalling it (an unpinned copy is synchronous whatever `non_blocking` says). The consumer's
// stream is recorded on each tensor (Tensor::record_stream), so the caching allocator
// never hands a batch's memory to the side stream while the step still reads it.
//
// On the CPU there is nothing to transfer: the host iterator is returned as it is, and
// both keys are accepted and ignored (a GPU config runs unchanged on a laptop, as
// PyTorch's DataLoader ignores pin_memory without CUDA; a warning says so when either
// key was set explicitly).
//
// Config keys (under dataset_configs):
//   prefetch_to_device: batches on the device ahead of the step (int >= 0; default 2
//                       on CUDA, Scenic's ImageNet value). 0 copies in the step's thread.
//   pin_memory:         pin host batches before the copy (bool; default true on CUDA).
#pragma once

#include <torch/types.h>

#include <memory>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"

namespace scenic::train {

struct DevicePrefetchOptions {
  int64_t depth = 0;        // batches ahead on the device (prefetch_to_device)
  bool pin_memory = false;  // page-locked host staging before the copy
};

// Reads and checks the two keys for `device`; throws scenic::Error naming the key on a
// negative depth (wrong types are reported by ConfigDict).
DevicePrefetchOptions device_prefetch_options(const common::ConfigDict& config, const torch::Device& device);

// Wraps `host` so that next() returns batches already on `device` (same keys, values
// and order). CPU devices get `host` back unchanged. On a CUDA device in a build
// without CUDA support, throws scenic::Error.
std::unique_ptr<dataset::BatchIterator> prefetch_to_device(std::unique_ptr<dataset::BatchIterator> host,
                                                           const torch::Device& device,
                                                           const DevicePrefetchOptions& options);

}  // namespace scenic::train
