// Entropic-OT (Sinkhorn) matcher; see sinkhorn.h for the exact steps and deviations.
#include "scenic/model_lib/matchers/sinkhorn.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/matchers/hungarian.h"

namespace scenic::model {
namespace {

constexpr int64_t kInnerIterations = 10;  // OTT's default error-check period

// Log-domain Sinkhorn on a batch of square costs [B, N, N] (double, finite); returns the
// coupling scaled per matrix so that its largest entry is 1 (ranking-invariant).
torch::Tensor sinkhorn_coupling(const torch::Tensor& c, const SinkhornOptions& o) {
  const int64_t b = c.size(0), n = c.size(1);
  const double log_marginal = -std::log(static_cast<double>(n));
  auto f = torch::zeros({b, n}, torch::kDouble);       // [B, N] row potentials
  auto g = torch::zeros({b, n}, torch::kDouble);       // [B, N] column potentials
  auto active = torch::ones({b, 1}, torch::kBool);     // [B, 1] not yet converged
  auto weight = torch::ones({b, 1}, torch::kDouble);   // [B, 1] momentum weight
  auto prev_err = torch::full({b}, -1.0, torch::kDouble);
  auto err = torch::full({b}, -1.0, torch::kDouble);
  for (int64_t t = 0; t < o.num_iters; ++t) {
    const double eps = o.epsilon * std::max(o.init * std::pow(o.decay, static_cast<double>(t)), 1.0);
    // g_j = eps log b_j - eps LSE_i((f_i - C_ij) / eps)
    auto g_new = eps * log_marginal - eps * torch::logsumexp((f.unsqueeze(2) - c) / eps, 1);
    g = torch::where(active, (1.0 - weight) * g + weight * g_new, g);
    // f_i = eps log a_i - eps LSE_j((g_j - C_ij) / eps)
    auto f_new = eps * log_marginal - eps * torch::logsumexp((g.unsqueeze(1) - c) / eps, 2);
    f = torch::where(active, (1.0 - weight) * f + weight * f_new, f);
    if ((t + 1) % kInnerIterations == 0) {
      // Rows are exact after the f update; the column marginal carries the error.
      auto p = torch::exp((f.unsqueeze(2) + g.unsqueeze(1) - c) / eps);  // [B, N, N]
      prev_err = err;
      err = (p.sum(1) - std::exp(log_marginal)).abs().sum(1);              // [B]
      if (t + 1 == o.chg_momentum_from) {
        auto rho = (err / prev_err.clamp_min(1e-300)).clamp(0.0, 0.99);
        auto w = 2.0 / (1.0 + torch::sqrt(1.0 - torch::pow(rho, 1.0 / kInnerIterations)));
        weight = torch::where(prev_err.unsqueeze(1) > 0, w.unsqueeze(1), weight);
      }
      active = active & (err >= o.threshold).unsqueeze(1);
      if (!active.any().item<bool>()) break;
    }
  }
  auto log_p = (f.unsqueeze(2) + g.unsqueeze(1) - c) / o.epsilon;  // [B, N, N], target eps
  auto top = std::get<0>(log_p.reshape({b, -1}).max(1)).reshape({b, 1, 1});
  return torch::exp(log_p - top).contiguous();
}

}  // namespace

torch::Tensor sinkhorn_matcher(const torch::Tensor& cost_in, const SinkhornOptions& o) {
  if (cost_in.dim() != 3 || cost_in.size(1) != cost_in.size(2))
    throw scenic::Error("sinkhorn_matcher: cost must be square [B, N, N], got " +
                        std::string(c10::str(cost_in.sizes())));
  if (!(o.epsilon > 0) || o.num_iters < 1 || o.num_permutations < 1)
    throw scenic::Error("sinkhorn_matcher: need epsilon > 0, num_iters >= 1, num_permutations >= 1");
  const int64_t b = cost_in.size(0), n = cost_in.size(1);
  auto out = torch::empty({b, 2, n}, torch::kLong);  // [B, 2, N]
  if (b == 0 || n == 0) return out;
  auto c = cost_in.detach().to(torch::kCPU, torch::kDouble).contiguous().clone();  // [B, N, N]
  double* cp = c.data_ptr<double>();
  for (int64_t e = 0; e < b; ++e) replace_non_finite(cp + e * n * n, n * n);

  const auto p = sinkhorn_coupling(c, o);
  const double* pp = p.data_ptr<double>();
  int64_t* op = out.data_ptr<int64_t>();

  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> pool(static_cast<size_t>(10 * n)), rank(n), best_rank(n);
  std::vector<double> v(n), w(n);
  for (int64_t e = 0; e < b; ++e) {
    const double* pe = pp + e * n * n;
    const double* ce = cp + e * n * n;
    double best_cost = std::numeric_limits<double>::infinity();
    std::iota(best_rank.begin(), best_rank.end(), 0);
    for (int64_t trial = 0; trial < o.num_permutations; ++trial) {
      // N distinct integers from [0, 10N) (partial Fisher-Yates), sorted, times 10.
      std::iota(pool.begin(), pool.end(), 0);
      for (int64_t k = 0; k < n; ++k) {
        std::uniform_int_distribution<int64_t> pick(k, 10 * n - 1);
        std::swap(pool[k], pool[pick(rng)]);
      }
      std::sort(pool.begin(), pool.begin() + n);
      for (int64_t k = 0; k < n; ++k) v[k] = 10.0 * static_cast<double>(pool[k]);
      for (int64_t i = 0; i < n; ++i) {
        double s = 0.0;
        for (int64_t j = 0; j < n; ++j) s += pe[i * n + j] * v[j];
        w[i] = s;
      }
      // rank[k] = the row with the k-th smallest w; it takes column k.
      std::iota(rank.begin(), rank.end(), 0);
      std::stable_sort(rank.begin(), rank.end(), [&](int64_t x, int64_t y) { return w[x] < w[y]; });
      double total = 0.0;
      for (int64_t k = 0; k < n; ++k) total += ce[rank[k] * n + k];
      if (total < best_cost) {
        best_cost = total;
        best_rank = rank;
      }
    }
    int64_t* rows = op + e * 2 * n;
    int64_t* cols = rows + n;
    for (int64_t i = 0; i < n; ++i) rows[i] = i;
    for (int64_t k = 0; k < n; ++k) cols[best_rank[k]] = k;
  }
  return out;
}

}  // namespace scenic::model
