// CUDA graph capture of a whole training step (issue 9: "on CUDA ... CUDA graph capture
// of the whole training step as an option"): config key `cuda_graph: true` in the
// classification trainer and in `scenic bench`.
//
// A small model's step on a fast GPU is a few hundred kernel launches that the CPU
// issues one by one; replaying them as one graph removes that host work. This follows
// PyTorch's "whole network capture" recipe, in C++:
//   - The step reads its batch from static device tensors: every call copies the new
//     batch into them (same keys, shapes and dtypes on every call; anything else throws,
//     naming the key and both shapes).
//   - The first `warmup` calls run the step eagerly on a side stream (what a step builds
//     lazily, such as the optimizer's moments and cuBLAS's workspaces, is built then).
//   - The next call captures the step on that stream (its gradients, set to None at the
//     step's start, and every intermediate are then allocated from the graph's private
//     memory pool) and replays it once, since a capture records kernels without running
//     them. Every later call replays it: forward, backward, clipping and update in one
//     launch.
//   - The returned tensors (loss, logits, gradient norm: whatever the step returns) are
//     static after the capture: each replay overwrites them, so read or copy them
//     before the next call.
// A captured step may not synchronize with the host (.item(), data-dependent shapes),
// nor read host values that change between steps: the optimizer must read its learning
// rate from the device (FusedAdamW's graph-safe mode, which enable_cuda_graph sets up).
// Dropout's random numbers stay fresh on every replay (PyTorch's graph-safe philox
// offsets for the default CUDA generator).
//
// On the CPU there is nothing to capture: every call copies the batch into the static
// inputs and runs the step eagerly (the tests use this). The trainer refuses
// `cuda_graph` on a CPU device.
//
// Status: built and unit-tested on a machine without a GPU (the CPU path and the
// graph-safe optimizer); the CUDA tests (cuda_graph_step_test.cc, the e2e test) skip
// there and have not yet run on a GPU.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/train_lib/grad_accumulation.h"

namespace torch::optim {
class Optimizer;
}

namespace scenic::train {

class FusedAdamW;

// Whether this build has the CUDA graph API (it found the CUDA headers; true on the
// build machine even without a GPU).
bool cuda_graphs_built();

class GraphedStep {
 public:
  using Fn = std::function<std::vector<torch::Tensor>(const dataset::Batch&)>;
  // `fn`: one step on the batch it is given; `warmup` >= 1 eager calls come first.
  GraphedStep(Fn fn, const torch::Device& device, int64_t warmup = 3);
  ~GraphedStep();
  GraphedStep(const GraphedStep&) = delete;
  GraphedStep& operator=(const GraphedStep&) = delete;

  std::vector<torch::Tensor> operator()(const dataset::Batch& batch);
  // True once the step runs as a graph (CUDA, after the warm-up calls).
  bool captured() const;
  int64_t calls() const { return calls_; }

 private:
  void copy_in(const dataset::Batch& batch);

  Fn fn_;
  torch::Device device_;
  int64_t warmup_;
  int64_t calls_ = 0;
  dataset::Batch static_;
  std::vector<torch::Tensor> outputs_;  // the graph's outputs, after the capture
  struct Cuda;                          // the graph and its stream
  std::unique_ptr<Cuda> cuda_;
};

// The checks behind `cuda_graph: true`: a CUDA device, one process, no gradient
// accumulation, and an optimizer with a graph-safe update (adamw, FusedAdamW), which
// it puts in graph-safe mode and returns; call its load_learning_rates() before every
// step. Throws scenic::Error naming the config key otherwise.
FusedAdamW& enable_cuda_graph(torch::optim::Optimizer& optimizer, const torch::Device& device,
                              int64_t accum_steps = 1, bool distributed = false);

// The training step that the trainer and `scenic bench` capture: gradients set to None
// (so the captured backward allocates them in the graph's pool), `loss_fn` on the batch,
// backward, clip_or_measure_grads, the optimizer's update. Returns {loss, outputs,
// gradient norm before clipping}, detached. `optimizer` must outlive the step.
GraphedStep::Fn capturable_train_step(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> params,
                                      std::optional<double> max_grad_norm, MicrobatchLossFn loss_fn);

}  // namespace scenic::train
