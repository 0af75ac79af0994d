#include "scenic/common_lib/config.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "scenic/common_lib/errors.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;

namespace fs = std::filesystem;

// A fresh path under gtest's temp dir, removed when the test ends.
class TempFile {
 public:
  explicit TempFile(const std::string& name)
      : path_(fs::path(::testing::TempDir()) /
              ("scenic_config_test_" + std::to_string(::getpid()) + "_" + name)) {}
  ~TempFile() { fs::remove(path_); }
  std::string path() const { return path_.string(); }
  void write(const std::string& text) const { std::ofstream(path_) << text; }

 private:
  fs::path path_;
};

ConfigDict save_and_reload(const ConfigDict& c, const std::string& name) {
  TempFile f(name);
  c.save(f.path());
  EXPECT_FALSE(fs::exists(f.path() + ".tmp"));
  return ConfigDict::from_yaml_file(f.path());
}

const char* kVit = R"(
model_name: vit_multilabel_classification
batch_size: 128
model:
  hidden_size: 768
  num_layers: 12
  dropout_rate: 0.1
  representation_size: ~
  classifier: token
  patches:
    size: [16, 16]
lr_configs:
  base_learning_rate: 1.0e-3
  warmup: true
)";

TEST(ConfigDictTest, TypedGettersFollowDottedPaths) {
  auto c = ConfigDict::from_yaml_string(kVit);
  EXPECT_EQ(c.get<std::string>("model_name"), "vit_multilabel_classification");
  EXPECT_EQ(c.get<int>("batch_size"), 128);
  EXPECT_EQ(c.get<int>("model.num_layers"), 12);
  EXPECT_EQ(c.get<int64_t>("model.hidden_size"), 768);
  EXPECT_DOUBLE_EQ(c.get<double>("model.dropout_rate"), 0.1);
  EXPECT_FLOAT_EQ(c.get<float>("lr_configs.base_learning_rate"), 1e-3f);
  EXPECT_TRUE(c.get<bool>("lr_configs.warmup"));
  EXPECT_EQ(c.get<std::vector<int>>("model.patches.size"), (std::vector<int>{16, 16}));
  EXPECT_EQ(c.keys(), (std::vector<std::string>{"model_name", "batch_size", "model", "lr_configs"}));
  EXPECT_TRUE(c.has("model.classifier"));
  EXPECT_FALSE(c.has("model.representation_size"));  // null counts as absent
  EXPECT_FALSE(c.has("model.nope"));
}

TEST(ConfigDictTest, YamlScalarTypesAreInferred) {
  auto c = ConfigDict::from_yaml_string(
      "i: 1\nneg: -3\nf: 1.0\ne: 1e-3\nb: true\nbf: False\ns: \"1\"\nsq: '7'\n"
      "tilde: ~\nnull_word: null\nempty:\nword: hello\n");
  EXPECT_TRUE(c.json("i").is_number_integer());
  EXPECT_EQ(c.get<int>("neg"), -3);
  EXPECT_TRUE(c.json("f").is_number_float());
  EXPECT_TRUE(c.json("e").is_number_float());
  EXPECT_DOUBLE_EQ(c.get<double>("e"), 0.001);
  EXPECT_TRUE(c.json("b").is_boolean());
  EXPECT_FALSE(c.get<bool>("bf"));
  EXPECT_EQ(c.get<std::string>("s"), "1");
  EXPECT_EQ(c.get<std::string>("sq"), "7");
  EXPECT_TRUE(c.json("tilde").is_null());
  EXPECT_TRUE(c.json("null_word").is_null());
  EXPECT_TRUE(c.json("empty").is_null());
  EXPECT_EQ(c.get<std::string>("word"), "hello");
}

