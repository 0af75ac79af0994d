#include "scenic/common_lib/plot.h"

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <fstream>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::TempDir;

std::string write_metrics(const TempDir& tmp) {
  const auto path = tmp.file("metrics.jsonl");
  std::ofstream out(path);
  out << R"({"step":0,"split":"train","num_trainable_params":10})" "\n";
  for (int s = 10; s <= 40; s += 10)
    out << R"({"step":)" << s << R"(,"split":"train","loss":)" << 2.0 / s << R"(,"accuracy":)" << s / 50.0
        << R"(,"learning_rate":0.001,"accum_train_time_s":1})" "\n";
  out << R"({"step":20,"split":"valid","loss":0.2,"accuracy":0.5})" "\n";
  out << R"({"step":40,"split":"valid","loss":null,"accuracy":0.7})" "\n";
  out << R"({"step":40,"split":"test","loss":0.1,"accuracy":0.75})" "\n";
  out << R"({"step":50,"split":"train","lo)";  // a run killed mid-write
  return path;
}

TEST(ReadMetricsJsonl, GroupsByMetricAndSplitAndSkipsBrokenLines) {
  TempDir tmp;
  auto file = read_metrics_jsonl(write_metrics(tmp));
  EXPECT_EQ(file.skipped_lines, 1);
  ASSERT_EQ(file.curves.at("loss").at("train").size(), 4u);
  EXPECT_DOUBLE_EQ(file.curves.at("loss").at("train")[1].first, 20);
  EXPECT_DOUBLE_EQ(file.curves.at("loss").at("train")[1].second, 0.1);
  // null (a NaN that was written) is kept as NaN, so the gap shows.
  EXPECT_TRUE(std::isnan(file.curves.at("loss").at("valid")[1].second));
  EXPECT_EQ(file.curves.at("accuracy").at("test").size(), 1u);
  EXPECT_EQ(default_plot_metrics(file.curves), (std::vector<std::string>{"loss", "accuracy", "learning_rate"}));
}

TEST(PlotCurves, WritesAPngWithOnePanelPerMetric) {
  TempDir tmp;
  auto file = read_metrics_jsonl(write_metrics(tmp));
  const auto png = tmp.file("curves.png");
  plot_curves(file.curves, default_plot_metrics(file.curves), png, "run");
  cv::Mat img = cv::imread(png);
  ASSERT_FALSE(img.empty());
  // 3 panels in 2 columns of 560 x 340, plus a 34-pixel title row.
  EXPECT_EQ(img.cols, 2 * 560);
  EXPECT_EQ(img.rows, 34 + 2 * 340);
  // The train curve's colour (BGR 180,119,31) is drawn.
  int blue = 0;
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) {
      auto p = img.at<cv::Vec3b>(y, x);
      blue += (p[0] == 180 && p[1] == 119 && p[2] == 31);
    }
  EXPECT_GT(blue, 100);
}

TEST(PlotCurves, UnknownMetricAndMissingFileAreClearErrors) {
  TempDir tmp;
  auto file = read_metrics_jsonl(write_metrics(tmp));
  EXPECT_CONTAINS(testing::error_of([&] { plot_curves(file.curves, {"acuracy"}, tmp.file("x.png"), ""); }),
                  "no metric 'acuracy'");
  EXPECT_CONTAINS(testing::error_of([&] { read_metrics_jsonl(tmp.file("nope.jsonl")); }), "nope.jsonl");
  EXPECT_CONTAINS(testing::error_of([&] { plot_curves(file.curves, {"loss"}, tmp.file("no/dir/x.png"), ""); }),
                  "no/dir/x.png");
}

}  // namespace
}  // namespace scenic::common
