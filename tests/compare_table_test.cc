// bench/compare_table.py, the tables bench/compare.sh prints (issue 9's "a table of
// examples/s and the ratios", and the memory beside it), on rows written here: which
// round each implementation keeps, the ratios, the parameter-count check and the
// memory and GPU columns.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"
#include "tests/e2e_util.h"

namespace scenic::e2e {
namespace {

// One JSON line as compare.sh writes it (the fields the table reads).
std::string row(const std::string& impl, const std::string& case_name, const std::string& mode, double ex_s,
                double rss, long params = 1000, double gpu = -1.0, const std::string& gemm = "aten") {
  std::ostringstream s;
  s << R"({"impl": ")" << impl << R"(", "case": ")" << case_name << R"(", "mode": ")" << mode
    << R"(", "examples_per_sec": )" << ex_s << R"(, "peak_rss_mib": )" << rss << R"(, "num_params": )" << params
    << R"(, "gpu_peak_allocated_mib": )" << gpu << R"(, "load": 0.5, "batch_size": 8)";
  if (impl == "scenic")
    s << R"(, "gemm_backend": ")" << gemm
      << R"(", "ms_p10": 9.0, "ms_median": 10.0, "ms_p90": 11.0, "achieved_gflops": 50.0, "peak_fraction": 0.25,)"
      << R"( "threads": 2, "matmul_gflops": 200.0)";
  s << "}";
  return s.str();
}

// The table's line for (case, mode, gemm) in the part after `header`, split on spaces.
std::vector<std::string> line_of(const std::string& out, const std::string& header, const std::string& prefix) {
  std::istringstream in(out.substr(out.find(header)));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) {
      std::istringstream words(line);
      std::vector<std::string> w;
      for (std::string x; words >> x;) w.push_back(x);
      return w;
    }
  }
  return {};
}

RunResult table(const std::vector<std::string>& rows, const std::string& path) {
  std::ofstream f(path);
  for (const auto& r : rows) f << r << "\n";
  f.close();
  return run_command(std::string(SCENIC_SOURCE_DIR) + "/.venv/bin/python " + SCENIC_SOURCE_DIR +
                     "/bench/compare_table.py " + path + " 2>&1");
}

TEST(CompareTable, KeepsEachImplementationsBestRoundAndDividesByIt) {
  scenic::testing::TempDir tmp;
  const auto r = table({row("scenic", "vit", "train", 10.0, 500), row("torch_eager", "vit", "train", 8.0, 800),
                        row("jax_jit", "vit", "train", 4.0, 1000), row("scenic", "vit", "train", 12.0, 510),
                        row("torch_eager", "vit", "train", 6.0, 700), row("jax_jit", "vit", "train", 5.0, 990)},
                       tmp.file("rows.jsonl"));
  ASSERT_EQ(r.status, 0) << r.output;
  // case mode gemm batch params scenic torch jax vs-torch vs-jax ms GFLOP/s (peak%) load rounds
  const auto speed = line_of(r.output, "case", "vit ");
  ASSERT_EQ(speed.size(), 15u) << r.output;
  EXPECT_EQ(speed[3], "8");
  EXPECT_EQ(speed[4], "1000");
  EXPECT_EQ(speed[5], "12.0");  // scenic's best of 10 and 12
  EXPECT_EQ(speed[6], "8.0");   // torch's best of 8 and 6
  EXPECT_EQ(speed[7], "5.0");   // jax's best of 4 and 5
  EXPECT_EQ(speed[8], "1.50");  // 12 / 8
  EXPECT_EQ(speed[9], "2.40");  // 12 / 5
  EXPECT_EQ(speed[10], "9.0/10.0/11.0");
  EXPECT_EQ(speed[14], "2");  // two rounds
  // Memory of the same (fastest) rounds: 510 / 800 and 510 / 990; no GPU columns on CPU rows.
  const auto mem = line_of(r.output, "peak memory", "vit ");
  ASSERT_EQ(mem.size(), 8u) << r.output;
  EXPECT_EQ(mem[3], "510");
  EXPECT_EQ(mem[4], "800");
  EXPECT_EQ(mem[5], "990");
  EXPECT_EQ(mem[6], "0.64");
  EXPECT_EQ(mem[7], "0.52");
  EXPECT_EQ(r.output.find("GPU"), std::string::npos) << r.output;
}

TEST(CompareTable, FlagsDifferentParameterCountsAndMissingReferences) {
  scenic::testing::TempDir tmp;
  const auto r = table({row("scenic", "mixer", "eval", 30.0, 400, 1234), row("torch_eager", "mixer", "eval", 20.0, 600, 1235)},
                       tmp.file("rows.jsonl"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_CONTAINS(r.output, "MISMATCH 1234/1235");
  const auto mem = line_of(r.output, "peak memory", "mixer ");
  ASSERT_EQ(mem.size(), 8u) << r.output;
  EXPECT_EQ(mem[5], "-");  // no JAX row
  EXPECT_EQ(mem[6], "0.67");
  EXPECT_EQ(mem[7], "-");
}

TEST(CompareTable, GpuColumnsWhenARowRanOnAGpu) {
  scenic::testing::TempDir tmp;
  const auto r = table({row("scenic", "vit", "train", 100.0, 900, 1000, 300.0),
                        row("scenic", "vit", "train", 150.0, 950, 1000, 330.0, "aten+graph"),
                        row("torch_eager", "vit", "train", 50.0, 1500, 1000, 600.0),
                        row("jax_jit", "vit", "train", 60.0, 1400, 1000, 900.0)},
                       tmp.file("rows.jsonl"));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto eager = line_of(r.output, "peak memory", "vit        train aten ");
  ASSERT_EQ(eager.size(), 12u) << r.output;
  EXPECT_EQ(eager[8], "300");
  EXPECT_EQ(eager[9], "600");
  EXPECT_EQ(eager[10], "900");
  EXPECT_EQ(eager[11], "0.50");
  const auto graph = line_of(r.output, "peak memory", "vit        train aten+graph");
  ASSERT_EQ(graph.size(), 12u) << r.output;
  EXPECT_EQ(graph[11], "0.55");
  EXPECT_EQ(line_of(r.output, "case", "vit        train aten+graph")[8], "3.00");  // 150 / 50
  EXPECT_CONTAINS(r.output, "JAX's GPU peak covers the whole run");
}

TEST(CompareTable, NoRowsIsAnError) {
  scenic::testing::TempDir tmp;
  const auto r = table({}, tmp.file("empty.jsonl"));
  EXPECT_NE(r.status, 0);
  EXPECT_CONTAINS(r.output, "no rows in");
}

}  // namespace
}  // namespace scenic::e2e
