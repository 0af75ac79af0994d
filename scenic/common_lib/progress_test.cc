#include "scenic/common_lib/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "scenic/common_lib/metric_writer.h"

namespace scenic::common {
namespace {

TEST(ProgressBar, FormatsDurations) {
  EXPECT_EQ(ProgressBar::format_duration(0.4), "0s");
  EXPECT_EQ(ProgressBar::format_duration(59.6), "1m00s");
  EXPECT_EQ(ProgressBar::format_duration(61), "1m01s");
  EXPECT_EQ(ProgressBar::format_duration(3723), "1h02m03s");
  EXPECT_EQ(ProgressBar::format_duration(-1), "?");
}

TEST(ProgressBar, PlainLinesWhenNotATerminal) {
  // A file is not a terminal: the bar prints plain lines.
  const std::string path = ::testing::TempDir() + "/progress_out.txt";
  FILE* out = std::fopen(path.c_str(), "w");
  ASSERT_NE(out, nullptr);
  ProgressBar bar(100, 0, 32, /*plain_every_s=*/0.0, out);
  EXPECT_TRUE(bar.due());
  bar.update(50, 0.25);
  bar.finish();
  std::fclose(out);
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("progress: 50/100", 0), 0u) << line;
  EXPECT_NE(line.find("loss 0.2500"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
}

TEST(MetricWriter, OneJsonObjectPerLineWithNullForNonFinite) {
  const std::string path = ::testing::TempDir() + "/metrics_test.jsonl";
  std::remove(path.c_str());
  {
    MetricWriter w(path);
    w.write(10, "train", {{"loss", 0.5}, {"accuracy", 0.75}});
    w.write(20, "valid", {{"loss", std::nan("")}});
  }
  std::ifstream in(path);
  std::string l1, l2;
  std::getline(in, l1);
  std::getline(in, l2);
  auto a = nlohmann::json::parse(l1), b = nlohmann::json::parse(l2);
  EXPECT_EQ(a["step"], 10);
  EXPECT_EQ(a["split"], "train");
  EXPECT_DOUBLE_EQ(a["loss"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(a["accuracy"].get<double>(), 0.75);
  EXPECT_EQ(b["split"], "valid");
  EXPECT_TRUE(b["loss"].is_null());
}

}  // namespace
}  // namespace scenic::common
