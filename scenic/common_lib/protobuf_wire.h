// Protocol-buffer wire format, encoding side: just enough to write the messages we
// exchange with TensorFlow tooling (tf.train.Example, TensorBoard's Event/Summary)
// without linking protobuf. Fields are appended to a std::string in the order called.
// Reference: https://protobuf.dev/programming-guides/encoding/
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace scenic::common::proto {

enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value);
void put_tag(std::string& out, uint32_t field, Wire wire);
void put_uint(std::string& out, uint32_t field, uint64_t value);   // int32/int64/enum/bool
void put_double(std::string& out, uint32_t field, double value);   // fixed64
void put_float(std::string& out, uint32_t field, float value);     // fixed32
void put_bytes(std::string& out, uint32_t field, std::string_view bytes);  // string/bytes/message
void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& values);

}  // namespace scenic::common::proto
