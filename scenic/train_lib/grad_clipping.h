// Gradient clipping from the optimizer config (Scenic's `grad_clip`).
//
// Mirrors the `grad_clip` part of Scenic's optimizers.get_optimizer:
// `optimizer_configs.grad_clip: {clip_method, clip_value}` (legacy: top-level
// `grad_clip_configs`) puts one optax transform before the optimizer:
//   clip_by_global_norm  g * clip_value / ||g||_global when ||g||_global >= clip_value
//   clip                 g clamped to [-clip_value, clip_value] (optax.clip)
//   adaptive_grad_clip   optax.adaptive_grad_clip(clip_value, eps=1e-3): unit-wise,
//                        g_u * max_u / ||g_u|| where ||g_u|| > max_u = clip_value *
//                        max(||w_u||, 1e-3)
//   clip_by_block_rms    g / max(1, rms(g) / clip_value), per tensor
// As in Scenic, clipping is skipped when either key is unset; an unknown method is an
// error here (Scenic only logs it).
//
// Units for adaptive_grad_clip follow optax's rules mapped to LibTorch's layouts
// (optax assumes flax's [in, out] kernels and HWIO convs): a tensor whose squeeze has
// <= 1 dim is one unit; 2-, 4- and 5-D tensors ([out, in], OIHW, OIDHW) have one unit
// per output slice along dim 0 (optax: per slice along the last axis); 3-D tensors
// reduce dim 0, as optax does (flax multi-head kernels and [1, N, D] embeddings).
//
// `WithGradClip<Base>` is a torch optimizer that applies the clip (and, for sgd,
// Scenic's coupled weight decay, which comes before the clip in Scenic's chain) inside
// `step()`, so a trainer only calls `optimizer.step()`. Frozen parameters are not in
// the optimizer, so the global norm covers trainable parameters only (Scenic's global
// norm also sees frozen parameters' gradients; we never compute those).
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"

namespace scenic::train {

enum class ClipMethod { kGlobalNorm, kValue, kAdaptive, kBlockRms };

struct GradClip {
  ClipMethod method = ClipMethod::kGlobalNorm;
  double value = 0;
};

// Reads `<path>.clip_method` and `<path>.clip_value` (path e.g. "optimizer_configs.grad_clip").
// nullopt when `path` is absent or either key is unset. Throws scenic::Error naming the
// key for an unknown method or a negative value.
std::optional<GradClip> read_grad_clip(const common::ConfigDict& config, const std::string& path);

// In-place clips of the gradients of `params` (parameters without a gradient are
// skipped). All run on the device without synchronizing.
void clip_grad_value(const std::vector<torch::Tensor>& params, double max_abs);
void adaptive_grad_clip(const std::vector<torch::Tensor>& params, double clipping,
                        double eps = 1e-3);
void clip_grad_block_rms(const std::vector<torch::Tensor>& params, double threshold);
void apply_grad_clip(const GradClip& clip, const std::vector<torch::Tensor>& params);

// The per-unit L2 norm of `x` broadcast to x's shape (see the layout note above).
torch::Tensor unitwise_norm(const torch::Tensor& x);

// Weight decay added to a parameter's gradient before the clip: (param, rate).
using CoupledDecay = std::vector<std::pair<torch::Tensor, double>>;

// Adds the coupled decay, then clips every gradient of `groups`.
void prepare_gradients(const GradClip& clip, const CoupledDecay& decay,
                       std::vector<torch::optim::OptimizerParamGroup>& groups);

template <typename Base>
class WithGradClip : public Base {
 public:
  template <typename... Args>
  explicit WithGradClip(GradClip clip, CoupledDecay decay, Args&&... base_args)
      : Base(std::forward<Args>(base_args)...), clip_(clip), decay_(std::move(decay)) {}

  torch::Tensor step(torch::optim::Optimizer::LossClosure closure = nullptr) override {
    // A closure would recompute the gradients after they were clipped.
    if (closure) throw Error("optimizers with grad_clip from the config take no step closure");
    prepare_gradients(clip_, decay_, this->param_groups());
    return Base::step();
  }
  const GradClip& grad_clip() const { return clip_; }

 private:
  GradClip clip_;
  CoupledDecay decay_;
};

}  // namespace scenic::train
