// Registry<Factory>: a name -> factory map for models, datasets and trainers.
//
// Mirrors Scenic's model/dataset/trainer registries (`get_model_cls`, DatasetRegistry,
// `get_trainer`). Entries are added by explicit registration functions that `main`
// calls (static-initializer registration can be dropped by the linker). Unknown names
// get an error that names the config key and the closest registered name.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"

namespace scenic::common {

template <typename Factory>
class Registry {
 public:
  // `key` is the config key that selects an entry ("model_name"), used in errors.
  explicit Registry(std::string key) : key_(std::move(key)) {}

  void add(const std::string& name, Factory factory) {
    if (entries_.count(name)) throw Error(key_ + " '" + name + "' is registered twice");
    entries_.emplace(name, std::move(factory));
  }

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }

  const Factory& get(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string hint = closest_match(name, names());
      throw Error("unknown " + key_ + " '" + name + "'" +
                  (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                  "; `scenic list` shows the registered names");
    }
    return it->second;
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, _] : entries_) out.push_back(name);
    return out;
  }

 private:
  std::string key_;
  std::map<std::string, Factory> entries_;
};

}  // namespace scenic::common