TEST(ConfigDictTest, MissingRequiredKeyNamesFullPathAndSource) {
  TempFile f("missing_key.yaml");
  f.write(kVit);
  auto c = ConfigDict::from_yaml_file(f.path());
  std::string msg = error_of([&] { c.get<int>("model.num_heads"); });
  EXPECT_CONTAINS(msg, "'model.num_heads'");
  EXPECT_CONTAINS(msg, f.path());
  // A null value is as good as missing for a required key.
  EXPECT_CONTAINS(error_of([&] { c.get<int>("model.representation_size"); }),
                  "'model.representation_size'");
  EXPECT_FALSE(c.get_optional<int>("model.representation_size").has_value());
  EXPECT_EQ(c.get_optional<int>("model.num_layers"), 12);
}

TEST(ConfigDictTest, MissingKeySuggestsClosestKeyInFile) {
  auto c = ConfigDict::from_yaml_string("model:\n  hiden_size: 192\n");
  std::string msg = error_of([&] { c.get<int>("model.hidden_size"); });
  EXPECT_CONTAINS(msg, "'model.hidden_size'");
  EXPECT_CONTAINS(msg, "did you mean 'model.hiden_size'?");
}

TEST(ConfigDictTest, WrongTypeNamesPathAndBothTypes) {
  auto c = ConfigDict::from_yaml_string(
      "m:\n  i: 3\n  f: 1.5\n  s: abc\n  n: '3'\n  b: true\n  l: [1, 2]\n");
  auto expect_type_error = [&](auto getter, const std::string& path, const std::string& want,
                               const std::string& got) {
    std::string msg = error_of([&] { getter(path); });
    EXPECT_CONTAINS(msg, "'" + path + "'");
    EXPECT_CONTAINS(msg, "expected " + want);
    EXPECT_CONTAINS(msg, "got " + got);
  };
  auto as_int = [&](const std::string& p) { c.get<int>(p); };
  auto as_float = [&](const std::string& p) { c.get<double>(p); };
  auto as_string = [&](const std::string& p) { c.get<std::string>(p); };
  auto as_bool = [&](const std::string& p) { c.get<bool>(p); };
  expect_type_error(as_int, "m.f", "int", "float");
  expect_type_error(as_int, "m.s", "int", "string");
  expect_type_error(as_int, "m.n", "int", "string");  // '3' is a string
  expect_type_error(as_int, "m.b", "int", "bool");
  expect_type_error(as_float, "m.s", "float", "string");
  expect_type_error(as_float, "m.b", "float", "bool");
  expect_type_error(as_string, "m.i", "string", "int");
  expect_type_error(as_string, "m.b", "string", "bool");
  expect_type_error(as_bool, "m.i", "bool", "int");
  expect_type_error(as_bool, "m.s", "bool", "string");
  expect_type_error(as_int, "m.l", "int", "list");
  expect_type_error(as_int, "m", "int", "mapping");
}

TEST(ConfigDictTest, IntIsAcceptedWhereFloatExpectedButNotViceVersa) {
  auto c = ConfigDict::from_yaml_string("lr: 3\nsteps: 3.0\n");
  EXPECT_DOUBLE_EQ(c.get<double>("lr"), 3.0);
  EXPECT_FLOAT_EQ(c.get<float>("lr"), 3.0f);
  EXPECT_CONTAINS(error_of([&] { c.get<int>("steps"); }), "'steps'");
  EXPECT_CONTAINS(error_of([&] { c.get<int64_t>("steps"); }), "expected int");
}

TEST(ConfigDictTest, ListElementOfWrongTypeNamesItsIndex) {
  auto c = ConfigDict::from_yaml_string(
      "model:\n  patches:\n    size: [4, x]\n    grid: [4, 4.5]\n    scales: [1, 2.5]\n"
      "    one: 7\n");
  std::string msg = error_of([&] { c.get<std::vector<int>>("model.patches.size"); });
  EXPECT_CONTAINS(msg, "'model.patches.size[1]'");
  EXPECT_CONTAINS(msg, "expected int");
  EXPECT_CONTAINS(error_of([&] { c.get<std::vector<int64_t>>("model.patches.grid"); }),
                  "'model.patches.grid[1]'");
  EXPECT_CONTAINS(error_of([&] { c.get<std::vector<std::string>>("model.patches.scales"); }),
                  "'model.patches.scales[0]'");
  EXPECT_EQ(c.get<std::vector<double>>("model.patches.scales"), (std::vector<double>{1.0, 2.5}));
  // A scalar where a list is expected reads as a one-element list.
  EXPECT_EQ(c.get<std::vector<int>>("model.patches.one"), (std::vector<int>{7}));
}

