// ProcessGroupNCCL for distributed.cc, in its own translation unit because it needs
// nccl.h (from the nvidia-nccl wheel that torch depends on; CMakeLists.txt adds its
// include directory to this file only) and CUDA headers. A build without them gets a
// stub that says so at run time.
#include <torch/types.h>

#include <chrono>
#include <string>

#include "scenic/common_lib/errors.h"

#if __has_include(<nccl.h>) && __has_include(<cuda_runtime_api.h>)
#define SCENIC_HAVE_NCCL 1
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#else
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

namespace scenic::train {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int world_size, std::chrono::milliseconds timeout,
                                                    torch::Device device) {
#ifdef SCENIC_HAVE_NCCL
  // NCCL works on the current CUDA device; bind it so communicators are created
  // eagerly on this process's GPU (one process per GPU).
  c10::cuda::set_device(device.index());
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  // ProcessGroupNCCL's watchdog aborts the communicators of a collective that runs
  // past this (TORCH_NCCL_ASYNC_ERROR_HANDLING, on by default), so a dead peer ends
  // the job instead of hanging it.
  opts->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
  pg->setBoundDeviceId(device);
  pg->eagerConnectSingleDevice(device);
  return pg;
#else
  (void)store, (void)rank, (void)world_size, (void)timeout, (void)device;
  throw Error("this build of scenic has no NCCL (nccl.h was not found at build time); use distributed.backend: gloo");
#endif
}

}  // namespace scenic::train
