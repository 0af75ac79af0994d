#include "scenic/common_lib/plot.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/errors.h"

namespace scenic::common {
namespace {

const cv::Scalar kBlack(30, 30, 30), kGrid(225, 225, 225);
// BGR colours per split.
cv::Scalar split_colour(const std::string& split) {
  if (split == "train") return {180, 119, 31};   // blue
  if (split == "valid") return {14, 127, 255};   // orange
  if (split == "test") return {40, 39, 214};     // red
  return {75, 86, 140};
}

std::string tick_label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-3 || a >= 1e5)) std::snprintf(buf, sizeof(buf), "%.2e", v);
  else std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

void draw_panel(cv::Mat& img, cv::Rect box, const std::string& metric,
                const std::map<std::string, std::vector<std::pair<double, double>>>& series) {
  const int left = 70, right = 15, top = 28, bottom = 36;
  cv::Rect plot(box.x + left, box.y + top, box.width - left - right, box.height - top - bottom);
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& [_, pts] : series)
    for (const auto& [x, y] : pts)
      if (std::isfinite(y)) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  cv::putText(img, metric, {box.x + left, box.y + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.55, kBlack, 1, cv::LINE_AA);
  cv::rectangle(img, plot, kBlack, 1);
  if (x0 > x1) {
    cv::putText(img, "no finite values", {plot.x + 10, plot.y + plot.height / 2}, cv::FONT_HERSHEY_SIMPLEX, 0.5,
                kBlack, 1, cv::LINE_AA);
    return;
  }
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0) y0 -= std::max(1e-6, std::abs(y0) * 0.05), y1 += std::max(1e-6, std::abs(y1) * 0.05);
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return plot.x + (x - x0) / (x1 - x0) * plot.width; };
  auto py = [&](double y) { return plot.y + plot.height - (y - y0) / (y1 - y0) * plot.height; };
  for (int i = 0; i <= 4; ++i) {
    const double fy = y0 + (y1 - y0) * i / 4.0, fx = x0 + (x1 - x0) * i / 4.0;
    const int gy = static_cast<int>(py(fy)), gx = static_cast<int>(px(fx));
    cv::line(img, {plot.x + 1, gy}, {plot.x + plot.width - 1, gy}, kGrid, 1);
    cv::line(img, {gx, plot.y + 1}, {gx, plot.y + plot.height - 1}, kGrid, 1);
    cv::putText(img, tick_label(fy), {box.x + 4, gy + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.38, kBlack, 1, cv::LINE_AA);
    cv::putText(img, tick_label(fx), {gx - 14, plot.y + plot.height + 16}, cv::FONT_HERSHEY_SIMPLEX, 0.38, kBlack,
                1, cv::LINE_AA);
  }
  cv::putText(img, "step", {plot.x + plot.width / 2 - 12, plot.y + plot.height + 32}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
              kBlack, 1, cv::LINE_AA);
  int legend_y = plot.y + 14;
  for (const auto& [split, pts] : series) {
    const cv::Scalar c = split_colour(split);
    std::vector<cv::Point> line;
    for (const auto& [x, y] : pts)
      if (std::isfinite(y)) line.emplace_back(static_cast<int>(px(x)), static_cast<int>(py(y)));
    if (line.size() > 1 && split != "test") cv::polylines(img, line, false, c, 2, cv::LINE_AA);
    for (const auto& p : line)
      if (line.size() <= 30 || split == "test") cv::circle(img, p, 3, c, cv::FILLED, cv::LINE_AA);
    cv::line(img, {plot.x + plot.width - 70, legend_y - 4}, {plot.x + plot.width - 52, legend_y - 4}, c, 2);
    cv::putText(img, split, {plot.x + plot.width - 48, legend_y}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kBlack, 1,
                cv::LINE_AA);
    legend_y += 16;
  }
}

}  // namespace

MetricsFile read_metrics_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open '" + path + "': is it a workdir of `scenic train`?");
  MetricsFile out;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number() || !j.contains("split")) {
      ++out.skipped_lines;
      continue;
    }
    const double step = j["step"].get<double>();
    const std::string split = j["split"].is_string() ? j["split"].get<std::string>() : "?";
    for (const auto& [k, v] : j.items()) {
      if (k == "step" || k == "split") continue;
      if (v.is_number()) out.curves[k][split].emplace_back(step, v.get<double>());
      else if (v.is_null()) out.curves[k][split].emplace_back(step, NAN);
    }
  }
  return out;
}

std::vector<std::string> default_plot_metrics(const Curves& curves) {
  std::vector<std::string> out;
  if (curves.count("loss")) out.push_back("loss");
  for (const auto& [name, _] : curves)
    if ((name.find("acc") != std::string::npos && name.find("accum") == std::string::npos) ||
        name.find("iou") != std::string::npos ||
        name.find("prec") != std::string::npos || name.rfind("AP", 0) == 0)
      out.push_back(name);
  if (curves.count("learning_rate")) out.push_back("learning_rate");
  return out;
}

void plot_curves(const Curves& curves, const std::vector<std::string>& metrics, const std::string& out_path,
                 const std::string& title) {
  if (metrics.empty()) throw Error("nothing to plot: no metrics given and none of loss/accuracy/learning_rate found");
  for (const auto& m : metrics)
    if (!curves.count(m)) {
      std::string have;
      for (const auto& [k, _] : curves) have += (have.empty() ? "" : ", ") + k;
      throw Error("no metric '" + m + "' in metrics.jsonl (it has: " + have + ")");
    }
  const int cols = metrics.size() == 1 ? 1 : 2;
  const int rows = static_cast<int>((metrics.size() + cols - 1) / cols);
  const int pw = 560, ph = 340, header = 34;
  cv::Mat img(header + rows * ph, cols * pw, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(img, title, {12, 24}, cv::FONT_HERSHEY_SIMPLEX, 0.6, kBlack, 1, cv::LINE_AA);
  for (size_t i = 0; i < metrics.size(); ++i) {
    const int r = static_cast<int>(i) / cols, c = static_cast<int>(i) % cols;
    draw_panel(img, cv::Rect(c * pw, header + r * ph, pw, ph), metrics[i], curves.at(metrics[i]));
  }
  bool ok = false;
  try {
    ok = cv::imwrite(out_path, img);
  } catch (const cv::Exception& e) {
    throw Error("cannot write '" + out_path + "': " + e.what());
  }
  if (!ok) throw Error("cannot write '" + out_path + "' (unwritable directory or not a .png/.jpg name)");
}

}  // namespace scenic::common
