#include "scenic/common_lib/tf_example.h"

#include <cstring>

namespace scenic::common {
namespace {

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

constexpr int kMaxGroupDepth = 64;

// A cursor over one (sub-)message. `base` is the message's offset in the whole
// serialized Example and `where` its place in the message tree, both for errors.
class Reader {
 public:
  Reader(std::string_view data, size_t base, std::string where)
      : data_(data), base_(base), where_(std::move(where)) {}

  bool done() const { return pos_ >= data_.size(); }

  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw TfExampleError("malformed tf.train.Example: " + what + " at byte " +
                         std::to_string(base_ + at) + " (in " + where_ + ")");
  }

  uint64_t varint() {
    const size_t start = pos_;
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint", start);
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      // The 10th byte may carry only the top bit of a 64-bit value.
      if (shift == 63 && b > 1) fail("varint longer than 64 bits", start);
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint longer than 10 bytes", start);
  }

  // Returns (field number, wire type).
  std::pair<uint32_t, uint32_t> tag() {
    const size_t start = pos_;
    const uint64_t t = varint();
    const uint64_t field = t >> 3;
    const auto wire = static_cast<uint32_t>(t & 7);
    if (field == 0 || field > 0x1fffffff) fail("invalid field number " + std::to_string(field), start);
    if (wire > kFixed32) fail("invalid wire type " + std::to_string(wire), start);
    last_tag_at_ = start;
    return {static_cast<uint32_t>(field), wire};
  }

  // A length-delimited payload: its bytes and their offset in this message.
  std::pair<std::string_view, size_t> bytes() {
    const size_t start = pos_;
    const uint64_t n = varint();
    if (n > data_.size() - pos_) {
      fail("length " + std::to_string(n) + " runs past the end of the message (" +
               std::to_string(data_.size() - pos_) + " bytes left)",
           start);
    }
    const size_t at = pos_;
    pos_ += static_cast<size_t>(n);
    return {data_.substr(at, static_cast<size_t>(n)), at};
  }

  uint32_t fixed32() {
    if (data_.size() - pos_ < 4) fail("truncated fixed32", pos_);
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    pos_ += 4;
    return v;
  }

  // Skips the value of an unknown field (groups included, as protobuf does).
  void skip(uint32_t field, uint32_t wire, int depth = 0) {
    switch (wire) {
      case kVarint: varint(); return;
      case kFixed64:
        if (data_.size() - pos_ < 8) fail("truncated fixed64", pos_);
        pos_ += 8;
        return;
      case kLengthDelimited: bytes(); return;
      case kFixed32: fixed32(); return;
      case kStartGroup: {
        if (depth >= kMaxGroupDepth) fail("groups nested too deeply", pos_);
        for (;;) {
          if (done()) fail("unterminated group (field " + std::to_string(field) + ")", pos_);
          const auto [f, w] = tag();
          if (w == kEndGroup) {
            if (f != field) fail("end of group " + std::to_string(f) + " inside group " +
                                     std::to_string(field), last_tag_at_);
            return;
          }
          skip(f, w, depth + 1);
        }
      }
      default: fail("unexpected end-group tag (field " + std::to_string(field) + ")", last_tag_at_);
    }
  }

  Reader sub(std::pair<std::string_view, size_t> payload, const std::string& where) const {
    return Reader(payload.first, base_ + payload.second, where);
  }
  const std::string& where() const { return where_; }

 private:
  std::string_view data_;
  size_t base_;
  std::string where_;
  size_t pos_ = 0;
  size_t last_tag_at_ = 0;
};

void parse_bytes_list(Reader r, std::vector<std::string>& out) {
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kLengthDelimited) {
      out.emplace_back(r.bytes().first);
    } else {
      r.skip(field, wire);
    }
  }
}

void parse_float_list(Reader r, std::vector<float>& out) {
  auto as_float = [](uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  };
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kFixed32) {
      out.push_back(as_float(r.fixed32()));
    } else if (field == 1 && wire == kLengthDelimited) {
      const auto payload = r.bytes();
      if (payload.first.size() % 4 != 0) {
        r.fail("packed float list of " + std::to_string(payload.first.size()) +
                   " bytes (not a multiple of 4)",
               payload.second);
      }
      Reader packed = r.sub(payload, r.where());
      while (!packed.done()) out.push_back(as_float(packed.fixed32()));
    } else {
      r.skip(field, wire);
    }
  }
}

void parse_int64_list(Reader r, std::vector<int64_t>& out) {
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kVarint) {
      out.push_back(static_cast<int64_t>(r.varint()));
    } else if (field == 1 && wire == kLengthDelimited) {
      Reader packed = r.sub(r.bytes(), r.where());
      while (!packed.done()) out.push_back(static_cast<int64_t>(packed.varint()));
    } else {
      r.skip(field, wire);
    }
  }
}

void parse_feature(Reader r, TfFeature& out) {
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field < 1 || field > 3 || wire != kLengthDelimited) {
      r.skip(field, wire);
      continue;
    }
    const auto kind = static_cast<TfFeature::Kind>(field);  // 1 bytes, 2 float, 3 int64
    if (out.kind != kind) out = TfFeature{kind, {}, {}, {}};  // oneof: the last one wins
    const std::string where = r.where() + "." + kind_name(kind);
    if (kind == TfFeature::Kind::kBytes) parse_bytes_list(r.sub(r.bytes(), where), out.bytes_list);
    if (kind == TfFeature::Kind::kFloat) parse_float_list(r.sub(r.bytes(), where), out.float_list);
    if (kind == TfFeature::Kind::kInt64) parse_int64_list(r.sub(r.bytes(), where), out.int64_list);
  }
}