TEST(ConfigDictTest, IntOutOfRangeForInt32IsAnError) {
  auto c = ConfigDict::from_yaml_string("big: 3000000000\nsmall: -3000000000\nmax: 2147483647\n");
  EXPECT_CONTAINS(error_of([&] { c.get<int>("big"); }), "'big'");
  EXPECT_CONTAINS(error_of([&] { c.get<int>("small"); }), "'small'");
  EXPECT_EQ(c.get<int64_t>("big"), 3000000000LL);
  EXPECT_EQ(c.get<int>("max"), 2147483647);
  EXPECT_CONTAINS(error_of([&] { c.get<std::vector<int>>("big"); }), "'big'");
}

TEST(ConfigDictTest, DefaultsAreReturnedAndRecorded) {
  auto c = ConfigDict::from_yaml_string("model:\n  hidden_size: 192\n  name: ~\n");
  EXPECT_EQ(c.get<int>("model.hidden_size", 768), 192);  // file wins
  EXPECT_EQ(c.get<int>("model.num_layers", 12), 12);
  EXPECT_DOUBLE_EQ(c.get<double>("lr", 1.0), 1.0);
  EXPECT_EQ(c.get<std::string>("model.name", "vit"), "vit");  // null -> default
  EXPECT_EQ(c.get<std::vector<int>>("opt.sizes", {2, 3}), (std::vector<int>{2, 3}));
  EXPECT_EQ(c.get<int>("model.num_layers"), 12);  // now present
  EXPECT_TRUE(c.json("lr").is_number_float());
  EXPECT_NO_THROW(c.check_all_used());
  // A default does not excuse a wrong type in the file.
  auto bad = ConfigDict::from_yaml_string("x: abc\n");
  EXPECT_CONTAINS(error_of([&] { bad.get<int>("x", 3); }), "'x'");
}

TEST(ConfigDictTest, OverridesInEqualsAndSpaceForms) {
  auto c = ConfigDict::from_yaml_string(kVit);
  c.apply_overrides({"--config.model.hidden_size=192", "--config.model.num_layers", "6",
                     "--config.model.patches.size=[4,4]", "--config.model.classifier='7'",
                     "--config.model_name=\"vit b\"", "--config.model.dropout_rate=null",
                     "--config.lr_configs.base_learning_rate=1e-2",
                     "--config.lr_configs.warmup", "false", "--config.new.deep.key=1.0",
                     "--config.expr=a=b", "--config.empty="});
  EXPECT_EQ(c.get<int>("model.hidden_size"), 192);
  EXPECT_EQ(c.get<int>("model.num_layers"), 6);
  EXPECT_EQ(c.get<std::vector<int>>("model.patches.size"), (std::vector<int>{4, 4}));
  EXPECT_EQ(c.get<std::string>("model.classifier"), "7");
  EXPECT_EQ(c.get<std::string>("model_name"), "vit b");
  EXPECT_FALSE(c.has("model.dropout_rate"));
  EXPECT_DOUBLE_EQ(c.get<double>("lr_configs.base_learning_rate"), 0.01);
  EXPECT_FALSE(c.get<bool>("lr_configs.warmup"));
  EXPECT_TRUE(c.json("new.deep.key").is_number_float());
  EXPECT_EQ(c.get<std::string>("expr"), "a=b");  // split at the first '='
  EXPECT_EQ(c.get<std::string>("empty"), "");
  EXPECT_EQ(c.get<int>("batch_size"), 128);  // untouched
}

