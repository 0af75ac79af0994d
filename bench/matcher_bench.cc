// Benchmark of the exact matcher (scenic/model_lib/matchers/hungarian.h) on DETR-shaped
// problems: B cost matrices of 100 predictions x m targets, m drawn per batch element in
// 1..100, as a [B, 100, 100] tensor whose trailing columns are padding (n_cols = m), the
// way Scenic's hungarian_matcher receives them. bench/reference/matcher_scipy.py times
// scipy.optimize.linear_sum_assignment on the very same matrices (same splitmix64
// recipe); bench/run_matcher_bench.sh runs both and prints the ratio.
//
//   build/scenic_matcher_bench [--batch 64] [--rows 100] [--max_cols 100] [--reps 200]
//                              [--seed 2024] [--costs_out FILE]
// Prints "RESULT name=... ms=..." lines (median over reps, and the minimum).
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "scenic/model_lib/matchers/hungarian.h"

namespace {

// Same recipe as bench/reference/matcher_scipy.py (and tools/fixtures/matcher_reference.py).
double splitmix_uniform(uint64_t seed, uint64_t k) {
  uint64_t z = seed + (k + 1) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

struct Timing {
  double median_ms, min_ms;
};

Timing time_it(int reps, const std::function<void()>& fn) {
  for (int w = 0; w < 3; ++w) fn();  // warm the thread pool and the workspaces
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 64, rows = 100, max_cols = 100;
  int reps = 200;
  uint64_t seed = 2024;
  std::string costs_out;
  for (int a = 1; a < argc; ++a) {
    const std::string flag = argv[a];
    if (a + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", flag.c_str());
      return 2;
    }
    const char* value = argv[++a];
    if (flag == "--batch") batch = std::atoll(value);
    else if (flag == "--rows") rows = std::atoll(value);
    else if (flag == "--max_cols") max_cols = std::atoll(value);
    else if (flag == "--reps") reps = std::atoi(value);
    else if (flag == "--seed") seed = std::strtoull(value, nullptr, 10);
    else if (flag == "--costs_out") costs_out = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }

  // Element b: m_b = 1 + floor(u(seed, b) * max_cols) real columns; entry (i, j) =
  // u(seed + 1 + b, i * m_b + j), uniform in [0, 1) like DETR's bounded costs.
  std::vector<int64_t> m(batch);
  std::vector<std::vector<double>> mats(batch);  // contiguous [rows, m_b] each
  auto padded = torch::full({batch, rows, max_cols}, 10.0, torch::kDouble);  // [B, N, M]
  for (int64_t b = 0; b < batch; ++b) {
    m[b] = 1 + static_cast<int64_t>(splitmix_uniform(seed, b) * static_cast<double>(max_cols));
    mats[b].resize(rows * m[b]);
    auto acc = padded.accessor<double, 3>();
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < m[b]; ++j)
        acc[b][i][j] = mats[b][i * m[b] + j] = splitmix_uniform(seed + 1 + b, i * m[b] + j);
  }
  auto n_cols = torch::tensor(m, torch::kLong);
  auto padded_f32 = padded.to(torch::kFloat);
  const int threads = at::get_num_threads();

  // Optimal cost per element, for the Python side to check it solved the same problems.
  auto idx = scenic::model::hungarian_matcher(padded, n_cols);  // [B, 2, 100]
  std::vector<double> opt(batch, 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < m[b]; ++t) opt[b] += padded[b][idx[b][0][t].item<int64_t>()][t].item<double>();
  if (!costs_out.empty()) {
    std::ofstream out(costs_out);
    for (double c : opt) out << std::to_string(c) << "\n";
  }

  auto report = [](const char* name, int nthreads, Timing t) {
    std::printf("RESULT name=%s threads=%d ms=%.4f min_ms=%.4f\n", name, nthreads, t.median_ms, t.min_ms);
    std::fflush(stdout);
  };
  report("hungarian_matcher_f64_padded", threads,
         time_it(reps, [&] { scenic::model::hungarian_matcher(padded, n_cols); }));
  report("hungarian_matcher_f32_padded", threads,
         time_it(reps, [&] { scenic::model::hungarian_matcher(padded_f32, n_cols); }));
  at::set_num_threads(1);
  report("hungarian_matcher_f64_padded", 1,
         time_it(reps, [&] { scenic::model::hungarian_matcher(padded, n_cols); }));
  report("linear_sum_assignment_loop", 1, time_it(reps, [&] {
           for (int64_t b = 0; b < batch; ++b) scenic::model::linear_sum_assignment(mats[b].data(), rows, m[b]);
         }));
  return 0;
}
