#include "scenic/common_lib/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::common {
namespace {

using Json = ConfigDict::Json;

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  if (path.empty()) return parts;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (part.empty()) throw Error("config path '" + path + "' has an empty component");
    parts.push_back(part);
  }
  return parts;
}

std::string join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + "." + b;
}

// YAML plain scalars carry no type; infer it the way YAML 1.2's core schema does.
// Quoted scalars (tag "!") are always strings.
Json scalar_to_json(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;
  static const std::regex int_re(R"([-+]?[0-9]+)");
  static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (s == "~" || s == "null" || s == "Null" || s == "NULL" || s.empty()) return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (std::regex_match(s, int_re)) {
    try {
      return static_cast<int64_t>(std::stoll(s));
    } catch (const std::out_of_range&) {
      return std::stod(s);
    }
  }
  if (std::regex_match(s, float_re)) return std::stod(s);
  if (s == ".inf" || s == "+.inf" || s == ".Inf") return std::numeric_limits<double>::infinity();
  if (s == "-.inf" || s == "-.Inf") return -std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

// `path` is the dotted key of `node`, for messages.
Json yaml_to_json(const YAML::Node& node, const std::string& where, const std::string& path = "") {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return scalar_to_json(node);
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (const auto& item : node) out.push_back(yaml_to_json(item, where, path));
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        const std::string key = kv.first.as<std::string>();
        const std::string at = where + " line " + std::to_string(kv.first.Mark().line + 1);
        if (key.find('.') != std::string::npos)
          throw Error(at + ": config key '" + join(path, key) + "' must not contain '.'");
        if (out.contains(key)) throw Error(at + ": duplicate config key '" + join(path, key) + "'");
        out[key] = yaml_to_json(kv.second, where, join(path, key));
      }
      return out;
    }
  }
  return nullptr;
}

void emit(YAML::Emitter& out, const Json& j) {
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      out << YAML::Key << k << YAML::Value;
      emit(out, v);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    // Short lists of scalars read best inline: `size: [4, 4]`.
    bool flat = std::all_of(j.begin(), j.end(), [](const Json& e) { return e.is_primitive(); });
    if (flat) out << YAML::Flow;
    out << YAML::BeginSeq;
    for (const auto& v : j) emit(out, v);
    out << YAML::EndSeq;
  } else if (j.is_null()) {
    out << YAML::Null;
  } else if (j.is_boolean()) {
    out << (j.get<bool>() ? "true" : "false");
  } else if (j.is_number_integer()) {
    out << j.get<int64_t>();
  } else if (j.is_number_float()) {
    double v = j.get<double>();
    // YAML spells the non-finite floats .inf/.nan; "inf" would reload as a string.
    if (std::isnan(v)) { out << ".nan"; return; }
    if (std::isinf(v)) { out << (v > 0 ? ".inf" : "-.inf"); return; }
    // nlohmann prints the shortest text that reads back to the same double (0.1, not
    // 0.10000000000000001).
    std::string s = Json(v).dump();
    // Keep the float type visible on reload ("1" would come back as an int).
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    out << s;
  } else if (j.is_string()) {
    const std::string s = j.get<std::string>();
    // Quote strings that would otherwise reload as another type (or not parse at all:
    // "@x", "[", "a: b: c" make YAML::Load throw).
    bool quote = s.empty();
    try {
      quote = quote || !scalar_to_json(YAML::Load(s)).is_string();
    } catch (const YAML::Exception&) {
      quote = true;
    }
    if (quote) out << YAML::DoubleQuoted;
    out << s;
  }
}

std::string type_name(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "bool";
  if (j.is_number_integer()) return "int";
  if (j.is_number_float()) return "float";
  if (j.is_string()) return "string";
  if (j.is_array()) return "list";
  return "mapping";
}

void collect_leaves(const Json& j, const std::string& path, std::vector<std::string>* out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) collect_leaves(v, join(path, k), out);
  } else if (!path.empty()) {
    out->push_back(path);
  }
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Farther than a third of the name is a different word, not a typo.
  if (best_d > std::max<size_t>(2, name.size() / 3)) return "";
  return best;
}

ConfigDict::ConfigDict() : state_(std::make_shared<State>()) {}
ConfigDict::ConfigDict(std::shared_ptr<State> state, std::string prefix)
    : state_(std::move(state)), prefix_(std::move(prefix)) {}

ConfigDict ConfigDict::from_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("config file '" + path + "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_yaml_string(ss.str(), path);
}

ConfigDict ConfigDict::from_yaml_string(const std::string& text, const std::string& source) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error("config file '" + source + "': invalid YAML at line " +
                std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  ConfigDict c;
  c.state_->source = source;
  Json root = yaml_to_json(node, source);
  if (root.is_null()) root = Json::object();
  if (!root.is_object()) throw Error("config file '" + source + "' must hold a mapping at the top");
  c.state_->root = std::move(root);
  return c;
}