TEST(ConfigDictTest, MalformedOverridesAreErrors) {
  auto c = ConfigDict::from_yaml_string(kVit);
  EXPECT_CONTAINS(error_of([&] { c.apply_overrides({"model.hidden_size=1"}); }),
                  "model.hidden_size=1");
  EXPECT_CONTAINS(error_of([&] { c.apply_overrides({"--config.batch_size"}); }), "batch_size");
  EXPECT_CONTAINS(error_of([&] { c.apply_overrides({"--config.model.patches.size=[4,"}); }),
                  "model.patches.size");
  // Descending into a scalar: the message names the scalar and the full key.
  std::string msg = error_of([&] { c.apply_override("model.hidden_size.x", "1"); });
  EXPECT_CONTAINS(msg, "'model.hidden_size'");
  EXPECT_CONTAINS(msg, "'model.hidden_size.x'");
  EXPECT_CONTAINS(error_of([&] { c.apply_override("model..x", "1"); }), "model..x");
  EXPECT_EQ(c.get<int>("model.hidden_size"), 768);
}

TEST(ConfigDictTest, SaveAndReloadKeepsValuesAndTypes) {
  auto c = ConfigDict::from_yaml_string(
      "one_f: 1.0\nzero_f: 0.0\nneg_f: -2.0\nlr: 0.1\ntiny: 1.0e-10\nhuge: 1.0e+20\n"
      "big: 9000000000\nseven: '7'\nyes_str: 'true'\nnull_str: 'null'\nfloat_str: '1e-3'\n"
      "empty_str: ''\ntilde_str: '~'\nflag: true\noff: false\nnothing: ~\n"
      "nested: [[1, 2], [3.0, '4'], []]\nrecords: [{a: 1}, {b: [x, 'y']}]\n"
      "odd_strs: ['[', 'a: b: c', '@home', '{name}_{step}', ' 7', '#x', \"a\\nb\"]\n"
      "empty_map: {}\n");
  c.set<double>("pos_inf", std::numeric_limits<double>::infinity());
  c.set<double>("neg_inf", -std::numeric_limits<double>::infinity());
  c.set<double>("nan", std::numeric_limits<double>::quiet_NaN());
  c.get<double>("recorded.default_f", 2.0);
  c.get<std::string>("recorded.default_s", "8");
  c.apply_overrides({"--config.from_cli=[4,4]"});

  ConfigDict r = save_and_reload(c, "roundtrip.yaml");
  // dump() tells 1 from 1.0 and "7" from 7, unlike Json's operator==.
  EXPECT_EQ(r.json().dump(), c.json().dump());
  EXPECT_EQ(r.keys(), c.keys());
  EXPECT_TRUE(r.json("one_f").is_number_float());
  EXPECT_EQ(r.get<std::string>("seven"), "7");
  EXPECT_EQ(r.get<std::string>("yes_str"), "true");
  EXPECT_TRUE(r.get<bool>("flag"));
  EXPECT_EQ(r.get<int64_t>("big"), 9000000000LL);
  EXPECT_TRUE(r.json("nested")[1][0].is_number_float());
  EXPECT_TRUE(r.json("nested")[1][1].is_string());
  EXPECT_DOUBLE_EQ(r.get<double>("recorded.default_f"), 2.0);
  EXPECT_TRUE(r.json("recorded.default_f").is_number_float());
  EXPECT_EQ(r.get<std::string>("recorded.default_s"), "8");
  EXPECT_EQ(r.get<double>("pos_inf"), std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.get<double>("neg_inf"), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(r.get<double>("nan")));
  EXPECT_EQ(r.get<std::vector<int>>("from_cli"), (std::vector<int>{4, 4}));
}

TEST(ConfigDictTest, SavedYamlIsReadable) {
  auto c = ConfigDict::from_yaml_string("lr: 1.0\nname: '7'\nmodel:\n  size: [4, 4]\n");
  std::string y = c.to_yaml();
  EXPECT_CONTAINS(y, "lr: 1.0");
  EXPECT_CONTAINS(y, "name: \"7\"");
  EXPECT_CONTAINS(y, "size: [4, 4]");
}

