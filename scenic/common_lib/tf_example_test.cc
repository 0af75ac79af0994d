#include "scenic/common_lib/tf_example.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"
#include "scenic/common_lib/tfrecord.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;
using Kind = TfFeature::Kind;

const std::string kTestdata = std::string(SCENIC_SOURCE_DIR) + "/scenic/common_lib/testdata/";

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

nlohmann::json fixture_records() {
  std::ifstream in(kTestdata + "examples.json");
  return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}))["records"];
}

// Asserts that `ex` holds exactly the features the fixture script wrote.
void expect_matches_json(const TfExample& ex, const nlohmann::json& features) {
  ASSERT_EQ(ex.features.size(), features.size());
  for (const auto& [key, want] : features.items()) {
    SCOPED_TRACE("feature " + key);
    ASSERT_TRUE(ex.features.count(key));
    const TfFeature& f = ex.features.at(key);
    const std::string kind = want["kind"];
    EXPECT_EQ(kind_name(f.kind), kind);
    if (kind == "bytes_list") {
      ASSERT_EQ(f.bytes_list.size(), want["hex"].size());
      for (size_t i = 0; i < f.bytes_list.size(); ++i) EXPECT_EQ(f.bytes_list[i], unhex(want["hex"][i]));
    } else if (kind == "float_list") {
      ASSERT_EQ(f.float_list.size(), want["values"].size());
      for (size_t i = 0; i < f.float_list.size(); ++i) {
        // The JSON holds the exact float32 values as doubles: equality is exact.
        EXPECT_EQ(f.float_list[i], static_cast<float>(want["values"][i].get<double>())) << i;
      }
    } else {
      ASSERT_EQ(f.int64_list, want["values"].get<std::vector<int64_t>>());
    }
  }
}

TEST(TfExample, ParsesWhatTensorFlowSerialized) {
  const auto records = fixture_records();
  const auto from_file = read_all_tfrecords(kTestdata + "examples.tfrecord");
  ASSERT_EQ(from_file.size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    expect_matches_json(parse_tf_example(from_file[i]), records[i]["features"]);
  }
  // Spot checks of values written in the script, beyond the JSON round trip.
  const TfExample first = parse_tf_example(from_file[0]);
  EXPECT_EQ(first.get("label", Kind::kInt64).int64_list, std::vector<int64_t>{7});
  const auto& ints = first.get("ints", Kind::kInt64).int64_list;
  EXPECT_EQ(ints.front(), 0);
  EXPECT_EQ(ints[1], -1);
  EXPECT_EQ(ints[6], INT64_MIN);
  EXPECT_EQ(ints[7], INT64_MAX);
  EXPECT_EQ(first.get("floats", Kind::kFloat).float_list[1], -1.25f);
  EXPECT_EQ(first.get("name", Kind::kBytes).bytes_list[0], "record-0");
  const TfExample second = parse_tf_example(from_file[1]);
  EXPECT_EQ(second.get("multi", Kind::kBytes).bytes_list[2], std::string("\0\xff\x80" "binary", 9));
  EXPECT_EQ(second.get("empty_floats", Kind::kFloat).size(), 0u);  // set, but empty
  EXPECT_TRUE(parse_tf_example(from_file[2]).features.empty());
}

TfExample from_json(const nlohmann::json& features) {
  TfExample ex;
  for (const auto& [key, f] : features.items()) {
    if (f["kind"] == "bytes_list") {
      std::vector<std::string> v;
      for (const auto& h : f["hex"]) v.push_back(unhex(h));
      ex.features[key] = TfFeature::bytes(v);
    } else if (f["kind"] == "float_list") {
      std::vector<float> v;
      for (const auto& x : f["values"]) v.push_back(static_cast<float>(x.get<double>()));
      ex.features[key] = TfFeature::floats(v);
    } else {
      ex.features[key] = TfFeature::int64s(f["values"].get<std::vector<int64_t>>());
    }
  }
  return ex;
}

TEST(TfExample, EncoderWritesTensorFlowsDeterministicBytes) {
  for (const auto& r : fixture_records()) {
    EXPECT_TRUE(serialize_tf_example(from_json(r["features"])) == unhex(r["serialized_hex"]));
  }
}

// Example{features{feature{key: "a", value{int64_list{value: [1, 2]}}}}}, by hand:
//   Int64List  unpacked 08 01 08 02          packed 0a 02 01 02      (4 bytes either way)
//   Feature    1a 04 <list>                                          (6)
//   map entry  0a 01 'a' 12 06 <feature>                             (11)
//   Features   0a 0b <entry>                                         (13)
//   Example    0a 0d <features>                                      (15)
const std::string kUnpacked("\x0a\x0d\x0a\x0b\x0a\x01" "a" "\x12\x06\x1a\x04\x08\x01\x08\x02", 15);
const std::string kPacked("\x0a\x0d\x0a\x0b\x0a\x01" "a" "\x12\x06\x1a\x04\x0a\x02\x01\x02", 15);