void parse_map_entry(Reader r, std::map<std::string, TfFeature>& out) {
  std::string key;
  TfFeature value;
  // The key may come after the value; the value's messages are parsed once both are known.
  std::vector<std::pair<std::string_view, size_t>> values;
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kLengthDelimited) {
      key = std::string(r.bytes().first);
    } else if (field == 2 && wire == kLengthDelimited) {
      values.push_back(r.bytes());
    } else {
      r.skip(field, wire);
    }
  }
  for (const auto& v : values) parse_feature(r.sub(v, "Features.feature['" + key + "']"), value);
  out[key] = std::move(value);
}

void parse_features(Reader r, std::map<std::string, TfFeature>& out) {
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kLengthDelimited) {
      parse_map_entry(r.sub(r.bytes(), "Features.feature entry"), out);
    } else {
      r.skip(field, wire);
    }
  }
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_tag(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (uint64_t{field} << 3) | wire); }

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_fixed32(std::string& out, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(bits >> (8 * i)));
}

std::string serialize_feature(const TfFeature& f, bool packed) {
  std::string list;
  switch (f.kind) {
    case TfFeature::Kind::kNone: return "";
    case TfFeature::Kind::kBytes:
      for (const auto& b : f.bytes_list) put_bytes(list, 1, b);
      break;
    case TfFeature::Kind::kFloat:
      if (packed) {
        std::string values;
        for (float v : f.float_list) put_fixed32(values, v);
        if (!values.empty()) put_bytes(list, 1, values);
      } else {
        for (float v : f.float_list) {
          put_tag(list, 1, kFixed32);
          put_fixed32(list, v);
        }
      }
      break;
    case TfFeature::Kind::kInt64:
      if (packed) {
        std::string values;
        for (int64_t v : f.int64_list) put_varint(values, static_cast<uint64_t>(v));
        if (!values.empty()) put_bytes(list, 1, values);
      } else {
        for (int64_t v : f.int64_list) {
          put_tag(list, 1, kVarint);
          put_varint(list, static_cast<uint64_t>(v));
        }
      }
      break;
  }
  std::string out;
  put_bytes(out, static_cast<uint32_t>(f.kind), list);
  return out;
}

}  // namespace

TfFeature TfFeature::bytes(std::vector<std::string> v) {
  return TfFeature{Kind::kBytes, std::move(v), {}, {}};
}
TfFeature TfFeature::floats(std::vector<float> v) { return TfFeature{Kind::kFloat, {}, std::move(v), {}}; }
TfFeature TfFeature::int64s(std::vector<int64_t> v) {
  return TfFeature{Kind::kInt64, {}, {}, std::move(v)};
}

size_t TfFeature::size() const {
  switch (kind) {
    case Kind::kBytes: return bytes_list.size();
    case Kind::kFloat: return float_list.size();
    case Kind::kInt64: return int64_list.size();
    case Kind::kNone: return 0;
  }
  return 0;
}

const char* kind_name(TfFeature::Kind kind) {
  switch (kind) {
    case TfFeature::Kind::kBytes: return "bytes_list";
    case TfFeature::Kind::kFloat: return "float_list";
    case TfFeature::Kind::kInt64: return "int64_list";
    case TfFeature::Kind::kNone: return "none";
  }
  return "?";
}

const TfFeature& TfExample::get(const std::string& key, TfFeature::Kind kind) const {
  auto it = features.find(key);
  if (it == features.end()) {
    std::string keys;
    for (const auto& [k, v] : features) keys += (keys.empty() ? "'" : ", '") + k + "'";
    throw TfExampleError("tf.train.Example has no feature '" + key + "' (it has " +
                         (keys.empty() ? std::string("none") : keys) + ")");
  }
  if (it->second.kind != kind) {
    throw TfExampleError("tf.train.Example feature '" + key + "' is a " +
                         kind_name(it->second.kind) + ", expected a " + kind_name(kind));
  }
  return it->second;
}

TfExample parse_tf_example(std::string_view bytes) {
  TfExample example;
  Reader r(bytes, 0, "Example");
  while (!r.done()) {
    const auto [field, wire] = r.tag();
    if (field == 1 && wire == kLengthDelimited) {
      parse_features(r.sub(r.bytes(), "Example.features"), example.features);
    } else {
      r.skip(field, wire);
    }
  }
  return example;
}

std::string serialize_tf_example(const TfExample& example, bool packed) {
  std::string features;
  for (const auto& [key, feature] : example.features) {
    std::string entry;
    put_bytes(entry, 1, key);
    put_bytes(entry, 2, serialize_feature(feature, packed));
    put_bytes(features, 1, entry);
  }
  // An Example without features is empty, as tf.train.Example() serializes (not 0a 00).
  std::string out;
  if (!example.features.empty()) put_bytes(out, 1, features);
  return out;
}

}  // namespace scenic::common