TEST(ConfigDictTest, SubViewsReadWithPrefixAndShareTheRecord) {
  auto c = ConfigDict::from_yaml_string(kVit);
  ConfigDict model = c.sub("model");
  EXPECT_EQ(model.prefix(), "model");
  EXPECT_EQ(model.get<int>("num_layers"), 12);
  ConfigDict patches = model.sub("patches");
  EXPECT_EQ(patches.prefix(), "model.patches");
  EXPECT_EQ(patches.get<std::vector<int>>("size"), (std::vector<int>{16, 16}));
  EXPECT_EQ(model.keys().front(), "hidden_size");

  auto unused = c.unused_keys();
  EXPECT_EQ(std::count(unused.begin(), unused.end(), "model.num_layers"), 0);
  EXPECT_EQ(std::count(unused.begin(), unused.end(), "model.patches.size"), 0);
  EXPECT_EQ(std::count(unused.begin(), unused.end(), "model.hidden_size"), 1);

  // Errors, defaults and writes through a view use the full path.
  EXPECT_CONTAINS(error_of([&] { model.get<int>("num_heads"); }), "'model.num_heads'");
  EXPECT_CONTAINS(error_of([&] { model.get<int>("classifier"); }), "'model.classifier'");
  model.get<int>("num_heads", 12);
  EXPECT_EQ(c.get<int>("model.num_heads"), 12);
  model.apply_override("hidden_size", "192");
  EXPECT_EQ(c.get<int>("model.hidden_size"), 192);
  ConfigDict copy = c;
  copy.set<std::string>("model.classifier", "gap");
  EXPECT_EQ(model.get<std::string>("classifier"), "gap");
}

TEST(ConfigDictTest, SubOfMissingKeyIsEmptyAndSubOfScalarIsError) {
  auto c = ConfigDict::from_yaml_string("batch_size: 8\n");
  ConfigDict opt = c.sub("optimizer_configs");
  EXPECT_TRUE(opt.keys().empty());
  EXPECT_DOUBLE_EQ(opt.get<double>("momentum", 0.9), 0.9);
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer_configs.momentum"), 0.9);
  c.sub("unused_but_opened");  // an empty mapping someone opened is not a typo
  c.get<int>("batch_size");
  EXPECT_NO_THROW(c.check_all_used());
  EXPECT_CONTAINS(error_of([&] { c.sub("batch_size"); }), "'batch_size'");
}

TEST(ConfigDictTest, MarkUsedCoversSubtrees) {
  auto c = ConfigDict::from_yaml_string(kVit);
  c.mark_used("model");
  auto unused = c.unused_keys();
  for (const auto& k : unused) EXPECT_NE(k.rfind("model.", 0), 0u) << k;
  EXPECT_EQ(unused, (std::vector<std::string>{"model_name", "batch_size",
                                              "lr_configs.base_learning_rate",
                                              "lr_configs.warmup"}));
  c.json("lr_configs");  // raw access marks its subtree too
  c.sub("model").mark_used();  // no-op here, but must not throw
  EXPECT_EQ(c.unused_keys(), (std::vector<std::string>{"model_name", "batch_size"}));
  c.mark_used();
  EXPECT_TRUE(c.unused_keys().empty());
  EXPECT_NO_THROW(c.check_all_used());
}

TEST(ConfigDictTest, UnknownKeyInFileSuggestsClosestKnownKey) {
  TempFile f("typo.yaml");
  f.write("model:\n  hiden_size: 192\n  num_layers: 2\n");
  auto c = ConfigDict::from_yaml_file(f.path());
  EXPECT_EQ(c.get<int>("model.hidden_size", 128), 128);  // the typo is silently missed...
  c.get<int>("model.num_layers");
  std::string msg = error_of([&] { c.check_all_used(); });  // ...until set-up ends
  EXPECT_CONTAINS(msg, "'model.hiden_size'");
  EXPECT_CONTAINS(msg, "did you mean 'model.hidden_size'?");
  EXPECT_CONTAINS(msg, f.path());
}

