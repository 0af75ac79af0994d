#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/dataset.h"

namespace scenic::dataset {

DatasetRegistry& DatasetRegistry::global() {
  static DatasetRegistry registry;
  return registry;
}

void DatasetRegistry::add(const std::string& name, DatasetBuilder builder) {
  if (builders_.count(name)) throw Error("dataset '" + name + "' is already registered");
  builders_[name] = std::move(builder);
}

std::unique_ptr<Dataset> DatasetRegistry::build(const std::string& name,
                                                const DatasetOptions& opts) const {
  auto it = builders_.find(name);
  if (it == builders_.end()) {
    std::string hint = common::closest_match(name, names());
    throw Error("unknown dataset_name '" + name + "'" +
                (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; `scenic list datasets` shows them all");
  }
  return it->second(opts);
}

std::vector<std::string> DatasetRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : builders_) out.push_back(name);
  return out;
}

}  // namespace scenic::dataset
