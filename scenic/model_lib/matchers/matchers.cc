// Greedy and lazy matchers and the name -> matcher registry (see matchers.h).
#include "scenic/model_lib/matchers/matchers.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

void check_batched(const torch::Tensor& cost, const char* who) {
  if (cost.dim() != 3)
    throw scenic::Error(std::string(who) + ": cost must be [B, N, M], got " +
                        std::string(c10::str(cost.sizes())));
}

}  // namespace

torch::Tensor greedy_matcher(const torch::Tensor& cost_in) {
  check_batched(cost_in, "greedy_matcher");
  const int64_t b = cost_in.size(0), n = cost_in.size(1), m = cost_in.size(2);
  const bool transposed = n > m;
  // [B, S, L] with S = min(N, M) the short side as rows.
  auto c = cost_in.detach().to(torch::kCPU, torch::kDouble);
  c = (transposed ? c.transpose(1, 2) : c).contiguous().clone();
  const int64_t s = std::min(n, m), l = std::max(n, m);
  auto out = torch::empty({b, 2, s}, torch::kLong);  // [B, 2, S]
  if (s == 0) return out;
  double* cp = c.data_ptr<double>();
  int64_t* op = out.data_ptr<int64_t>();
  std::vector<char> row_taken(s), col_taken(l);
  for (int64_t e = 0; e < b; ++e) {
    double* ce = cp + e * s * l;
    replace_non_finite(ce, s * l);
    std::fill(row_taken.begin(), row_taken.end(), 0);
    std::fill(col_taken.begin(), col_taken.end(), 0);
    int64_t* first = op + e * 2 * s;  // rows of the short-side matrix
    int64_t* second = first + s;
    for (int64_t step = 0; step < s; ++step) {
      double best = std::numeric_limits<double>::infinity();
      int64_t bi = -1, bj = -1;
      for (int64_t i = 0; i < s; ++i) {
        if (row_taken[i]) continue;
        for (int64_t j = 0; j < l; ++j) {
          if (col_taken[j]) continue;
          if (bi < 0 || ce[i * l + j] < best) {
            best = ce[i * l + j];
            bi = i;
            bj = j;
          }
        }
      }
      row_taken[bi] = col_taken[bj] = 1;
      first[step] = bi;
      second[step] = bj;
    }
    if (transposed) std::swap_ranges(first, first + s, second);  // back to (row, col)
  }
  return out;
}

torch::Tensor lazy_matcher(const torch::Tensor& cost) {
  check_batched(cost, "lazy_matcher");
  const int64_t k = std::min(cost.size(1), cost.size(2));
  return torch::arange(k, torch::kLong).expand({cost.size(0), 2, k}).contiguous();
}

namespace {

MatcherFn exact_matcher() {
  return [](const torch::Tensor& cost, const std::optional<torch::Tensor>& n_cols) {
    return hungarian_matcher(cost, n_cols);
  };
}

std::map<std::string, MatcherFn> registry(const SinkhornOptions& sinkhorn) {
  std::map<std::string, MatcherFn> r;
  for (const char* name : {"hungarian", "hungarian_tpu", "hungarian_scan_tpu", "hungarian_cover_tpu"})
    r[name] = exact_matcher();
  r["greedy"] = [](const torch::Tensor& cost, const std::optional<torch::Tensor>&) {
    return greedy_matcher(cost);
  };
  r["lazy"] = [](const torch::Tensor& cost, const std::optional<torch::Tensor>&) {
    return lazy_matcher(cost);
  };
  r["sinkhorn"] = [sinkhorn](const torch::Tensor& cost, const std::optional<torch::Tensor>&) {
    return sinkhorn_matcher(cost, sinkhorn);
  };
  return r;
}

}  // namespace

std::vector<std::string> matcher_names() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : registry({})) names.push_back(name);
  return names;
}

MatcherFn get_matcher(const std::string& name, const SinkhornOptions& sinkhorn) {
  auto r = registry(sinkhorn);
  auto it = r.find(name);
  if (it != r.end()) return it->second;
  std::string known;
  for (const auto& n : matcher_names()) known += (known.empty() ? "" : ", ") + n;
  std::string msg = "unknown matcher '" + name + "' (known: " + known + ")";
  const std::string guess = common::closest_match(name, matcher_names());
  if (!guess.empty()) msg += "; did you mean '" + guess + "'?";
  throw scenic::Error(msg);
}

MatcherFn get_matcher(const common::ConfigDict& config) {
  const auto name = config.get<std::string>("matcher", "hungarian_cover_tpu");
  SinkhornOptions o;
  if (name == "sinkhorn") {
    o.epsilon = config.get<double>("sinkhorn_epsilon", o.epsilon);
    o.init = config.get<double>("sinkhorn_init", o.init);
    o.decay = config.get<double>("sinkhorn_decay", o.decay);
    o.num_iters = config.get<int64_t>("sinkhorn_num_iters", o.num_iters);
    o.threshold = config.get<double>("sinkhorn_threshold", o.threshold);
    o.chg_momentum_from = config.get<int64_t>("sinkhorn_chg_momentum_from", o.chg_momentum_from);
    o.num_permutations = config.get<int64_t>("sinkhorn_num_permutations", o.num_permutations);
  }
  return get_matcher(name, o);
}

}  // namespace scenic::model
