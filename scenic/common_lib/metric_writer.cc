#include "scenic/common_lib/metric_writer.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/summary_writer.h"

namespace scenic::common {

MetricWriter::MetricWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  // A process killed in the middle of a write leaves a partial last line; start on a
  // fresh line so that only that one line is unreadable, not the next one too.
  bool ends_mid_line = false;
  {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (in && in.tellg() > 0) {
      in.seekg(-1, std::ios::end);
      ends_mid_line = in.get() != '\n';
    }
  }
  out_.open(path, std::ios::app);
  if (!out_) throw Error("cannot open '" + path + "' for writing");
  if (ends_mid_line) out_ << "\n" << std::flush;
}

void MetricWriter::write(int64_t step, const std::string& split,
                         const std::map<std::string, double>& scalars) {
  if (path_.empty()) {
    if (summary_ != nullptr) summary_->scalars(step, split + "_", scalars);
    return;
  }
  nlohmann::ordered_json line;
  line["step"] = step;
  line["split"] = split;
  for (const auto& [k, v] : scalars) line[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nullptr;
  out_ << line.dump() << "\n" << std::flush;
  if (!out_) throw Error("cannot write to '" + path_ + "' (disk full?)");
  if (summary_ != nullptr) summary_->scalars(step, split + "_", scalars);
}

}  // namespace scenic::common
