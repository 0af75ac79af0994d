// MetricWriter: appends one JSON object per line to `<workdir>/metrics.jsonl`:
// {"step": 1000, "split": "valid", "accuracy": 0.91, "loss": 0.26}. The counterpart
// of CLU's metric writers in Scenic; `mirror_to` sends the same scalars to TensorBoard.
// Non-finite values are written as null (JSON has no NaN).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>

namespace scenic::common {

class SummaryWriter;

class MetricWriter {
 public:
  explicit MetricWriter(const std::string& path);  // "" writes nothing
  // Also write every scalar to TensorBoard as `<split>_<name>` (Scenic's tags).
  void mirror_to(SummaryWriter* summary) { summary_ = summary; }
  void write(int64_t step, const std::string& split, const std::map<std::string, double>& scalars);

 private:
  std::string path_;
  std::ofstream out_;
  SummaryWriter* summary_ = nullptr;
};

}  // namespace scenic::common
