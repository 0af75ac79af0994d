#include "scenic/common_lib/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <torch/torch.h>

namespace scenic::common {
namespace {

constexpr std::pair<const char*, torch::ScalarType> kDtypes[] = {
    {"F32", torch::kFloat32}, {"F64", torch::kFloat64}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
    {"I16", torch::kInt16}, {"I8", torch::kInt8}, {"U8", torch::kUInt8}, {"BOOL", torch::kBool}};

std::optional<torch::ScalarType> dtype_of(const std::string& name) {
  for (const auto& [n, t] : kDtypes) {
    if (name == n) return t;
  }
  return std::nullopt;
}

const char* name_of(torch::ScalarType t) {
  for (const auto& [n, type] : kDtypes) {
    if (type == t) return n;
  }
  throw Error(std::string("safetensors: cannot write dtype ") + c10::toString(t));
}

}  // namespace

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& ctx) {
  if (bytes.size() < 8) throw Error(ctx + ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<uint8_t>(bytes[k]);
  if (n > bytes.size() - 8)
    throw Error(ctx + ": truncated safetensors file (header of " + std::to_string(n) + " bytes, file has " +
                std::to_string(bytes.size() - 8) + " after the length)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(8, n));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ctx + ": corrupt safetensors header (bad JSON: " + e.what() + ")");
  }
  if (!header.is_object()) throw Error(ctx + ": corrupt safetensors header (not a JSON object)");
  const std::string_view data = bytes.substr(8 + n);
  SafetensorsFile out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(ctx + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(ctx + ": __metadata__['" + k + "'] is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string ectx = ctx + ": tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      throw Error(ectx + ": header entry needs dtype, shape and data_offsets");
    const auto& dt = entry["dtype"];
    const auto& sh = entry["shape"];
    const auto& off = entry["data_offsets"];
    if (!dt.is_string()) throw Error(ectx + ": dtype is not a string");
    const auto type = dtype_of(dt.get<std::string>());
    if (!type)
      throw Error(ectx + ": unsupported dtype '" + dt.get<std::string>() +
                  "' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
    if (!sh.is_array()) throw Error(ectx + ": shape is not a list");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& d : sh) {
      if (!d.is_number_unsigned()) throw Error(ectx + ": shape entries must be non-negative integers");
      shape.push_back(d.get<int64_t>());
      numel *= shape.back();
    }
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(ectx + ": data_offsets must be [begin, end]");
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    const uint64_t expected = static_cast<uint64_t>(numel) * c10::elementSize(*type);
    if (end < begin || end - begin != expected)
      throw Error(ectx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] do not hold " + std::to_string(expected) + " bytes for its shape and dtype");
    if (end > data.size())
      throw Error(ectx + ": truncated file (data ends at " + std::to_string(end) + ", the data section has " +
                  std::to_string(data.size()) + " bytes)");
    auto t = torch::empty(shape, torch::TensorOptions().dtype(*type));
    if (expected) std::memcpy(t.data_ptr(), data.data() + begin, expected);
    out.tensors[name] = t;
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  return parse_safetensors(read_binary_file(path), path);
}

std::string safetensors_bytes(const TensorMap& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw Error("safetensors: '__metadata__' is not a valid tensor name");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", name_of(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous.push_back(t);
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + json.size() + offset);
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<char>((json.size() >> (8 * k)) & 0xff));
  out += json;
  for (const auto& t : contiguous) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_binary_file(path, safetensors_bytes(tensors, metadata));
}

}  // namespace scenic::common
