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
#pragma once

#include <torch/optim/adamw.h>

namespace scenic::train {

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace scenic::train
