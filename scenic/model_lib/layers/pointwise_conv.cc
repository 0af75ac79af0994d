#include "scenic/model_lib/layers/pointwise_conv.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

void check_args(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride) {
  if (weight.dim() != 4 || weight.size(2) != 1 || weight.size(3) != 1 || x.dim() != 4 ||
      x.size(1) != weight.size(1) || stride < 1) {
    std::ostringstream s;
    s << "conv1x1: expected x [N, C_in, H, W] and weight [C_out, C_in, 1, 1] with the same C_in and a stride "
         ">= 1, got x "
      << x.sizes() << ", weight " << weight.sizes() << ", stride " << stride;
    throw Error(s.str());
  }
}

bool layout_fits(const torch::Tensor& x) {
  return x.dim() == 4 && x.is_contiguous(torch::MemoryFormat::ChannelsLast);
}

}  // namespace

bool conv1x1_uses_gemm(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride) {
  check_args(x, weight, stride);
  if (!x.device().is_cpu() || x.scalar_type() != torch::kFloat32 || weight.scalar_type() != torch::kFloat32 ||
      !layout_fits(x) || at::autocast::is_autocast_enabled(at::kCPU))
    return false;
  const int64_t ho = (x.size(2) - 1) / stride + 1, wo = (x.size(3) - 1) / stride + 1;
  const double rows = double(x.size(0)) * ho * wo;
  const double cin = double(weight.size(1)), cout = double(weight.size(0));
  return rows > 0 && 10.0 * cin * cout >= rows * (cin + cout);
}

torch::Tensor conv1x1(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                      int64_t stride, Conv1x1Path path) {
  check_args(x, weight, stride);
  const bool gemm = path == Conv1x1Path::kGemm   ? layout_fits(x)
                    : path == Conv1x1Path::kConv ? false
                                                 : conv1x1_uses_gemm(x, weight, stride);
  if (!gemm) return torch::conv2d(x, weight, bias, stride);
  const auto xs = stride > 1 ? x.slice(2, 0, x.size(2), stride).slice(3, 0, x.size(3), stride) : x;
  const int64_t n = xs.size(0), h = xs.size(2), w = xs.size(3), cin = xs.size(1), cout = weight.size(0);
  // [N, C, H, W] channels-last is [N, H, W, C] in memory: a view unless strided.
  const auto rows = xs.permute({0, 2, 3, 1}).reshape({n * h * w, cin});
  const auto wt = weight.reshape({cout, cin}).t();
  const auto y = bias.defined() ? torch::addmm(bias, rows, wt) : torch::mm(rows, wt);
  return y.view({n, h, w, cout}).permute({0, 3, 1, 2});  // [N, C_out, H', W'], channels-last
}

}  // namespace scenic::model
