#include "scenic/common_lib/metric_writer.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "scenic/common_lib/errors.h"

namespace scenic::common {

MetricWriter::MetricWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  out_.open(path, std::ios::app);
  if (!out_) throw Error("cannot open '" + path + "' for writing");
}

void MetricWriter::write(int64_t step, const std::string& split,
                         const std::map<std::string, double>& scalars) {
  if (path_.empty()) return;
  nlohmann::ordered_json line;
  line["step"] = step;
  line["split"] = split;
  for (const auto& [k, v] : scalars) line[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nullptr;
  out_ << line.dump() << "\n" << std::flush;
  if (!out_) throw Error("cannot write to '" + path_ + "' (disk full?)");
}

}  // namespace scenic::common