std::string ConfigDict::full(const std::string& path) const { return join(prefix_, path); }

const Json* ConfigDict::find(const std::string& full_path) const {
  const Json* node = &state_->root;
  for (const auto& part : split_path(full_path)) {
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end()) return nullptr;
    node = &*it;
  }
  return node;
}

Json& ConfigDict::ensure(const std::string& full_path) {
  Json* node = &state_->root;
  std::string so_far;
  for (const auto& part : split_path(full_path)) {
    if (!node->is_object()) {
      if (node->is_null()) {
        *node = Json::object();
      } else {
        throw Error("config key '" + so_far + "' is a " + type_name(*node) +
                    ", not a mapping, so '" + full_path + "' cannot be set");
      }
    }
    so_far = join(so_far, part);
    node = &(*node)[part];
  }
  return *node;
}

void ConfigDict::apply_override(const std::string& key, const std::string& value) {
  Json parsed;
  try {
    parsed = yaml_to_json(YAML::Load(value.empty() ? "''" : value), "override");
  } catch (const YAML::Exception& e) {
    throw Error("config override '" + key + "=" + value + "': invalid value: " + e.msg);
  }
  ensure(full(key)) = std::move(parsed);
  state_->overridden.insert(full(key));
}

void ConfigDict::apply_overrides(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    const std::string flag = "--config.";
    if (a.rfind(flag, 0) != 0) throw Error("unexpected argument '" + a + "' (overrides look like --config.a.b=value)");
    a = a.substr(flag.size());
    auto eq = a.find('=');
    if (eq != std::string::npos) {
      apply_override(a.substr(0, eq), a.substr(eq + 1));
    } else if (i + 1 < args.size()) {
      apply_override(a, args[++i]);
    } else {
      throw Error("config override '--config." + a + "' has no value");
    }
  }
}

bool ConfigDict::has(const std::string& path) const {
  const Json* n = find(full(path));
  return n != nullptr && !n->is_null();
}

void ConfigDict::type_error(const std::string& full_path, const char* expected, const Json& got) const {
  throw Error("config key '" + full_path + "' (" + state_->source + "): expected " + expected +
              ", got " + type_name(got) + " " + got.dump());
}

namespace {
template <typename T>
struct TypeName;
template <> struct TypeName<bool> { static constexpr const char* v = "bool"; };
template <> struct TypeName<int> { static constexpr const char* v = "int"; };
template <> struct TypeName<int64_t> { static constexpr const char* v = "int"; };
template <> struct TypeName<double> { static constexpr const char* v = "float"; };
template <> struct TypeName<float> { static constexpr const char* v = "float"; };
template <> struct TypeName<std::string> { static constexpr const char* v = "string"; };
}  // namespace

template <typename T>
T ConfigDict::convert(const std::string& full_path, const Json& node) const {
  if constexpr (std::is_same_v<T, bool>) {
    if (!node.is_boolean()) type_error(full_path, "bool", node);
    return node.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!node.is_number_integer()) type_error(full_path, "int", node);
    int64_t v = node.get<int64_t>();
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
      type_error(full_path, "int in range", node);
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!node.is_number()) type_error(full_path, "float", node);
    return static_cast<T>(node.get<double>());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!node.is_string()) type_error(full_path, "string", node);
    return node.get<std::string>();
  } else {
    using E = typename T::value_type;
    if (!node.is_array()) {
      // A scalar where a list is expected is a common shorthand: `size: 4` -> [4].
      if (node.is_primitive() && !node.is_null()) return T{convert<E>(full_path, node)};
      type_error(full_path, (std::string("list of ") + TypeName<E>::v).c_str(), node);
    }
    T out;
    for (size_t i = 0; i < node.size(); ++i)
      out.push_back(convert<E>(full_path + "[" + std::to_string(i) + "]", node[i]));
    return out;
  }
}

