#include "scenic/dataset_lib/tfds_info.h"

// POSIX directory calls, not std::filesystem: the torch wheel's libtorch exports its own,
// incompatible std::filesystem (pytorch/pytorch#133437).
#include <dirent.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

using Json = nlohmann::json;

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw Error(dir + ": cannot list directory");
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json read_json(const std::string& path) {
  try {
    return Json::parse(read_text(path));
  } catch (const Json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// The proto-JSON encoding writes int64 as strings ("60000"); accept numbers too.
int64_t as_int(const Json& v, const std::string& path, const std::string& what) {
  try {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) {
      size_t used = 0;
      const int64_t x = std::stoll(v.get<std::string>(), &used);
      if (used == v.get<std::string>().size()) return x;
    }
  } catch (const std::exception&) {
  }
  throw Error(path + ": " + what + " is not an integer: " + v.dump());
}

// "1.10.0" -> {1, 10, 0}; empty when not a version.
std::vector<int64_t> parse_version(const std::string& s) {
  std::vector<int64_t> parts;
  std::stringstream ss(s);
  std::string p;
  while (std::getline(ss, p, '.')) {
    if (p.empty() || p.size() > 9 || !std::all_of(p.begin(), p.end(), ::isdigit)) return {};
    parts.push_back(std::stoll(p));
  }
  if (parts.size() != 3 || s.back() == '.') return {};
  return parts;
}

bool version_matches(const std::string& version, const std::string& pattern) {
  std::stringstream vs(version), ps(pattern);
  std::string v, p;
  int n = 0;
  while (std::getline(ps, p, '.')) {
    if (!std::getline(vs, v, '.')) return false;
    if (p != "*" && p != v) return false;
    ++n;
  }
  return n == 3 && !std::getline(vs, v, '.');
}

std::string last_component(const std::string& dotted) {
  const size_t dot = dotted.rfind('.');
  return dot == std::string::npos ? dotted : dotted.substr(dot + 1);
}

std::vector<int64_t> dims(const Json& list, const std::string& path) {
  std::vector<int64_t> out;
  for (const auto& d : list) out.push_back(d.is_null() ? -1 : as_int(d, path, "a shape dimension"));
  return out;
}

// Features from the proto-JSON layout (TFDS >= 4.5: {"featuresDict": {"features": {...}}})
// or the older one ({"type": ..., "content": {key: {"type": ..., "content": {...}}}}).
std::map<std::string, TfdsFeatureInfo> parse_features(const Json& j, const std::string& path) {
  std::map<std::string, TfdsFeatureInfo> out;
  if (j.contains("featuresDict")) {
    const Json features = j["featuresDict"].value("features", Json::object());  // kept alive
    for (const auto& [key, f] : features.items()) {
      TfdsFeatureInfo info;
      info.type = last_component(f.value("pythonClassName", ""));
      if (f.contains("image")) {
        const Json& im = f["image"];
        if (im.contains("shape")) info.shape = dims(im["shape"].value("dimensions", Json::array()), path);
        info.encoding_format = im.value("encodingFormat", "");
      } else if (f.contains("tensor") && f["tensor"].contains("shape")) {
        info.shape = dims(f["tensor"]["shape"].value("dimensions", Json::array()), path);
      } else if (f.contains("classLabel")) {
        info.num_classes = as_int(f["classLabel"].value("numClasses", Json("0")), path,
                                  "features." + key + ".numClasses");
      }
      out[key] = info;
    }
  } else if (j.contains("content") && j["content"].is_object()) {
    for (const auto& [key, f] : j["content"].items()) {
      TfdsFeatureInfo info;
      info.type = last_component(f.value("type", ""));
      const Json c = f.value("content", Json::object());
      if (c.is_object()) {
        if (c.contains("shape")) info.shape = dims(c["shape"], path);
        info.encoding_format = c.value("encoding_format", "");
        if (c.contains("num_classes")) info.num_classes = as_int(c["num_classes"], path, "num_classes");
      }
      out[key] = info;
    }
  }
  return out;
}

// TFDS's default shard file name template, and its placeholders.
std::string shard_path(const std::string& dir, std::string tmpl, const std::string& dataset,
                       const std::string& split, int64_t index, int64_t count) {
  if (tmpl.empty()) tmpl = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}";
  char x[16], y[16];
  std::snprintf(x, sizeof(x), "%05lld", static_cast<long long>(index));
  std::snprintf(y, sizeof(y), "%05lld", static_cast<long long>(count));
  const std::vector<std::pair<std::string, std::string>> subs = {
      {"{DATASET}", dataset},           {"{SPLIT}", split},
      {"{FILEFORMAT}", "tfrecord"},     {"{SHARD_X_OF_Y}", std::string(x) + "-of-" + y},
      {"{SHARD_INDEX}", x},             {"{NUM_SHARDS}", y}};
  for (const auto& [from, to] : subs) {
    for (size_t at = tmpl.find(from); at != std::string::npos; at = tmpl.find(from, at + to.size())) {
      tmpl.replace(at, from.size(), to);
    }
  }
  return dir + "/" + tmpl;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Python's int(round(x)) (halves to even), which TFDS uses for percent boundaries.
int64_t round_half_even(double x) {
  const double r = std::nearbyint(x);  // default rounding mode: to nearest, ties to even
  return static_cast<int64_t>(r);
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// One slice bound: "" (none), "12", "-3", "50%"; as an absolute record index in [0, n].
int64_t slice_bound(const std::string& text, int64_t n, int64_t if_empty, const std::string& part) {
  const std::string t = trim(text);
  if (t.empty()) return if_empty;
  const bool pct = t.back() == '%';
  const std::string num = trim(pct ? t.substr(0, t.size() - 1) : t);
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(num, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (num.empty() || used != num.size()) {
    throw Error("split '" + part + "': bad slice bound '" + t + "' (expected an integer or a percent)");
  }
  if (pct) {
    if (v < -100 || v > 100) throw Error("split '" + part + "': percent " + t + " outside [-100%, 100%]");
    v = round_half_even(static_cast<double>(v) * static_cast<double>(n) / 100.0);
  }
  // As TFDS: a bound beyond the split is an error (not clamped as in Python slicing).
  if (v > n || v < -n) {
    throw Error("split '" + part + "': bound " + t + " is outside a split of " +
                std::to_string(n) + " examples");
  }
  return v < 0 ? v + n : v;
}

}  // namespace

int64_t TfdsSplitInfo::num_examples() const {
  int64_t n = 0;
  for (int64_t l : shard_lengths) {
    if (l < 0) return -1;
    n += l;
  }
  return n;
}

bool TfdsInfo::has_split(const std::string& name) const {
  return std::any_of(splits.begin(), splits.end(), [&](const auto& s) { return s.name == name; });
}

const TfdsSplitInfo& TfdsInfo::split(const std::string& name) const {
  for (const auto& s : splits) {
    if (s.name == name) return s;
  }
  std::vector<std::string> names;
  for (const auto& s : splits) names.push_back(s.name);
  throw Error(dir + ": dataset '" + this->name + "' has no split '" + name +
              "' (splits: " + join(names) + ")");
}

const TfdsFeatureInfo& TfdsInfo::feature(const std::string& key) const {
  auto it = features.find(key);
  if (it != features.end()) return it->second;
  std::vector<std::string> keys;
  for (const auto& [k, v] : features) keys.push_back(k);
  throw Error(dir + ": dataset '" + name + "' has no feature '" + key + "' (features: " +
              join(keys) + ")");
}

std::string resolve_tfds_dir(const std::string& data_dir, const std::string& name,
                             const std::string& version) {
  std::string base_name = name, want = version;
  if (const size_t colon = name.find(':'); colon != std::string::npos) {
    base_name = name.substr(0, colon);
    const std::string suffix = name.substr(colon + 1);
    if (!want.empty() && want != suffix) {
      throw Error("tfds: dataset name '" + name + "' asks for version " + suffix +
                  " but dataset_configs.version is " + want);
    }
    want = suffix;
  }
  if (base_name.empty()) throw Error("tfds: empty dataset name");
  if (!is_dir(data_dir)) {
    throw Error("tfds: data_dir " + data_dir + ": no such directory (set dataset_configs.data_dir)");
  }
  const std::string root = data_dir + "/" + base_name;
  if (!is_dir(root)) {
    throw Error("tfds: " + root + ": no such directory: dataset '" + base_name +
                "' is not prepared in " + data_dir + " (run tfds.builder('" + base_name +
                "').download_and_prepare() or set dataset_configs.data_dir)");
  }
  std::vector<std::string> prepared;
  for (const auto& entry : list_dir(root)) {
    if (!parse_version(entry).empty() && is_file(root + "/" + entry + "/dataset_info.json")) {
      prepared.push_back(entry);
    }
  }
  if (prepared.empty()) {
    throw Error("tfds: " + root + ": no prepared version (no <X.Y.Z>/dataset_info.json)");
  }
  std::string best;
  for (const auto& v : prepared) {
    if (!want.empty() && !version_matches(v, want)) continue;
    if (best.empty() || parse_version(v) > parse_version(best)) best = v;
  }
  if (best.empty()) {
    throw Error("tfds: " + root + ": version " + want + " is not prepared (available: " +
                join(prepared) + ")");
  }
  return root + "/" + best;
}

namespace {

TfdsInfo load_info(const std::string& dir) {
  const std::string info_path = dir + "/dataset_info.json";
  if (!is_file(info_path)) throw Error(info_path + ": no such file (not a TFDS dataset directory)");
  const Json j = read_json(info_path);
  TfdsInfo info;
  info.dir = dir;
  info.name = j.value("name", "");
  info.version = j.value("version", "");
  if (info.name.empty()) throw Error(info_path + ": has no dataset name");
  const std::string format = j.value("fileFormat", "tfrecord");
  if (format != "tfrecord") {
    throw Error(info_path + ": file format '" + format + "' is not supported (only tfrecord)");
  }
  if (!j.contains("splits") || !j["splits"].is_array()) throw Error(info_path + ": has no splits");
  for (const auto& s : j["splits"]) {
    TfdsSplitInfo split;
    split.name = s.value("name", "");
    const std::string tmpl = s.value("filepathTemplate", "");
    if (s.contains("shardLengths")) {
      for (const auto& l : s["shardLengths"]) {
        split.shard_lengths.push_back(as_int(l, info_path, "split " + split.name + " shard length"));
      }
    } else {
      // Old dataset_info.json without shard lengths: count the shard files; their
      // lengths (-1 here) are found by indexing the files.
      const std::string prefix = info.name + "-" + split.name + ".tfrecord-";
      for (const auto& f : list_dir(dir)) {
        if (f.rfind(prefix, 0) == 0) split.shard_lengths.push_back(-1);
      }
    }
    const auto count = static_cast<int64_t>(split.shard_lengths.size());
    for (int64_t i = 0; i < count; ++i) {
      split.shard_paths.push_back(shard_path(dir, tmpl, info.name, split.name, i, count));
      if (!is_file(split.shard_paths.back())) {
        throw Error(split.shard_paths.back() + ": missing shard " + std::to_string(i) + " of " +
                    std::to_string(count) + " of split '" + split.name + "' (listed in " +
                    info_path + ")");
      }
    }
    info.splits.push_back(std::move(split));
  }
  const std::string features_path = j.contains("features") ? info_path : dir + "/features.json";
  if (j.contains("features") || is_file(features_path)) {
    try {
      info.features = parse_features(j.contains("features") ? j["features"] : read_json(features_path),
                                     features_path);
    } catch (const Json::exception& e) {
      throw Error(features_path + ": unexpected features layout: " + e.what());
    }
  }
  for (auto& [key, f] : info.features) {
    const std::string labels = dir + "/" + key + ".labels.txt";
    if (f.type != "ClassLabel" || !is_file(labels)) continue;
    std::stringstream ss(read_text(labels));
    std::string line;
    while (std::getline(ss, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) f.class_names.push_back(line);
    }
    if (f.num_classes == 0) f.num_classes = static_cast<int64_t>(f.class_names.size());
  }
  return info;
}

}  // namespace

TfdsInfo load_tfds_info(const std::string& dir) {
  try {
    return load_info(dir);
  } catch (const Json::exception& e) {
    // Fields of unexpected types (a name that is a number, splits that are not objects).
    throw Error(dir + "/dataset_info.json: unexpected layout: " + e.what());
  }
}

std::vector<TfdsSplitRange> resolve_split_spec(const TfdsInfo& info, const std::string& spec) {
  std::vector<TfdsSplitRange> out;
  if (!spec.empty() && trim(spec).back() == '+') throw Error("tfds: bad split '" + spec + "': empty part");
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, '+')) {
    part = trim(part);
    if (part.empty()) throw Error("tfds: bad split '" + spec + "': empty part");
    TfdsSplitRange range;
    const size_t open = part.find('[');
    range.split = trim(part.substr(0, open));
    const TfdsSplitInfo& split = info.split(range.split);
    const int64_t n = split.num_examples();
    if (open == std::string::npos) {
      range.begin = 0;
      range.end = n;  // -1 when unknown: the source fills it in after indexing
    } else {
      const size_t colon = part.find(':', open);
      if (part.back() != ']' || colon == std::string::npos || colon > part.size() - 1) {
        throw Error("tfds: bad split '" + part + "' (expected name[from:to])");
      }
      if (n < 0) {
        throw Error("tfds: split '" + part + "': slicing needs shard lengths in dataset_info.json");
      }
      range.begin = slice_bound(part.substr(open + 1, colon - open - 1), n, 0, part);
      range.end = slice_bound(part.substr(colon + 1, part.size() - colon - 2), n, n, part);
      range.end = std::max(range.end, range.begin);
    }
    out.push_back(range);
  }
  int64_t total = 0;
  for (const auto& r : out) total += r.end - r.begin;
  if (out.empty() || total == 0) {
    throw Error("tfds: " + info.dir + ": split '" + spec + "' selects no examples");
  }
  return out;
}

}  // namespace scenic::dataset
