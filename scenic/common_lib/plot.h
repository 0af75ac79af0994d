// Learning curves from a workdir's metrics.jsonl, drawn to a PNG (`scenic plot`).
//
// Scenic users look at TensorBoard; this is the quick look that needs nothing else:
// one panel per metric (by default loss, accuracy-like metrics and learning_rate), x
// = step, one line per split (train, valid; test as points), axis ticks labelled.
// Lines of metrics.jsonl that do not parse (e.g. the last line of a killed run) are
// skipped and counted.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace scenic::common {

// metric -> split -> (step, value) points, in file order.
using Curves = std::map<std::string, std::map<std::string, std::vector<std::pair<double, double>>>>;

struct MetricsFile {
  Curves curves;
  int skipped_lines = 0;
};

// Throws scenic::Error when the file cannot be opened.
MetricsFile read_metrics_jsonl(const std::string& path);

// The metrics plotted when none are named: loss, every metric with "acc", "iou" or
// "prec" in its name, and learning_rate, in that order, those present only.
std::vector<std::string> default_plot_metrics(const Curves& curves);

// Draws the panels into a PNG at `out_path`; throws scenic::Error naming an unknown
// metric (with the available ones) or an unwritable path.
void plot_curves(const Curves& curves, const std::vector<std::string>& metrics, const std::string& out_path,
                 const std::string& title);

}  // namespace scenic::common
