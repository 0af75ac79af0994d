// tf.train.Example: a minimal protobuf wire-format decoder and encoder, without
// protobuf or TensorFlow.
//
// The record type of TFDS's TFRecord shards (every dataset Scenic reads through TFDS
// arrives as serialized tf.train.Example). The messages (tensorflow/core/example/
// example.proto, feature.proto):
//   Example   { Features features = 1; }
//   Features  { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
//   Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
//                            Int64List int64_list = 3; } }
//   BytesList { repeated bytes value = 1; }
//   FloatList { repeated float value = 1 [packed = true]; }
//   Int64List { repeated int64 value = 1 [packed = true]; }
// The decoder follows protobuf's parsing rules: packed and unpacked repeated numbers are
// both accepted, unknown fields are skipped, a repeated sub-message merges, the last
// member of a oneof wins (a different one clears the earlier list), the last map entry of
// a key wins. Malformed input (truncated varint or field, bad wire type, length past the
// end, packed floats not a multiple of 4 bytes, ...) throws TfExampleError saying what
// and at which byte offset.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::common {

class TfExampleError : public Error {
 public:
  using Error::Error;
};

struct TfFeature {
  enum class Kind { kNone, kBytes, kFloat, kInt64 };
  Kind kind = Kind::kNone;  // kNone: a Feature with no list set
  std::vector<std::string> bytes_list;
  std::vector<float> float_list;
  std::vector<int64_t> int64_list;

  static TfFeature bytes(std::vector<std::string> v);
  static TfFeature floats(std::vector<float> v);
  static TfFeature int64s(std::vector<int64_t> v);
  size_t size() const;  // number of values in the set list
};

const char* kind_name(TfFeature::Kind kind);  // "bytes_list", ..., "none"

struct TfExample {
  std::map<std::string, TfFeature> features;

  // The feature `key` of the given kind; throws TfExampleError naming the key and the
  // available keys when it is missing, or the kinds when it has another one.
  const TfFeature& get(const std::string& key, TfFeature::Kind kind) const;
};

// Parses a serialized tf.train.Example; throws TfExampleError for malformed bytes.
TfExample parse_tf_example(std::string_view bytes);

// Serializes `example` (features in key order; no features: zero bytes, as
// tf.train.Example() with nothing set). Numeric lists are packed, as protobuf
// does for proto3 / [packed = true] fields; packed = false writes one tagged field per
// value (what proto2 writers without the option produce; the decoder must read both).
std::string serialize_tf_example(const TfExample& example, bool packed = true);

}  // namespace scenic::common
