// Sinkhorn matcher: Scenic's model_lib/matchers/sinkhorn.py (`sinkhorn_matcher`,
// `sample_best_permutation`), which solves entropic optimal transport with OTT
// (geometry.Geometry + transport.solve) and rounds the coupling to a permutation.
//
// What we do, per [N, N] cost (uniform marginals 1/N):
//   * log-domain Sinkhorn: g_j = eps log b_j - eps LSE_i((f_i - C_ij) / eps), then
//     f_i = eps log a_i - eps LSE_j((g_j - C_ij) / eps), with OTT's epsilon schedule
//     eps_t = epsilon * max(init * decay^t, 1) (Scenic's "init: multiplier for epsilon
//     decay at the first iteration");
//   * every 10 iterations (OTT's inner_iterations) the L1 error of the column marginal
//     is checked; a matrix stops (its potentials freeze, as under OTT's vmapped
//     while_loop) once it is below `threshold`, at `num_iters` at the latest;
//   * from iteration `chg_momentum_from` on, over-relaxation (OTT's adaptive momentum,
//     Lehmann et al.): weight w = 2 / (1 + sqrt(1 - rho^(1/10))), rho the ratio of the
//     last two errors clipped to 0.99, applied as f <- (1 - w) f + w f_new (same for g);
//   * coupling P_ij = exp((f_i + g_j - C_ij) / epsilon) with the target epsilon, as
//     OTT's `.matrix`;
//   * Scenic's permutation step: `num_permutations` times draw N distinct integers from
//     [0, 10N) (a random increasing vector v after sorting, times 10), rank the rows by
//     w = P v, give column k to the row of rank k; keep the cheapest permutation (first
//     on ties).
// Output: int64 [B, 2, N], rows 0..N-1 in order and each row's column (what Scenic's
// einsum with the index grid yields).
//
// Deviations, on purpose: the random draws use std::mt19937_64 seeded with `seed`
// (Scenic uses jax.random with PRNGKey(0) by default), so the sampled permutations are
// not bit-identical to Scenic's; P is scaled by a constant (its largest entry) before
// ranking, which leaves the ranking unchanged but avoids overflow; the momentum rule is
// our reading of OTT's, not a copy. Non-finite costs are replaced as in hungarian.h.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace scenic::model {

struct SinkhornOptions {  // Scenic's defaults (detr_sinkhorn_config.py uses the same)
  double epsilon = 1e-3;
  double init = 50.0;
  double decay = 0.9;
  int64_t num_iters = 1000;
  int64_t num_permutations = 100;
  double threshold = 1e-2;
  int64_t chg_momentum_from = 100;
  uint64_t seed = 0;
};

// cost: [B, N, N] (square, as Scenic requires) -> int64 [B, 2, N] on the CPU.
torch::Tensor sinkhorn_matcher(const torch::Tensor& cost, const SinkhornOptions& options = {});

}  // namespace scenic::model
