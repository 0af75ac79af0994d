#include "scenic/model_lib/layers/batch_norm_act.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "scenic/common_lib/errors.h"

// Built with -ffp-contract=off (CMakeLists.txt): the backward recomputes the forward's
// x * a + b to find the ReLU's mask, and must get the same bits, so neither may become
// a fused multiply-add on its own.

namespace scenic::model {
namespace {

constexpr int64_t kBlock = 64;  // rows per partial sum

int64_t num_blocks(int64_t rows) { return (rows + kBlock - 1) / kBlock; }

// Adds up per-block partials [blocks, C] in block order, in double.
void sum_blocks(const std::vector<float>& partial, int64_t blocks, int64_t c, std::vector<double>& out) {
  out.assign(c, 0.0);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* p = partial.data() + b * c;
    for (int64_t j = 0; j < c; ++j) out[j] += p[j];
  }
}

// The row kernels, on n rows of c channels: restrict-qualified and branch-free so that the
// compiler vectorizes them over the channels, in a clone per instruction set (picked at
// load time).
#define SCENIC_BN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// max(v, 0) that keeps NaN (as torch::relu): v < 0 is false for NaN.
inline float relu_keep_nan(float v) { return v < 0.0f ? 0.0f : v; }

// s += sum over rows of d, q += sum of d^2, d = x - shift.
SCENIC_BN_CLONES void stats_rows(const float* __restrict x, const float* __restrict shift, float* __restrict s,
                                 float* __restrict q, int64_t n, int64_t c) {
  for (int64_t r = 0; r < n; ++r, x += c) {
    for (int64_t j = 0; j < c; ++j) {
      const float d = x[j] - shift[j];
      s[j] += d;
      q[j] += d * d;
    }
  }
}

// y = relu?(x a + b (+ res)); res may be null.
SCENIC_BN_CLONES void normalize_rows(const float* __restrict x, const float* __restrict a, const float* __restrict b,
                                     const float* __restrict res, float* __restrict y, int64_t n, int64_t c,
                                     bool relu) {
  for (int64_t r = 0; r < n; ++r, x += c, y += c) {
    if (res != nullptr) {
      if (relu) {
        for (int64_t j = 0; j < c; ++j) y[j] = relu_keep_nan(x[j] * a[j] + b[j] + res[j]);
      } else {
        for (int64_t j = 0; j < c; ++j) y[j] = x[j] * a[j] + b[j] + res[j];
      }
      res += c;
    } else if (relu) {
      for (int64_t j = 0; j < c; ++j) y[j] = relu_keep_nan(x[j] * a[j] + b[j]);
    } else {
      for (int64_t j = 0; j < c; ++j) y[j] = x[j] * a[j] + b[j];
    }
  }
}

// sg += sum of g', sgx += sum of g' (x - mean), g' = g where x a + b > 0 (relu) or g.
SCENIC_BN_CLONES void grad_sums_rows(const float* __restrict x, const float* __restrict g, const float* __restrict a,
                                     const float* __restrict b, const float* __restrict mean, float* __restrict sg,
                                     float* __restrict sgx, int64_t n, int64_t c, bool relu) {
  for (int64_t r = 0; r < n; ++r, x += c, g += c) {
    if (relu) {
      for (int64_t j = 0; j < c; ++j) {
        const float gj = g[j];
        const float gm = x[j] * a[j] + b[j] > 0.0f ? gj : 0.0f;
        sg[j] += gm;
        sgx[j] += gm * (x[j] - mean[j]);
      }
    } else {
      for (int64_t j = 0; j < c; ++j) {
        sg[j] += g[j];
        sgx[j] += g[j] * (x[j] - mean[j]);
      }
    }
  }
}

// The same with g' = g where y > 0, and g' written out.
SCENIC_BN_CLONES void grad_sums_masked_rows(const float* __restrict x, const float* __restrict g,
                                            const float* __restrict y, const float* __restrict mean,
                                            float* __restrict gm_out, float* __restrict sg, float* __restrict sgx,
                                            int64_t n, int64_t c) {
  for (int64_t r = 0; r < n; ++r, x += c, g += c, y += c, gm_out += c) {
    for (int64_t j = 0; j < c; ++j) {
      const float gj = g[j];
      const float gm = y[j] > 0.0f ? gj : 0.0f;
      gm_out[j] = gm;
      sg[j] += gm;
      sgx[j] += gm * (x[j] - mean[j]);
    }
  }
}

// dx = a g' + k1 + k2 (x - mean), g' = g where x a + b > 0 (mask) or g.
SCENIC_BN_CLONES void grad_input_rows(const float* __restrict x, const float* __restrict g, const float* __restrict a,
                                      const float* __restrict b, const float* __restrict mean,
                                      const float* __restrict k1, const float* __restrict k2, float* __restrict dx,
                                      int64_t n, int64_t c, bool mask) {
  for (int64_t r = 0; r < n; ++r, x += c, g += c, dx += c) {
    if (mask) {
      for (int64_t j = 0; j < c; ++j) {
        const float gj = g[j];
        const float gm = x[j] * a[j] + b[j] > 0.0f ? gj : 0.0f;
        dx[j] = a[j] * gm + k1[j] + k2[j] * (x[j] - mean[j]);
      }
    } else {
      for (int64_t j = 0; j < c; ++j) dx[j] = a[j] * g[j] + k1[j] + k2[j] * (x[j] - mean[j]);
    }
  }
}

// Rows of one 64-row block.
int64_t block_rows(int64_t blk, int64_t rows) { return std::min(rows, (blk + 1) * kBlock) - blk * kBlock; }

// Per-channel mean and biased variance of x [rows, c], from sums of d = x - x[0].
void moments(const float* x, int64_t rows, int64_t c, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t blocks = num_blocks(rows);
  std::vector<float> ps(blocks * c, 0.0f), pq(blocks * c, 0.0f);
  const float* shift = x;  // row 0
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk)
      stats_rows(x + blk * kBlock * c, shift, ps.data() + blk * c, pq.data() + blk * c, block_rows(blk, rows), c);
  });
  std::vector<double> s, q;
  sum_blocks(ps, blocks, c, s);
  sum_blocks(pq, blocks, c, q);
  mean.resize(c);
  var.resize(c);
  for (int64_t j = 0; j < c; ++j) {
    const double m = s[j] / static_cast<double>(rows);
    mean[j] = shift[j] + m;
    var[j] = std::max(q[j] / static_cast<double>(rows) - m * m, 0.0);
  }
}