TEST(TfExample, PackedAndUnpackedNumbersByHand) {
  for (const std::string& bytes : {kUnpacked, kPacked}) {
    EXPECT_EQ(parse_tf_example(bytes).get("a", Kind::kInt64).int64_list, (std::vector<int64_t>{1, 2}));
  }
  TfExample ex;
  ex.features["a"] = TfFeature::int64s({1, 2});
  EXPECT_EQ(serialize_tf_example(ex, /*packed=*/true), kPacked);
  EXPECT_EQ(serialize_tf_example(ex, /*packed=*/false), kUnpacked);
  // Unpacked floats: FloatList 0d <4 bytes> per value; 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0.
  // FloatList 10 bytes, Feature 12 (15 00.. -> 12 0a), entry 2+1+2+12 = 17, Features 19.
  const std::string floats(
      "\x0a\x13\x0a\x11\x0a\x01" "f" "\x12\x0c\x12\x0a\x0d\x00\x00\x80\x3f\x0d\x00\x00\x20\xc0", 21);
  EXPECT_EQ(parse_tf_example(floats).get("f", Kind::kFloat).float_list, (std::vector<float>{1.0f, -2.5f}));
  ex.features.clear();
  ex.features["f"] = TfFeature::floats({1.0f, -2.5f});
  EXPECT_EQ(serialize_tf_example(ex, /*packed=*/false), floats);
}

TEST(TfExample, UnpackedRoundTripOfTheFixtureValues) {
  for (const auto& r : fixture_records()) {
    const TfExample ex = from_json(r["features"]);
    expect_matches_json(parse_tf_example(serialize_tf_example(ex, /*packed=*/false)), r["features"]);
  }
}

TEST(TfExample, ProtobufMergeRulesUnknownFieldsAndOneof) {
  // Concatenated messages merge: keys of both, the last entry of a key wins.
  TfExample a, b;
  a.features["x"] = TfFeature::int64s({1});
  a.features["y"] = TfFeature::bytes({"old"});
  b.features["y"] = TfFeature::floats({0.5f});
  const TfExample merged = parse_tf_example(serialize_tf_example(a) + serialize_tf_example(b));
  EXPECT_EQ(merged.features.size(), 2u);
  EXPECT_EQ(merged.get("x", Kind::kInt64).int64_list, std::vector<int64_t>{1});
  EXPECT_EQ(merged.get("y", Kind::kFloat).float_list, std::vector<float>{0.5f});
  // Unknown fields: field 5 varint (28 96 01 = 150), field 6 fixed64, field 7 a group
  // (3b ... 3c) holding field 1 varint, field 8 length-delimited.
  const std::string unknown("\x28\x96\x01\x31\x01\x02\x03\x04\x05\x06\x07\x08\x3b\x08\x05\x3c\x42\x02hi",
                            20);
  EXPECT_EQ(parse_tf_example(unknown + kPacked).get("a", Kind::kInt64).int64_list,
            (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(parse_tf_example(kPacked + unknown).features.size(), 1u);
  // Features set but empty (0a 00) and nothing at all both mean no features.
  EXPECT_TRUE(parse_tf_example(std::string("\x0a\x00", 2)).features.empty());
  EXPECT_TRUE(parse_tf_example("").features.empty());
  EXPECT_EQ(serialize_tf_example(TfExample{}), "");
}

TEST(TfExample, EveryTruncationOfARealRecordIsAnError) {
  const std::string full = unhex(fixture_records()[0]["serialized_hex"]);
  // The whole Example is one length-delimited field, so every strict prefix is cut short.
  for (size_t n = 1; n < full.size(); ++n) {
    const std::string msg = error_of([&] { parse_tf_example(full.substr(0, n)); });
    EXPECT_EQ(msg.rfind("malformed tf.train.Example: ", 0), 0u) << "prefix " << n << ": " << msg;
  }
}

TEST(TfExample, MalformedBytesNameTheProblemAndOffset) {
  // Tag 0x0f: field 1, wire type 7.
  EXPECT_CONTAINS(error_of([] { parse_tf_example(std::string("\x0f", 1)); }), "invalid wire type 7 at byte 0");
  // Tag 0x02: field 0.
  EXPECT_CONTAINS(error_of([] { parse_tf_example(std::string("\x02\x00", 2)); }), "invalid field number 0");
  // Eleven continuation bytes.
  EXPECT_CONTAINS(error_of([] { parse_tf_example(std::string(11, '\x80')); }), "varint longer than");
  // Length 5 with 1 byte left.
  EXPECT_CONTAINS(error_of([] { parse_tf_example(std::string("\x0a\x05\x00", 3)); }),
                  "length 5 runs past the end of the message (1 bytes left) at byte 1");
  // A packed float list of 3 bytes, inside the entry for "f" (its payload starts at byte 13).
  const std::string bad_floats("\x0a\x0e\x0a\x0c\x0a\x01" "f" "\x12\x07\x12\x05\x0a\x03\x00\x00\x00", 16);
  const std::string msg = error_of([&] { parse_tf_example(bad_floats); });
  EXPECT_CONTAINS(msg, "packed float list of 3 bytes (not a multiple of 4) at byte 13");
  EXPECT_CONTAINS(msg, "Features.feature['f'].float_list");
  // End-group without a start.
  EXPECT_CONTAINS(error_of([] { parse_tf_example(std::string("\x0c", 1)); }), "unexpected end-group");
}

TEST(TfExample, GetNamesMissingKeysAndWrongKinds) {
  TfExample ex;
  ex.features["image"] = TfFeature::bytes({"png"});
  ex.features["label"] = TfFeature::int64s({3});
  EXPECT_CONTAINS(error_of([&] { ex.get("lable", Kind::kInt64); }),
                  "no feature 'lable' (it has 'image', 'label')");
  EXPECT_CONTAINS(error_of([&] { ex.get("label", Kind::kFloat); }),
                  "feature 'label' is a int64_list, expected a float_list");
}

}  // namespace
}  // namespace scenic::common
