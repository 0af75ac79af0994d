#include "scenic/common_lib/flop_counter.h"

#include <ATen/core/ivalue.h>

#include <algorithm>
#include <memory>
#include <string_view>
#include <vector>

namespace scenic::common {
namespace {

// The live counter of this thread and how deep we are inside counted ops. The
// callbacks are plain function pointers, so their state lives here.
thread_local FlopCounter* t_counter = nullptr;
thread_local int t_depth = 0;
// > 0 inside an autograd node's backward on this thread (CPU backward runs on the caller).
thread_local int t_backward = 0;

// Marks a BACKWARD_FUNCTION record so that on_end can undo the increment.
struct BackwardContext : at::ObserverContext {};

enum class Kind { kNone, kMm, kAddmm, kBmm, kBaddbmm, kMatmul, kLinear, kConv, kConvTransposed, kSdpa };

Kind classify(std::string_view name) {
  // oneDNN's inner product (model_lib/layers/dense.h with gemm_backend: onednn).
  if (name == "mkldnn::_linear_pointwise") return Kind::kLinear;
  if (name.substr(0, 6) != "aten::") return Kind::kNone;
  name.remove_prefix(6);
  if (name == "mm") return Kind::kMm;
  if (name == "addmm" || name == "addmm_") return Kind::kAddmm;  // addmm_: model::dense_add
  if (name == "bmm") return Kind::kBmm;
  if (name == "baddbmm" || name == "baddbmm_") return Kind::kBaddbmm;
  if (name == "matmul") return Kind::kMatmul;
  if (name == "linear") return Kind::kLinear;
  if (name == "conv1d" || name == "conv2d" || name == "conv3d" || name == "convolution" ||
      name == "_convolution" || name == "_convolution_mode" || name == "mkldnn_convolution" ||
      name == "cudnn_convolution")
    return Kind::kConv;
  if (name == "conv_transpose1d" || name == "conv_transpose2d" || name == "conv_transpose3d")
    return Kind::kConvTransposed;
  if (name == "scaled_dot_product_attention") return Kind::kSdpa;
  return Kind::kNone;
}

struct OpContext : at::ObserverContext {
  bool outer = false;
  Kind kind = Kind::kNone;
  int64_t flops = 0;        // known at the start for all but (non-transposed) convolutions
  int64_t kernel_macs = 0;  // convolutions: multiply-adds per output element
};

// Exceptions thrown from RecordFunction callbacks are swallowed by ATen (logged as
// warnings), so a missing shape is reported by this one instead, caught in on_start.
struct MissingShape {};

std::vector<int64_t> shape_of(c10::ArrayRef<const c10::IValue> inputs, size_t i) {
  if (i >= inputs.size() || !inputs[i].isTensor() || !inputs[i].toTensor().defined() ||
      inputs[i].toTensor().dim() == 0)
    throw MissingShape{};
  return inputs[i].toTensor().sizes().vec();
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// [.., M, K] x [.., K, N] with broadcast batch dims (1-D operands as torch.matmul treats them).
int64_t matmul_flops(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const int64_t k = a.back();
  const int64_t m = a.size() >= 2 ? a[a.size() - 2] : 1;
  const int64_t n = b.size() >= 2 ? b.back() : 1;
  const size_t ba = a.size() >= 2 ? a.size() - 2 : 0, bb = b.size() >= 2 ? b.size() - 2 : 0;
  int64_t batch = 1;
  for (size_t i = 0; i < std::max(ba, bb); ++i) {  // align from the right
    const int64_t da = i < ba ? a[ba - 1 - i] : 1, db = i < bb ? b[bb - 1 - i] : 1;
    batch *= std::max(da, db);
  }
  return batch * m * k * n;
}

void fill(OpContext& ctx, std::string_view op, c10::ArrayRef<const c10::IValue> in) {
  switch (ctx.kind) {
    case Kind::kMm:
    case Kind::kBmm:
    case Kind::kMatmul:
      ctx.flops = matmul_flops(shape_of(in, 0), shape_of(in, 1));
      break;
    case Kind::kAddmm:
    case Kind::kBaddbmm:  // (self, a, b)
      ctx.flops = matmul_flops(shape_of(in, 1), shape_of(in, 2));
      break;
    case Kind::kLinear: {
      const auto w = shape_of(in, 1);  // [N, K] (or [K] for a vector weight)
      ctx.flops = numel(shape_of(in, 0)) * (w.size() == 2 ? w[0] : 1);
      break;
    }
    case Kind::kConv:
    case Kind::kConvTransposed: {
      const auto w = shape_of(in, 1);  // [C_out, C_in/g, k...] or transposed [C_in, C_out/g, k...]
      ctx.kernel_macs = numel(w) / w[0];
      // convolution/_convolution carry `transposed` as their 7th argument.
      const bool transposed = ctx.kind == Kind::kConvTransposed ||
                              ((op == "aten::convolution" || op == "aten::_convolution") && in.size() > 6 &&
                               in[6].isBool() && in[6].toBool());
      if (transposed) {
        ctx.kind = Kind::kConvTransposed;
        ctx.flops = numel(shape_of(in, 0)) * ctx.kernel_macs;  // each input element hits C_out/g * k
      }
      break;
    }
    case Kind::kSdpa: {
      const auto q = shape_of(in, 0), k = shape_of(in, 1), v = shape_of(in, 2);
      const int64_t l = q[q.size() - 2], e = q.back(), s = k[k.size() - 2], ev = v.back();
      ctx.flops = numel(q) / (l * e) * l * s * (e + ev);
      break;
    }
    case Kind::kNone:
      break;
  }
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (t_counter == nullptr) return nullptr;
  if (fn.scope() == at::RecordScope::BACKWARD_FUNCTION) {
    ++t_backward;
    return std::make_unique<BackwardContext>();
  }
  if (t_backward > 0) return nullptr;
  const Kind kind = classify(fn.name());
  if (kind == Kind::kNone) return nullptr;
  auto ctx = std::make_unique<OpContext>();
  ctx->kind = kind;
  ctx->outer = t_depth == 0;
  ++t_depth;
  if (ctx->outer) {
    try {
      fill(*ctx, fn.name(), fn.inputs());
    } catch (const MissingShape&) {
      ctx->kind = Kind::kNone;  // counted as uncounted in on_end
    }
  }
  return ctx;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* base) {
  if (base == nullptr) return;
  if (fn.scope() == at::RecordScope::BACKWARD_FUNCTION) {
    --t_backward;
    return;
  }
  auto* ctx = static_cast<OpContext*>(base);
  --t_depth;
  if (!ctx->outer || t_counter == nullptr) return;
  int64_t flops = ctx->flops;
  if (ctx->kind == Kind::kConv) {
    const auto& outs = fn.outputs();
    if (outs.empty() || !outs[0].isTensor()) ctx->kind = Kind::kNone;
    else flops = outs[0].toTensor().numel() * ctx->kernel_macs;
  }
  if (ctx->kind == Kind::kNone) t_counter->add_uncounted(fn.name());
  else t_counter->add(fn.name(), flops);
}

}  // namespace

bool FlopCounter::active() { return t_counter != nullptr; }

FlopCounter::FlopCounter() : previous_(t_counter), previous_depth_(t_depth) {
  t_counter = this;
  t_depth = 0;
  if (previous_ != nullptr) return;  // the outer counter's callback serves this one
  handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                           .needsInputs(true)
                                           .needsOutputs(true)
                                           .scopes({at::RecordScope::FUNCTION,
                                                    at::RecordScope::BACKWARD_FUNCTION}));
}

FlopCounter::~FlopCounter() {
  if (previous_ == nullptr) at::removeCallback(handle_);
  t_counter = previous_;
  t_depth = previous_depth_;
}

int64_t FlopCounter::total() const {
  int64_t n = 0;
  for (const auto& [_, f] : by_op_) n += f;
  return n;
}

int64_t count_flops(const std::function<void()>& fn, std::map<std::string, int64_t>* by_op) {
  FlopCounter counter;
  fn();
  if (by_op != nullptr) *by_op = counter.by_op();
  return counter.total();
}

}  // namespace scenic::common
