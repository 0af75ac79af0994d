// Multi-process data parallelism on LibTorch's c10d: process-group set-up and the
// collectives a trainer needs.
//
// Mirrors what Scenic gets from `jax.pmap` over axis 'batch' and its train_utils:
//   - identical initial parameters everywhere (Scenic replicates one initialization;
//     here rank 0's parameters and buffers are broadcast: `broadcast_parameters`);
//   - `grad = pmean(grad, 'batch')` (classification_trainer.train_step): the bucketed,
//     backward-overlapped all-reduce of gradient_all_reducer.h, averaged over processes;
//   - `psum` of metric (sum, normalizer) pairs (psum_metric_normalizer): `all_reduce_sum`;
//   - `sync_model_state_across_replicas` (pmean of BatchNorm statistics before
//     evaluation and checkpointing): `average_buffers`;
//   - `barrier_across_hosts`: `barrier`.
// LibTorch has no C++ DistributedDataParallel, so this is built directly on c10d:
// rendezvous through a TCPStore (rank 0 serves it, or torchrun's agent does), then
// ProcessGroupGloo on CPU or ProcessGroupNCCL on CUDA (one process per GPU, LOCAL_RANK
// picks it). Who is who comes from the launcher's variables (distributed_env.h).
//
// Config keys (all optional):
//   distributed.backend      auto | gloo | nccl   (auto: nccl on CUDA, gloo on CPU)
//   distributed.timeout_s    300  rendezvous and collective timeout: a peer that died or
//                                 hangs makes the others fail with DistributedError
//                                 after at most this long instead of waiting forever
//   distributed.bucket_mb    25   gradient bucket size (DDP's default)
//   distributed.port         MASTER_PORT when the launcher gives none (Slurm, Open MPI)
//   distributed.master_addr  MASTER_ADDR for Open MPI jobs that export none
//
// With one process (no launcher variables) there is no process group and every
// function here is a no-op, so a trainer calls them unconditionally.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/train_lib/distributed_env.h"

namespace c10d {
class Backend;
class Work;
}  // namespace c10d

namespace scenic::train {

// A collective or the rendezvous failed: a peer died, hung past the timeout, or the
// network is broken. main() prints it and exits non-zero, like any scenic::Error.
class DistributedError : public Error {
 public:
  using Error::Error;
};

struct DistributedOptions {
  std::string backend = "auto";  // auto | gloo | nccl
  double timeout_s = 300;
  double bucket_mb = 25;
  RendezvousDefaults rendezvous;  // distributed.port / distributed.master_addr
};

// Reads the `distributed.*` keys above (records them as used, with their defaults).
DistributedOptions distributed_options_from_config(const common::ConfigDict& config);

class DistributedContext {
 public:
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // 0 when the launcher does not say
  torch::Device device{torch::kCPU};
  std::string backend;  // "gloo" / "nccl"; empty with one process
  std::chrono::milliseconds timeout{300000};
  int64_t bucket_bytes = 25LL << 20;

  bool is_distributed() const { return world_size > 1; }
  // Rank 0 alone writes checkpoints, summaries and logs.
  bool is_lead() const { return rank == 0; }
  // The process group; throws scenic::Error with one process.
  c10d::Backend& process_group() const;

  // One process on `device`.
  static std::shared_ptr<DistributedContext> single(torch::Device device = torch::kCPU);

  ~DistributedContext();
  struct Impl;  // the store and the c10d backend (distributed.cc)
  std::shared_ptr<Impl> impl;
};

// Joins the job described by `env` (a world of 1: returns `single(device)`).
// `device` is what the config asks for (train_utils' get_device): with several
// processes a CUDA request becomes cuda:LOCAL_RANK. Blocks until every rank has
// arrived at the rendezvous, at most `timeout_s`.
std::shared_ptr<DistributedContext> init_distributed(const DistributedOptions& options, const DistributedEnv& env,
                                                     torch::Device device);
// The same from the config (`distributed.*`, `device`) and this process's environment.
std::shared_ptr<DistributedContext> init_distributed_from_config(const common::ConfigDict& config);

// `batch_size` is global, as in Scenic: each process loads global / world_size
// examples a step. Throws scenic::Error naming `key` when it does not divide.
int64_t per_process_batch_size(int64_t global_batch_size, const DistributedContext& ctx,
                               const std::string& key = "batch_size");

// Parameters and buffers of `module` from rank 0 to every rank (call once after
// building the network and restoring a checkpoint; rank 0's values win).
void broadcast_parameters(torch::nn::Module& module, const DistributedContext& ctx);

// Floating-point buffers (BatchNorm running mean/var) replaced by their mean over
// processes: Scenic's sync_model_state_across_replicas, before evaluation and before
// checkpointing. Integer buffers (num_batches_tracked) are equal on every rank and kept.
void average_buffers(torch::nn::Module& module, const DistributedContext& ctx);

// Sums each tensor over processes, in place (one coalesced all-reduce per dtype).
// For metric (sum, normalizer) pairs: sum them over steps locally, all-reduce once,
// then divide — the psum of Scenic's psum_metric_normalizer. Every rank must pass
// tensors of the same shapes and dtypes in the same order.
void all_reduce_sum(std::vector<torch::Tensor>& tensors, const DistributedContext& ctx);

// True when `flag` is true on any process (e.g. "a preemption signal arrived"), so that
// all ranks stop at the same step and none is left waiting in a collective.
bool any_process(bool flag, const DistributedContext& ctx);

// Returns once every rank has called it (or throws DistributedError after the timeout).
void barrier(const DistributedContext& ctx);

// The error every collective here throws: "distributed OP failed on rank R of N
// (backend): WHAT (another process died, or did not reach this collective within
// distributed.timeout_s=T s; see its log)". `what` is cut at its first line.
DistributedError collective_error(const DistributedContext& ctx, const std::string& op, const std::string& what);

// Waits for an asynchronous c10d operation. Gloo: on the host, at most ctx.timeout.
// NCCL: the current CUDA stream waits (no host synchronization); ProcessGroupNCCL's
// watchdog enforces the timeout. A failure throws collective_error(ctx, op, ...).
void wait_for(c10d::Work& work, const DistributedContext& ctx, const std::string& op);

}  // namespace scenic::train
