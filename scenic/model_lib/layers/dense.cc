// Dense with a choice of CPU GEMM library; see dense.h.
#include "scenic/model_lib/layers/dense.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <atomic>
#include <cstring>
#include <optional>
#include <sstream>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

std::atomic<GemmBackend> g_backend{GemmBackend::kAten};

// oneDNN's fp32 inner product, registered by libtorch_cpu when built with MKLDNN:
// mkldnn::_linear_pointwise(Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars,
// str? algorithm) -> X W^T + B.
const c10::OperatorHandle* linear_pointwise_op() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
  return op ? &*op : nullptr;
}

// a [M, K] (any strides) times b [N, K]^T (+ bias [N]) -> [M, N], on oneDNN. Called
// boxed: the schema above is the contract, not the C++ signature of the kernel.
torch::Tensor onednn_mm_t(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias) {
  std::vector<c10::IValue> stack;
  stack.reserve(6);
  stack.emplace_back(a);
  stack.emplace_back(b);
  stack.emplace_back(bias.defined() ? c10::IValue(bias) : c10::IValue());
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<c10::Scalar>>());
  stack.emplace_back(c10::IValue());
  linear_pointwise_op()->callBoxed(&stack);
  return std::move(stack[0]).toTensor();
}

// x [M, K], w [N, K], b [N] or empty ([0]: no bias; autograd functions take no undefined
// tensors). All three products on oneDNN; the weight
// gradient reads dY^T and X^T copied to row-major first (faster than strided views
// there: 92 against 52 G multiply-adds/s on Mixer-S's channel MLP).
class OneDnnLinearFunction : public torch::autograd::Function<OneDnnLinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w, const torch::Tensor& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["has_bias"] = b.numel() > 0;
    return onednn_mm_t(x, w, b.numel() > 0 ? b : torch::Tensor());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto g = grads[0].contiguous();  // [M, N]
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = onednn_mm_t(g, w.t(), torch::Tensor());  // dY W: [M, K]
    if (ctx->needs_input_grad(1))
      gw = onednn_mm_t(g.t().contiguous(), x.t().contiguous(), torch::Tensor());  // dY^T X: [N, K]
    if (ctx->needs_input_grad(2) && ctx->saved_data["has_bias"].toBool()) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

bool is_cpu_float(const torch::Tensor& t) {
  return !t.defined() || (t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.layout() == torch::kStrided);
}

}  // namespace

void set_gemm_backend(GemmBackend backend) {
  if (backend == GemmBackend::kOneDnn && !onednn_linear_available())
    throw Error("gemm_backend 'onednn': this LibTorch has no oneDNN (mkldnn::_linear_pointwise) operator");
  g_backend.store(backend);
}

GemmBackend gemm_backend() { return g_backend.load(); }

std::string cpu_vendor() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return "";
  char v[13] = {};
  std::memcpy(v, &ebx, 4);  // the vendor string is EBX, EDX, ECX of leaf 0
  std::memcpy(v + 4, &edx, 4);
  std::memcpy(v + 8, &ecx, 4);
  return v;
#else
  return "";
#endif
}

GemmBackend auto_gemm_backend(const std::string& vendor, bool onednn_available) {
  return vendor == "AuthenticAMD" && onednn_available ? GemmBackend::kOneDnn : GemmBackend::kAten;
}

const char* gemm_backend_name(GemmBackend backend) { return backend == GemmBackend::kOneDnn ? "onednn" : "aten"; }

GemmBackend parse_gemm_backend(const std::string& value, const std::string& key) {
  if (value == "auto") return auto_gemm_backend(cpu_vendor(), onednn_linear_available());
  if (value == "aten") return GemmBackend::kAten;
  if (value == "onednn") {
    if (!onednn_linear_available())
      throw Error("config key '" + key + "': 'onednn' needs a LibTorch built with oneDNN (MKLDNN), this one is not");
    return GemmBackend::kOneDnn;
  }
  throw Error("config key '" + key + "': expected 'auto', 'aten' or 'onednn', got '" + value + "'");
}

bool onednn_linear_available() { return at::hasMKLDNN() && linear_pointwise_op() != nullptr; }

torch::Tensor onednn_dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (!onednn_linear_available()) throw Error("onednn_dense: this LibTorch has no oneDNN operator");
  if (!is_cpu_float(x) || !is_cpu_float(w) || !is_cpu_float(b))
    throw Error("onednn_dense: needs float32 CPU tensors");
  if (x.dim() < 1 || w.dim() != 2 || x.size(-1) != w.size(1) || (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0))))
    throw Error("dense: input [..., " + std::to_string(x.dim() ? x.size(-1) : 0) + "] does not match the weight [" +
                std::to_string(w.size(0)) + ", " + std::to_string(w.dim() > 1 ? w.size(1) : 0) + "]" +
                (b.defined() ? " and bias [" + std::to_string(b.size(0)) + "]" : std::string()));
  auto x2 = x.reshape({-1, x.size(-1)});
  if (x2.size(0) == 0) return torch::linear(x, w, b);  // nothing to multiply
  auto y = OneDnnLinearFunction::apply(x2, w, b.defined() ? b : torch::empty({0}, w.options()));
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return y.view(shape);
}

torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  // Under CPU autocast (autocast_dtype: bfloat16) torch::linear is what casts to bf16.
  if (g_backend.load(std::memory_order_relaxed) == GemmBackend::kOneDnn && is_cpu_float(x) && is_cpu_float(w) &&
      is_cpu_float(b) && !at::autocast::is_autocast_enabled(at::kCPU))
    return onednn_dense(x, w, b);
  return torch::linear(x, w, b);
}

torch::Tensor dense_add(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b,
                        const torch::Tensor& residual) {
  if (!residual.defined()) return dense(x, w, b);
  if (x.dim() >= 1 && w.dim() == 2) {
    auto out = x.sizes().vec();
    out.back() = w.size(0);
    if (residual.sizes() != c10::IntArrayRef(out)) {
      std::ostringstream msg;
      msg << "dense_add: residual " << residual.sizes() << " does not match the product's shape "
          << c10::IntArrayRef(out) << " (input " << x.sizes() << ", weight " << w.sizes() << ")";
      throw Error(msg.str());
    }
  }
  const bool fold = g_backend.load(std::memory_order_relaxed) == GemmBackend::kAten && is_cpu_float(x) &&
                    is_cpu_float(w) && is_cpu_float(b) && is_cpu_float(residual) &&
                    !at::autocast::is_autocast_enabled(at::kCPU) && x.dim() >= 1 && w.dim() == 2 &&
                    x.size(-1) == w.size(1) && (!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0))) &&
                    x.numel() > 0;
  if (!fold) return dense(x, w, b) + residual;
  const int64_t n = w.size(0);
  // A fresh accumulator: residual + b, or a copy of the residual (never the residual
  // itself, which the in-place product would overwrite).
  auto acc = b.defined() ? residual.reshape({-1, n}) + b : residual.reshape({-1, n}).clone();
  acc.addmm_(x.reshape({-1, x.size(-1)}), w.t());
  return acc.reshape(residual.sizes());
}

}  // namespace scenic::model