// Rows per task of the element-wise passes: ~16K floats.
int64_t grain(int64_t c) { return std::max<int64_t>(1, 16384 / c); }

// y = relu?(x * a + b + residual?) over rows of c channels.
void normalize_act(const float* x, const float* a, const float* b, const float* res, bool relu, float* y, int64_t rows,
                   int64_t c) {
  at::parallel_for(0, rows, grain(c), [&](int64_t r0, int64_t r1) {
    normalize_rows(x + r0 * c, a, b, res != nullptr ? res + r0 * c : nullptr, y + r0 * c, r1 - r0, c, relu);
  });
}

// The per-channel affine of the normalization: a = scale * invstd, b = bias - mean * a.
void affine(const float* scale, const float* bias, const float* mean, const float* invstd, int64_t c,
            std::vector<float>& a, std::vector<float>& b) {
  a.resize(c);
  b.resize(c);
  for (int64_t j = 0; j < c; ++j) {
    a[j] = scale[j] * invstd[j];
    b[j] = bias[j] - mean[j] * a[j];
  }
}

// The rows-of-channels view of a channels-last [N, C, H, W] tensor.
int64_t rows_of(const torch::Tensor& x) { return x.numel() / x.size(1); }

class BatchNormActFn : public torch::autograd::Function<BatchNormActFn> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                                const torch::Tensor& scale, const torch::Tensor& bias,
                                                const torch::Tensor& residual, double eps, bool relu) {
    const int64_t c = x.size(1), rows = rows_of(x);
    const auto xc = x.contiguous(torch::MemoryFormat::ChannelsLast);
    // No residual comes as an empty tensor (Function::apply takes no undefined inputs).
    const auto rc = residual.numel() > 0 ? residual.contiguous(torch::MemoryFormat::ChannelsLast) : torch::Tensor();
    std::vector<double> m, v;
    moments(xc.const_data_ptr<float>(), rows, c, m, v);
    auto mean = torch::empty({c}, x.options());
    auto invstd = torch::empty({c}, x.options());
    for (int64_t j = 0; j < c; ++j) {
      mean.data_ptr<float>()[j] = static_cast<float>(m[j]);
      invstd.data_ptr<float>()[j] = static_cast<float>(1.0 / std::sqrt(v[j] + eps));
    }
    const auto sc = scale.contiguous(), bc = bias.contiguous();
    std::vector<float> a, b;
    affine(sc.const_data_ptr<float>(), bc.const_data_ptr<float>(), mean.const_data_ptr<float>(),
           invstd.const_data_ptr<float>(), c, a, b);
    auto y = torch::empty_like(xc, torch::MemoryFormat::ChannelsLast);
    normalize_act(xc.const_data_ptr<float>(), a.data(), b.data(), rc.defined() ? rc.const_data_ptr<float>() : nullptr,
                  relu, y.data_ptr<float>(), rows, c);
    // The output is kept only where the backward needs it for the ReLU's mask.
    const bool mask_from_y = relu && rc.defined();
    ctx->save_for_backward({xc, sc, bc, mean, invstd, mask_from_y ? y : torch::Tensor()});
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["residual"] = rc.defined();
    ctx->mark_non_differentiable({mean, invstd});
    return {y, mean, invstd};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (torch::GradMode::is_enabled())
      throw Error("batch_norm_act: double backward is not supported (the fused backward is not differentiable)");
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &scale = saved[1], &bias = saved[2], &mean = saved[3], &invstd = saved[4], &y = saved[5];
    const bool relu = ctx->saved_data["relu"].toBool(), has_res = ctx->saved_data["residual"].toBool();
    const int64_t c = x.size(1), rows = rows_of(x), blocks = num_blocks(rows);
    const auto g = grads[0].contiguous(torch::MemoryFormat::ChannelsLast);
    std::vector<float> a, b;
    affine(scale.const_data_ptr<float>(), bias.const_data_ptr<float>(), mean.const_data_ptr<float>(),
           invstd.const_data_ptr<float>(), c, a, b);
    const float* xp = x.const_data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    const float* mp = mean.const_data_ptr<float>();
    // g' = g behind the ReLU's mask. With a residual it is the residual's gradient too,
    // so it is written out (and read back for dx); without one it is recomputed.
    torch::Tensor gres;
    if (has_res) gres = relu ? torch::empty_like(g, torch::MemoryFormat::ChannelsLast) : g;
    float* grp = has_res && relu ? gres.data_ptr<float>() : nullptr;
    const float* yp = y.defined() ? y.const_data_ptr<float>() : nullptr;
    std::vector<float> psg(blocks * c, 0.0f), psgx(blocks * c, 0.0f);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r = blk * kBlock, n = block_rows(blk, rows);
        float* sg = psg.data() + blk * c;
        float* sgx = psgx.data() + blk * c;
        if (grp != nullptr) {  // mask from the output, g' written out
          grad_sums_masked_rows(xp + r * c, gp + r * c, yp + r * c, mp, grp + r * c, sg, sgx, n, c);
        } else {  // mask (if any) recomputed from x
          grad_sums_rows(xp + r * c, gp + r * c, a.data(), b.data(), mp, sg, sgx, n, c, relu);
        }
      }
    });
    std::vector<double> sg, sgx;
    sum_blocks(psg, blocks, c, sg);
    sum_blocks(psgx, blocks, c, sgx);
    // dx = a (g' - mean(g') - (x - mean) invstd^2 mean(g' (x - mean)))
    //    = a g' + k1 + k2 (x - mean),  k1 = -a sum(g') / R,  k2 = -a invstd^2 sum(g' (x - mean)) / R.
    std::vector<float> k1(c), k2(c);
    const float* isp = invstd.const_data_ptr<float>();
    for (int64_t j = 0; j < c; ++j) {
      const double is = isp[j];
      k1[j] = static_cast<float>(-a[j] * sg[j] / static_cast<double>(rows));
      k2[j] = static_cast<float>(-a[j] * is * is * sgx[j] / static_cast<double>(rows));
    }
    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
      float* dp = dx.data_ptr<float>();
      const float* src = grp != nullptr ? grp : gp;  // g' where written out, else g (masked below)
      const bool mask_from_x = relu && grp == nullptr;
      at::parallel_for(0, rows, grain(c), [&](int64_t r0, int64_t r1) {
        grad_input_rows(xp + r0 * c, src + r0 * c, a.data(), b.data(), mp, k1.data(), k2.data(), dp + r0 * c, r1 - r0,
                        c, mask_from_x);
      });
    }
    torch::Tensor dscale, dbias;
    if (ctx->needs_input_grad(1)) {
      dscale = torch::empty({c}, x.options());
      for (int64_t j = 0; j < c; ++j) dscale.data_ptr<float>()[j] = static_cast<float>(sgx[j] * isp[j]);
    }
    if (ctx->needs_input_grad(2)) {
      dbias = torch::empty({c}, x.options());
      for (int64_t j = 0; j < c; ++j) dbias.data_ptr<float>()[j] = static_cast<float>(sg[j]);
    }
    return {dx, dscale, dbias, has_res && ctx->needs_input_grad(3) ? gres : torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

bool is_param(const torch::Tensor& p, int64_t c) {
  return p.defined() && p.device().is_cpu() && p.scalar_type() == torch::kFloat && p.dim() == 1 && p.size(0) == c;
}

void check_shapes(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                  const torch::Tensor& residual) {
  if (x.dim() < 2 || !scale.defined() || !bias.defined() || scale.numel() != x.size(1) ||
      bias.numel() != x.size(1))
    throw Error("batch_norm_act: expected x [N, C, ...] with scale and bias [C], got x " + c10::str(x.sizes()) +
                ", scale " + (scale.defined() ? c10::str(scale.sizes()) : "undefined") + ", bias " +
                (bias.defined() ? c10::str(bias.sizes()) : "undefined"));
  if (residual.defined() && residual.sizes() != x.sizes())
    throw Error("batch_norm_act: residual " + c10::str(residual.sizes()) + " does not match x " +
                c10::str(x.sizes()));
}

torch::Tensor finish(torch::Tensor y, const torch::Tensor& residual, bool relu) {
  if (residual.defined()) y = y + residual;
  return relu ? torch::relu(y) : y;
}

}  // namespace