TEST(ConfigDictTest, UnknownKeyFromOverrideSuggestsClosestKnownKey) {
  auto c = ConfigDict::from_yaml_string("model:\n  hidden_size: 64\n");
  c.apply_overrides({"--config.model.hidden_sise=192", "--config.zzzzzzzzzz=1"});
  c.get<int>("model.hidden_size");
  EXPECT_EQ(c.unused_keys(),
            (std::vector<std::string>{"model.hidden_sise", "zzzzzzzzzz"}));
  std::string msg = error_of([&] { c.check_all_used(); });
  EXPECT_CONTAINS(msg, "'model.hidden_sise'");
  EXPECT_CONTAINS(msg, "did you mean 'model.hidden_size'?");
  EXPECT_CONTAINS(msg, "1 more");
  c.get<int>("model.hidden_sise");
  msg = error_of([&] { c.check_all_used(); });
  EXPECT_CONTAINS(msg, "'zzzzzzzzzz'");
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;  // nothing close
}

TEST(ConfigDictTest, InvalidYamlNamesFileAndLine) {
  TempFile f("invalid.yaml");
  f.write("a: 1\nb: 2\n  c: 3\n");
  std::string msg = error_of([&] { ConfigDict::from_yaml_file(f.path()); });
  EXPECT_CONTAINS(msg, f.path());
  EXPECT_CONTAINS(msg, "line 3");
  EXPECT_CONTAINS(error_of([] { ConfigDict::from_yaml_string("- 1\n- 2\n", "list.yaml"); }),
                  "list.yaml");
}

TEST(ConfigDictTest, MissingFileNamesTheFile) {
  const std::string path = "/nonexistent/dir/vit.yaml";
  EXPECT_CONTAINS(error_of([&] { ConfigDict::from_yaml_file(path); }), path);
}

TEST(ConfigDictTest, DuplicateKeysAreErrors) {
  std::string msg = error_of([] { ConfigDict::from_yaml_string("a: 1\nb: 2\na: 3\n", "d.yaml"); });
  EXPECT_CONTAINS(msg, "duplicate");
  EXPECT_CONTAINS(msg, "'a'");
  EXPECT_CONTAINS(msg, "d.yaml");
  msg = error_of([] { ConfigDict::from_yaml_string("m:\n  x: 1\n  x: 2\n", "d.yaml"); });
  EXPECT_CONTAINS(msg, "'m.x'");
  EXPECT_CONTAINS(msg, "line 3");
  EXPECT_CONTAINS(error_of([] { ConfigDict::from_yaml_string("m:\n  a.b: 1\n"); }), "'m.a.b'");
}

TEST(ConfigDictTest, EmptyYamlIsAnEmptyConfig) {
  auto c = ConfigDict::from_yaml_string("");
  EXPECT_TRUE(c.keys().empty());
  EXPECT_NO_THROW(c.check_all_used());
}

TEST(ConfigDictTest, EditDistance) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("hidden_size", "hiden_size"), 1u);
  EXPECT_EQ(edit_distance("ab", "ba"), 2u);  // plain Levenshtein: a swap is two edits
}

TEST(ConfigDictTest, ClosestMatch) {
  const std::vector<std::string> keys = {"model.hidden_size", "model.num_layers", "batch_size"};
  EXPECT_EQ(closest_match("model.hiden_size", keys), "model.hidden_size");
  EXPECT_EQ(closest_match("model.num_layer", keys), "model.num_layers");
  EXPECT_EQ(closest_match("bach_size", keys), "batch_size");
  EXPECT_EQ(closest_match("learning_rate", keys), "");  // nothing reasonably close
  EXPECT_EQ(closest_match("anything", {}), "");
}

}  // namespace
}  // namespace scenic::common
