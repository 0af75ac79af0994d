// AdamW as one fused kernel per parameter group (issue 9: "fused or foreach optimizer
// steps").
//
// torch::optim::AdamW's C++ step runs about eight ATen ops per parameter tensor (decay,
// two moment updates, sqrt, divide, add, addcdiv) through the dispatcher, each a pass
// over memory; for a small ViT (60 tensors) that is ~500 small ops per step. FusedAdamW
// keeps AdamW's options, parameter state (AdamWParamState: step, exp_avg, exp_avg_sq,
// max_exp_avg_sq) and serialization, so checkpoints written by either load into the
// other, and replaces only step(): ATen's _fused_adamw_ (the kernel behind PyTorch's
// `AdamW(fused=True)`, on CPU and CUDA) updates every parameter of a group in one call,
// one pass per tensor. Same arithmetic as AdamW::step to float rounding (the first
// moment is updated as a lerp). Gradients and moments in another memory layout than
// their parameter (a channels-last weight, a moment loaded from a checkpoint) are
// brought to the parameter's layout first. Sparse gradients, mixed devices or dtypes in
// one group, non-float and non-dense parameters fall back to AdamW::step.
//
// Graph-safe mode (set_graph_safe(true), for CUDA graph capture of the training step,
// cuda_graph_step.h): a captured step() must not read host values that change between
// replays. Each group's learning rate then lives in a float32 tensor on the parameters'
// device, which load_learning_rates() fills from the group's options (call it before
// every step or replay, outside the capture), and each parameter's step count in a
// float32 device tensor that step() increments on the device. The host counts in the
// parameter states are brought up to date from those tensors by save() (so checkpoints
// hold the true count) and sync_step_counts(); load() drops the device counts, which
// the next step rebuilds from the loaded state. The float32 learning rate rounds a
// double one (1 ulp of float32); otherwise the update is the same kernel, same values.
// A group that cannot be fused is an error in this mode (no graph-safe fallback).
#pragma once

#include <torch/optim/adamw.h>

#include <unordered_map>
#include <vector>

namespace scenic::train {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;

  void set_graph_safe(bool on);
  bool graph_safe() const { return graph_safe_; }
  // Graph-safe mode: each group's current lr into its device tensor (made on first use).
  void load_learning_rates();
  // Graph-safe mode: the host step counts from the device ones (a device sync).
  void sync_step_counts() const;

  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  bool graph_safe_ = false;
  std::vector<torch::Tensor> lr_tensors_;  // per group, graph-safe mode
  std::unordered_map<const void*, torch::Tensor> step_tensors_;  // per parameter, graph-safe mode
};

}  // namespace scenic::train
