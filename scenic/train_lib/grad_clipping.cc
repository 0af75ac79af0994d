#include "scenic/train_lib/grad_clipping.h"

#include <torch/torch.h>

#include <sstream>

#include "scenic/train_lib/optimizers.h"

namespace scenic::train {

std::optional<GradClip> read_grad_clip(const common::ConfigDict& config, const std::string& path) {
  if (!config.has(path)) return std::nullopt;
  const auto method = config.get_optional<std::string>(path + ".clip_method");
  const auto value = config.get_optional<double>(path + ".clip_value");
  if (!method || !value) return std::nullopt;  // Scenic: both are needed to clip
  GradClip clip;
  clip.value = *value;
  if (*method == "clip_by_global_norm") {
    clip.method = ClipMethod::kGlobalNorm;
  } else if (*method == "clip") {
    clip.method = ClipMethod::kValue;
  } else if (*method == "adaptive_grad_clip") {
    clip.method = ClipMethod::kAdaptive;
  } else if (*method == "clip_by_block_rms") {
    clip.method = ClipMethod::kBlockRms;
  } else {
    const std::vector<std::string> methods = {"clip_by_global_norm", "clip", "adaptive_grad_clip",
                                              "clip_by_block_rms"};
    const std::string hint = common::closest_match(*method, methods);
    throw Error("config key '" + path + ".clip_method': unknown method '" + *method + "'" +
                (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; supported: clip_by_global_norm, clip, adaptive_grad_clip, clip_by_block_rms");
  }
  if (!(clip.value >= 0)) {
    std::ostringstream ss;
    ss << "config key '" << path << ".clip_value' must be >= 0, got " << clip.value;
    throw Error(ss.str());
  }
  return clip;
}

void clip_grad_value(const std::vector<torch::Tensor>& params, double max_abs) {
  torch::NoGradGuard no_grad;
  for (auto& g : grads_of(params)) g.clamp_(-max_abs, max_abs);
}

torch::Tensor unitwise_norm(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  torch::Tensor sq;
  if (x.squeeze().dim() <= 1) {
    sq = x.square().sum();
  } else if (x.dim() == 3) {
    sq = x.square().sum(0, /*keepdim=*/true);
  } else if (x.dim() == 2 || x.dim() == 4 || x.dim() == 5) {
    std::vector<int64_t> dims;
    for (int64_t d = 1; d < x.dim(); ++d) dims.push_back(d);
    sq = x.square().sum(dims, /*keepdim=*/true);
  } else {
    std::ostringstream ss;
    ss << "adaptive_grad_clip supports tensors of 1 to 5 dims, got shape " << x.sizes();
    throw Error(ss.str());
  }
  return sq.sqrt().expand_as(x);
}

void adaptive_grad_clip(const std::vector<torch::Tensor>& params, double clipping, double eps) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    if (!p.defined() || !p.grad().defined()) continue;
    torch::Tensor& g = p.mutable_grad();
    const torch::Tensor g_norm = unitwise_norm(g);
    const torch::Tensor max_norm = unitwise_norm(p.detach()).clamp_min(eps) * clipping;
    const torch::Tensor clipped = g * (max_norm / g_norm.clamp_min(1e-6));
    g.copy_(torch::where(g_norm < max_norm, g, clipped));
  }
}

void clip_grad_block_rms(const std::vector<torch::Tensor>& params, double threshold) {
  torch::NoGradGuard no_grad;
  for (auto& g : grads_of(params)) {
    g.div_(torch::clamp_min(g.square().mean().sqrt() / threshold, 1.0));
  }
}

void apply_grad_clip(const GradClip& clip, const std::vector<torch::Tensor>& params) {
  switch (clip.method) {
    case ClipMethod::kGlobalNorm:
      clip_grad_global_norm(params, clip.value);
      return;
    case ClipMethod::kValue:
      clip_grad_value(params, clip.value);
      return;
    case ClipMethod::kAdaptive:
      adaptive_grad_clip(params, clip.value);
      return;
    case ClipMethod::kBlockRms:
      clip_grad_block_rms(params, clip.value);
      return;
  }
}

void prepare_gradients(const GradClip& clip, const CoupledDecay& decay,
                       std::vector<torch::optim::OptimizerParamGroup>& groups) {
  {
    torch::NoGradGuard no_grad;
    for (const auto& [p, rate] : decay)
      if (p.grad().defined() && rate != 0) p.mutable_grad().add_(p.detach(), rate);
  }
  std::vector<torch::Tensor> params;
  for (auto& group : groups) params.insert(params.end(), group.params().begin(), group.params().end());
  apply_grad_clip(clip, params);
}

}  // namespace scenic::train