template <typename T>
T ConfigDict::get(const std::string& path) const {
  const std::string fp = full(path);
  state_->accessed.insert(fp);
  const Json* n = find(fp);
  if (n == nullptr || n->is_null()) {
    std::vector<std::string> leaves;
    collect_leaves(state_->root, "", &leaves);
    std::string hint = closest_match(fp, leaves);
    throw Error("config key '" + fp + "' is required but missing from " + state_->source +
                (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  return convert<T>(fp, *n);
}

template <typename T>
T ConfigDict::get(const std::string& path, const T& default_value) const {
  const std::string fp = full(path);
  state_->accessed.insert(fp);
  const Json* n = find(fp);
  if (n == nullptr) {
    // Record the default so the saved config shows every value the run used.
    const_cast<ConfigDict*>(this)->ensure(fp) = Json(default_value);
    return default_value;
  }
  if (n->is_null()) return default_value;
  return convert<T>(fp, *n);
}

template <typename T>
std::optional<T> ConfigDict::get_optional(const std::string& path) const {
  const std::string fp = full(path);
  state_->accessed.insert(fp);
  const Json* n = find(fp);
  if (n == nullptr || n->is_null()) return std::nullopt;
  return convert<T>(fp, *n);
}

template <typename T>
void ConfigDict::set(const std::string& path, const T& value) {
  ensure(full(path)) = Json(value);
}

#define SCENIC_CONFIG_INSTANTIATE(T)                                            \
  template T ConfigDict::get<T>(const std::string&) const;                      \
  template T ConfigDict::get<T>(const std::string&, const T&) const;            \
  template std::optional<T> ConfigDict::get_optional<T>(const std::string&) const; \
  template void ConfigDict::set<T>(const std::string&, const T&);
SCENIC_CONFIG_INSTANTIATE(bool)
SCENIC_CONFIG_INSTANTIATE(int)
SCENIC_CONFIG_INSTANTIATE(int64_t)
SCENIC_CONFIG_INSTANTIATE(float)
SCENIC_CONFIG_INSTANTIATE(double)
SCENIC_CONFIG_INSTANTIATE(std::string)
SCENIC_CONFIG_INSTANTIATE(std::vector<int>)
SCENIC_CONFIG_INSTANTIATE(std::vector<int64_t>)
SCENIC_CONFIG_INSTANTIATE(std::vector<double>)
SCENIC_CONFIG_INSTANTIATE(std::vector<std::string>)
#undef SCENIC_CONFIG_INSTANTIATE

ConfigDict ConfigDict::sub(const std::string& path) const {
  const std::string fp = full(path);
  const Json* n = find(fp);
  if (n != nullptr && !n->is_null() && !n->is_object())
    type_error(fp, "mapping", *n);
  if (n == nullptr || n->is_null()) const_cast<ConfigDict*>(this)->ensure(fp) = Json::object();
  return ConfigDict(state_, fp);
}

std::vector<std::string> ConfigDict::keys() const {
  std::vector<std::string> out;
  const Json* n = find(prefix_);
  if (n && n->is_object())
    for (const auto& [k, v] : n->items()) out.push_back(k);
  return out;
}

void ConfigDict::mark_used(const std::string& path) const {
  const std::string fp = full(path);
  state_->accessed.insert(fp);
  if (const Json* n = find(fp)) {
    std::vector<std::string> leaves;
    collect_leaves(*n, fp, &leaves);
    state_->accessed.insert(leaves.begin(), leaves.end());
  }
}

const ConfigDict::Json& ConfigDict::json(const std::string& path) const {
  mark_used(path);
  const Json* n = find(full(path));
  if (n == nullptr) throw Error("config key '" + full(path) + "' is required but missing");
  return *n;
}

std::vector<std::string> ConfigDict::unused_keys() const {
  std::vector<std::string> leaves, unused;
  collect_leaves(state_->root, "", &leaves);
  for (const auto& leaf : leaves) {
    // A leaf counts as read when it, or a mapping above it, was read as a whole.
    bool used = false;
    for (std::string p = leaf;; ) {
      if (state_->accessed.count(p)) { used = true; break; }
      auto dot = p.rfind('.');
      if (dot == std::string::npos) break;
      p = p.substr(0, dot);
    }
    // An empty mapping someone opened with sub() is not a typo.
    const Json* n = find(leaf);
    if (!used && n && n->is_object()) used = true;
    if (!used) unused.push_back(leaf);
  }
  return unused;
}

void ConfigDict::check_all_used() const {
  auto unused = unused_keys();
  if (unused.empty()) return;
  std::vector<std::string> known(state_->accessed.begin(), state_->accessed.end());
  const std::string& key = unused.front();
  std::string hint = closest_match(key, known);
  bool from_override = false;
  for (const auto& o : state_->overridden)
    if (key == o || key.rfind(o + ".", 0) == 0) from_override = true;
  std::string msg = "unknown config key '" + key + "' " +
                    (from_override ? std::string("from a --config override") : "in " + state_->source) +
                    " (nothing reads it)";
  if (!hint.empty()) msg += "; did you mean '" + hint + "'?";
  if (unused.size() > 1) msg += " [" + std::to_string(unused.size() - 1) + " more unknown key(s)]";
  throw Error(msg);
}

std::string ConfigDict::to_yaml() const {
  YAML::Emitter out;
  emit(out, state_->root);
  return std::string(out.c_str()) + "\n";
}

void ConfigDict::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) throw Error("cannot write config to '" + path + "'");
    f << to_yaml();
    f.flush();
    if (!f) throw Error("cannot write config to '" + path + "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error("cannot write config to '" + path + "'");
}

}  // namespace scenic::common
