// ConfigDict: a YAML-backed configuration tree with typed, path-addressed access.
//
// Mirrors Scenic's ml_collections.ConfigDict plus its ConfigDictWithAccessRecord:
//   - loaded from a YAML file, overridden by dotted command-line keys
//     (`--config.model.hidden_size=192`), saved back as the resolved YAML;
//   - `get<int>("model.num_layers")` throws scenic::Error naming the path when the key is
//     missing or has the wrong type; `get<int>(path, default)` records the default so the
//     saved copy shows every value the run used;
//   - every read is recorded; `check_all_used()` after set-up rejects keys that nothing
//     read (typos in the file or in an override) and suggests the closest known key.
// A ConfigDict is a cheap handle: copies and `sub()` views share one tree and one record.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace scenic::common {

class ConfigDict {
 public:
  using Json = nlohmann::ordered_json;

  ConfigDict();  // empty tree
  static ConfigDict from_yaml_file(const std::string& path);
  static ConfigDict from_yaml_string(const std::string& text,
                                     const std::string& source = "<string>");

  // `key` is a dotted path relative to this view; `value` is parsed as YAML
  // ("3" -> int, "1e-3" -> float, "[4, 4]" -> list, "'7'" -> string, "null").
  void apply_override(const std::string& key, const std::string& value);
  // Parses "--config.a.b=v" / "--config.a.b v" style arguments; throws on malformed ones.
  void apply_overrides(const std::vector<std::string>& args);

  bool has(const std::string& path) const;  // present and not null; not a read
  template <typename T>
  T get(const std::string& path) const;
  template <typename T>
  T get(const std::string& path, const T& default_value) const;
  template <typename T>
  std::optional<T> get_optional(const std::string& path) const;  // missing or null -> nullopt

  template <typename T>
  void set(const std::string& path, const T& value);

  // A view rooted at `path` (must be a mapping, created empty if missing).
  ConfigDict sub(const std::string& path) const;
  std::vector<std::string> keys() const;  // child keys of this view, in file order
  std::string prefix() const { return prefix_; }

  // Marks `path` and everything under it as read.
  void mark_used(const std::string& path = "") const;
  std::vector<std::string> unused_keys() const;  // full dotted paths of unread leaves
  void check_all_used() const;  // throws scenic::Error on the first unread key

  std::string to_yaml() const;  // the whole tree (not only this view)
  void save(const std::string& path) const;

  // Raw access for code that walks the tree (marks the subtree used).
  const Json& json(const std::string& path = "") const;

 private:
  struct State {
    Json root = Json::object();
    std::set<std::string> accessed;    // full paths read (or defaulted)
    std::set<std::string> overridden;  // full paths set by apply_override
    std::string source = "<string>";
  };
  ConfigDict(std::shared_ptr<State> state, std::string prefix);
  std::string full(const std::string& path) const;
  const Json* find(const std::string& full_path) const;
  Json& ensure(const std::string& full_path);
  [[noreturn]] void type_error(const std::string& full_path, const char* expected,
                               const Json& got) const;
  template <typename T>
  T convert(const std::string& full_path, const Json& node) const;

  std::shared_ptr<State> state_;
  std::string prefix_;
};

// Levenshtein distance; used for "did you mean" suggestions everywhere.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `name`, or "" when none is reasonably close.
std::string closest_match(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace scenic::common
