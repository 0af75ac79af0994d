// The cheap matchers and the matcher registry: Scenic's model_lib/matchers/greedy.py
// (`greedy_matcher`), lazy.py (`lazy_matcher`) and the `config.matcher` switch of
// projects/baselines/detr/detr_base_model.py (`BaseModelWithMatching.matcher`).
//
// Every matcher maps a cost [B, N, M] (and, optionally, n_cols [B], the number of
// non-padded target columns) to int64 indices [B, 2, min(N, M)] on the CPU: [:, 0] row
// (prediction) indices, [:, 1] column (target) indices. Matchers never carry gradients
// (Scenic wraps them in stop_gradient / a zero custom_vjp).
#pragma once

#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/model_lib/matchers/hungarian.h"
#include "scenic/model_lib/matchers/sinkhorn.h"

namespace scenic::model {

// Greedy: per matrix, with the short side as rows (transposed when N > M), repeatedly
// take the global minimum (first in row-major order on ties) among rows and columns
// not yet taken. Pairs come in pick order, as Scenic's lax.scan emits them (not sorted).
// Non-finite costs are replaced as in hungarian.h (Scenic's argmin would pick a NaN).
torch::Tensor greedy_matcher(const torch::Tensor& cost);

// Lazy: row i <-> column i for i < min(N, M), whatever the cost.
torch::Tensor lazy_matcher(const torch::Tensor& cost);

using MatcherFn =
    std::function<torch::Tensor(const torch::Tensor& cost, const std::optional<torch::Tensor>& n_cols)>;

// Names as DETR's `config.matcher`: "hungarian" (Scenic: scipy on the host),
// "hungarian_tpu", "hungarian_scan_tpu", "hungarian_cover_tpu" (Scenic's pure-JAX exact
// solvers; all four are the same exact solver here and all use n_cols to drop padded
// columns; the optimal cost is the same, only ties may resolve differently), "greedy",
// "lazy", "sinkhorn" (with `sinkhorn`'s options). Greedy, lazy and sinkhorn ignore
// n_cols, as in Scenic. Unknown names throw scenic::Error listing the known ones.
MatcherFn get_matcher(const std::string& name, const SinkhornOptions& sinkhorn = {});
std::vector<std::string> matcher_names();

// Reads `matcher` (default "hungarian_cover_tpu", Scenic's detr_config default) and, for
// "sinkhorn" only, the `sinkhorn_epsilon`, `sinkhorn_init`, `sinkhorn_decay`,
// `sinkhorn_num_iters`, `sinkhorn_threshold`, `sinkhorn_chg_momentum_from`,
// `sinkhorn_num_permutations` keys with Scenic's defaults, from a model config view.
MatcherFn get_matcher(const common::ConfigDict& config);

}  // namespace scenic::model