bool batch_norm_act_splits_rows() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

bool batch_norm_act_is_fused(const torch::Tensor& x, const torch::Tensor& residual) {
  auto fits = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.dim() == 4 && t.numel() > 0 &&
           t.is_contiguous(torch::MemoryFormat::ChannelsLast);
  };
  return fits(x) && (!residual.defined() || (fits(residual) && residual.sizes() == x.sizes())) &&
         !at::autocast::is_autocast_enabled(at::kCPU);
}

BatchNormActOutput batch_norm_act_train(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                                        double eps, const torch::Tensor& residual, bool relu) {
  check_shapes(x, scale, bias, residual);
  if (batch_norm_act_is_fused(x, residual) && is_param(scale, x.size(1)) && is_param(bias, x.size(1))) {
    auto out = BatchNormActFn::apply(x, scale, bias, residual.defined() ? residual : x.new_empty({0}), eps, relu);
    return {out[0], out[1], out[2]};
  }
  auto [y, mean, invstd] = at::native_batch_norm(x, scale, bias, {}, {}, /*training=*/true, 0.0, eps);
  return {finish(y, residual, relu), mean, invstd};
}

torch::Tensor batch_norm_act_eval(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                                  const torch::Tensor& mean, const torch::Tensor& var, double eps,
                                  const torch::Tensor& residual, bool relu) {
  check_shapes(x, scale, bias, residual);
  const int64_t c = x.size(1);
  const bool needs_grad = torch::GradMode::is_enabled() &&
                          (x.requires_grad() || scale.requires_grad() || bias.requires_grad() ||
                           (residual.defined() && residual.requires_grad()));
  if (needs_grad || !batch_norm_act_is_fused(x, residual) || !is_param(scale, c) || !is_param(bias, c) ||
      !is_param(mean, c) || !is_param(var, c))
    return finish(torch::batch_norm(x, scale, bias, mean, var, /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true),
                  residual, relu);
  const auto invstd = (var.to(torch::kDouble) + eps).rsqrt().to(torch::kFloat).contiguous();
  const auto sc = scale.contiguous(), bc = bias.contiguous(), mc = mean.contiguous();
  std::vector<float> a, b;
  affine(sc.const_data_ptr<float>(), bc.const_data_ptr<float>(), mc.const_data_ptr<float>(),
         invstd.const_data_ptr<float>(), c, a, b);
  auto y = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
  normalize_act(x.const_data_ptr<float>(), a.data(), b.data(), residual.defined() ? residual.const_data_ptr<float>() : nullptr,
        relu, y.data_ptr<float>(), rows_of(x), c);
  return y;
}

}  // namespace scenic::model
