#include "scenic/common_lib/debug_utils.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace scenic::common {

std::vector<ParamInfo> parameter_overview(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  std::vector<ParamInfo> rows;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    const auto& t = p.value();
    ParamInfo row{p.key(), t.sizes().vec(), t.numel()};
    if (t.numel() > 0) {
      auto x = t.detach().to(torch::kCPU, torch::kFloat64);
      row.mean = x.mean().item<double>();
      // Population std (ddof 0), as numpy's std in CLU's table.
      row.std = t.numel() > 1 ? x.std(/*unbiased=*/false).item<double>() : 0.0;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t total_size(const std::vector<ParamInfo>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.size;
  return n;
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string format_parameter_overview(const std::vector<ParamInfo>& params, bool include_stats) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back({"Name", "Shape", "Size"});
  if (include_stats) {
    cells[0].push_back("Mean");
    cells[0].push_back("Std");
  }
  for (const auto& p : params) {
    std::string shape = "(";
    for (size_t i = 0; i < p.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(p.shape[i]);
    shape += p.shape.size() == 1 ? ",)" : ")";
    std::vector<std::string> row{p.name, shape, with_commas(p.size)};
    if (include_stats) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.3g", p.mean);
      row.push_back(buf);
      std::snprintf(buf, sizeof(buf), "%.3g", p.std);
      row.push_back(buf);
    }
    cells.push_back(std::move(row));
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::ostringstream out;
  auto rule = [&] {
    out << '+';
    for (size_t w : width) out << std::string(w + 2, '-') << '+';
    out << '\n';
  };
  auto line = [&](const std::vector<std::string>& row) {
    out << '|';
    for (size_t c = 0; c < row.size(); ++c) {
      // Numbers right-aligned, text left-aligned.
      const bool right = c >= 2;
      const std::string pad(width[c] - row[c].size(), ' ');
      out << ' ' << (right ? pad + row[c] : row[c] + pad) << " |";
    }
    out << '\n';
  };
  rule();
  line(cells[0]);
  rule();
  for (size_t r = 1; r < cells.size(); ++r) line(cells[r]);
  rule();
  out << "Total: " << with_commas(total_size(params)) << '\n';
  return out.str();
}

}  // namespace scenic::common
