#include "scenic/common_lib/msgpack_tree.h"

#include <sys/stat.h>

#include <cstring>
#include <torch/torch.h>
#include <vector>

namespace scenic::common {
namespace {

// The dtype names numpy (and JAX, for bfloat16) give dtype.name.
std::optional<torch::ScalarType> dtype_of_name(const std::string& name) {
  static const std::pair<const char*, torch::ScalarType> kNames[] = {
      {"float32", torch::kFloat32}, {"float64", torch::kFloat64}, {"float16", torch::kFloat16},
      {"bfloat16", torch::kBFloat16}, {"int32", torch::kInt32}, {"int64", torch::kInt64},
      {"int16", torch::kInt16}, {"int8", torch::kInt8}, {"uint8", torch::kUInt8},
      {"bool", torch::kBool}, {"complex64", torch::kComplexFloat},
      {"complex128", torch::kComplexDouble}, {"uint32", torch::kUInt32}, {"uint16", torch::kUInt16},
      {"uint64", torch::kUInt64}};
  for (const auto& [n, t] : kNames) {
    if (name == n) return t;
  }
  return std::nullopt;
}

const char* name_of_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kFloat64: return "float64";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kInt32: return "int32";
    case torch::kInt64: return "int64";
    case torch::kInt16: return "int16";
    case torch::kInt8: return "int8";
    case torch::kUInt8: return "uint8";
    case torch::kBool: return "bool";
    default: throw Error(std::string("flax msgpack: cannot write dtype ") + c10::toString(t));
  }
}

// A decoded msgpack value; maps and arrays keep their children in order.
struct Value {
  enum Kind { kNil, kBool, kInt, kUInt, kFloat, kStr, kBin, kArray, kMap, kExt } kind = kNil;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string_view bytes;  // str, bin, ext payload
  int8_t ext_type = 0;
  std::vector<Value> items;                          // array
  std::vector<std::pair<std::string, Value>> entries;  // map (keys as strings)
};

class Decoder {
 public:
  Decoder(std::string_view data, std::string ctx) : d_(data), ctx_(std::move(ctx)) {}

  Value decode(const std::string& where, int depth = 0) {
    if (depth > 256) fail(where, "nesting too deep");
    const uint8_t t = byte(where);
    Value v;
    if (t <= 0x7f) return int_value(t);
    if (t >= 0xe0) return int_value(static_cast<int8_t>(t));
    if ((t & 0xf0) == 0x80) return map(t & 0x0f, where, depth);
    if ((t & 0xf0) == 0x90) return array(t & 0x0f, where, depth);
    if ((t & 0xe0) == 0xa0) return str(t & 0x1f, where);
    switch (t) {
      case 0xc0: return v;
      case 0xc2: case 0xc3: v.kind = Value::kBool; v.b = t == 0xc3; return v;
      case 0xc4: return bin(uint(1, where), where);
      case 0xc5: return bin(uint(2, where), where);
      case 0xc6: return bin(uint(4, where), where);
      case 0xc7: { auto n = uint(1, where); return ext(n, where); }
      case 0xc8: { auto n = uint(2, where); return ext(n, where); }
      case 0xc9: { auto n = uint(4, where); return ext(n, where); }
      case 0xca: { uint32_t x = static_cast<uint32_t>(uint(4, where)); float f; std::memcpy(&f, &x, 4);
                   v.kind = Value::kFloat; v.f = f; return v; }
      case 0xcb: { uint64_t x = uint(8, where); double f; std::memcpy(&f, &x, 8);
                   v.kind = Value::kFloat; v.f = f; return v; }
      case 0xcc: return uint_value(uint(1, where));
      case 0xcd: return uint_value(uint(2, where));
      case 0xce: return uint_value(uint(4, where));
      case 0xcf: return uint_value(uint(8, where));
      case 0xd0: return int_value(static_cast<int8_t>(uint(1, where)));
      case 0xd1: return int_value(static_cast<int16_t>(uint(2, where)));
      case 0xd2: return int_value(static_cast<int32_t>(uint(4, where)));
      case 0xd3: return int_value(static_cast<int64_t>(uint(8, where)));
      case 0xd4: return ext(1, where);
      case 0xd5: return ext(2, where);
      case 0xd6: return ext(4, where);
      case 0xd7: return ext(8, where);
      case 0xd8: return ext(16, where);
      case 0xd9: return str(uint(1, where), where);
      case 0xda: return str(uint(2, where), where);
      case 0xdb: return str(uint(4, where), where);
      case 0xdc: return array(uint(2, where), where, depth);
      case 0xdd: return array(uint(4, where), where, depth);
      case 0xde: return map(uint(2, where), where, depth);
      case 0xdf: return map(uint(4, where), where, depth);
      default: fail(where, "invalid msgpack type byte 0x" + hex(t));
    }
    return v;
  }

  bool at_end() const { return pos_ == d_.size(); }
  size_t pos() const { return pos_; }

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw Error(ctx_ + ": " + (where.empty() ? std::string("at the root") : "at '" + where + "'") +
                ": " + what + " (byte offset " + std::to_string(pos_) + " of " +
                std::to_string(d_.size()) + ")");
  }

 private:
  static std::string hex(uint8_t b) {
    const char* digits = "0123456789abcdef";
    return {digits[b >> 4], digits[b & 15]};
  }
  void need(size_t n, const std::string& where) {
    if (d_.size() - pos_ < n) fail(where, "truncated data (needs " + std::to_string(n) + " more bytes)");
  }
  uint8_t byte(const std::string& where) {
    need(1, where);
    return static_cast<uint8_t>(d_[pos_++]);
  }
  uint64_t uint(int n, const std::string& where) {  // big-endian, as msgpack stores them
    need(n, where);
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | static_cast<uint8_t>(d_[pos_++]);
    return v;
  }
  std::string_view take(uint64_t n, const std::string& where) {
    need(n, where);
    auto s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  static Value int_value(int64_t x) { Value v; v.kind = Value::kInt; v.i = x; return v; }
  static Value uint_value(uint64_t x) {
    Value v;
    if (x <= static_cast<uint64_t>(INT64_MAX)) return int_value(static_cast<int64_t>(x));
    v.kind = Value::kUInt; v.u = x; return v;
  }
  Value str(uint64_t n, const std::string& where) { Value v; v.kind = Value::kStr; v.bytes = take(n, where); return v; }
  Value bin(uint64_t n, const std::string& where) { Value v; v.kind = Value::kBin; v.bytes = take(n, where); return v; }
  Value ext(uint64_t n, const std::string& where) {
    Value v;
    v.kind = Value::kExt;
    v.ext_type = static_cast<int8_t>(byte(where));
    v.bytes = take(n, where);
    return v;
  }
  Value array(uint64_t n, const std::string& where, int depth) {
    Value v;
    v.kind = Value::kArray;
    for (uint64_t k = 0; k < n; ++k)
      v.items.push_back(decode(where.empty() ? std::to_string(k) : where + "/" + std::to_string(k), depth + 1));
    return v;
  }
  Value map(uint64_t n, const std::string& where, int depth) {
    Value v;
    v.kind = Value::kMap;
    for (uint64_t k = 0; k < n; ++k) {
      Value key = decode(where, depth + 1);
      std::string name;
      if (key.kind == Value::kStr || key.kind == Value::kBin) name = std::string(key.bytes);
      else if (key.kind == Value::kInt) name = std::to_string(key.i);
      else fail(where, "map key is not a string or an integer");
      Value child = decode(where.empty() ? name : where + "/" + name, depth + 1);
      v.entries.emplace_back(std::move(name), std::move(child));
    }
    return v;
  }

  std::string_view d_;
  std::string ctx_;
  size_t pos_ = 0;
};

// Flax's ndarray payload: msgpack((shape, dtype name, buffer)).
torch::Tensor decode_ndarray(std::string_view payload, const std::string& ctx, const std::string& where) {
  Decoder dec(payload, ctx);
  Value tpl = dec.decode(where);
  auto bad = [&](const std::string& what) -> torch::Tensor {
    throw Error(ctx + ": at '" + where + "': bad flax ndarray payload: " + what);
  };
  if (tpl.kind != Value::kArray || tpl.items.size() != 3) return bad("expected (shape, dtype, data)");
  const Value& shape_v = tpl.items[0];
  const Value& dtype_v = tpl.items[1];
  const Value& data_v = tpl.items[2];
  if (shape_v.kind != Value::kArray) return bad("shape is not a tuple");
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (const auto& s : shape_v.items) {
    if (s.kind != Value::kInt || s.i < 0) return bad("shape entry is not a non-negative integer");
    shape.push_back(s.i);
    numel *= s.i;
  }
  if (dtype_v.kind != Value::kStr && dtype_v.kind != Value::kBin) return bad("dtype is not a string");
  const std::string dtype_name(dtype_v.bytes);
  const auto type = dtype_of_name(dtype_name);
  if (!type) return bad("unsupported dtype '" + dtype_name + "'");
  if (data_v.kind != Value::kBin && data_v.kind != Value::kStr) return bad("data is not bytes");
  const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(*type);
  if (data_v.bytes.size() != nbytes)
    return bad(std::to_string(data_v.bytes.size()) + " data bytes for " + dtype_name + " of " +
               std::to_string(numel) + " elements (" + std::to_string(nbytes) + " expected)");
  auto t = torch::empty(shape, torch::TensorOptions().dtype(*type));
  if (nbytes) std::memcpy(t.data_ptr(), data_v.bytes.data(), nbytes);
  return t;
}

void flatten(const Value& v, const std::string& path, const std::string& ctx, TensorMap& out);

torch::Tensor leaf_tensor(const Value& v, const std::string& path, const std::string& ctx) {
  switch (v.kind) {
    case Value::kBool: return torch::tensor(v.b);
    case Value::kInt: return torch::tensor(v.i, torch::kInt64);
    case Value::kUInt: throw Error(ctx + ": at '" + path + "': integer " + std::to_string(v.u) + " exceeds int64");
    case Value::kFloat: return torch::tensor(v.f, torch::kFloat64);
    case Value::kExt: {
      if (v.ext_type == 1 || v.ext_type == 3) return decode_ndarray(v.bytes, ctx, path);
      if (v.ext_type == 2) {  // native complex: msgpack((real, imag))
        Decoder dec(v.bytes, ctx);
        Value pair = dec.decode(path);
        auto num = [&](const Value& x) {
          if (x.kind == Value::kFloat) return x.f;
          if (x.kind == Value::kInt) return static_cast<double>(x.i);
          throw Error(ctx + ": at '" + path + "': bad complex payload");
        };
        if (pair.kind != Value::kArray || pair.items.size() != 2)
          throw Error(ctx + ": at '" + path + "': bad complex payload");
        return torch::complex(torch::tensor(num(pair.items[0]), torch::kFloat64),
                              torch::tensor(num(pair.items[1]), torch::kFloat64));
      }
      throw Error(ctx + ": at '" + path + "': unknown msgpack ext type " + std::to_string(v.ext_type));
    }
    default: return {};
  }
}

const Value* find(const Value& map, const std::string& key) {
  for (const auto& [k, c] : map.entries) {
    if (k == key) return &c;
  }
  return nullptr;
}

// flax's _unchunk: concatenate the flat chunks and reshape.
torch::Tensor unchunk(const Value& v, const std::string& path, const std::string& ctx) {
  const Value* shape = find(v, "shape");
  const Value* chunks = find(v, "chunks");
  if (!shape || !chunks || shape->kind != Value::kMap || chunks->kind != Value::kMap)
    throw Error(ctx + ": at '" + path + "': malformed chunked array");
  std::vector<int64_t> dims(shape->entries.size());
  for (size_t k = 0; k < dims.size(); ++k) {
    const Value* d = find(*shape, std::to_string(k));
    if (!d || d->kind != Value::kInt) throw Error(ctx + ": at '" + path + "': malformed chunked array shape");
    dims[k] = d->i;
  }
  std::vector<torch::Tensor> parts;
  for (size_t k = 0; k < chunks->entries.size(); ++k) {
    const Value* c = find(*chunks, std::to_string(k));
    if (!c) throw Error(ctx + ": at '" + path + "': chunk " + std::to_string(k) + " missing");
    parts.push_back(leaf_tensor(*c, path + "/chunks/" + std::to_string(k), ctx).reshape({-1}));
  }
  auto flat = torch::cat(parts);
  int64_t numel = 1;
  for (auto d : dims) numel *= d;
  if (flat.numel() != numel)
    throw Error(ctx + ": at '" + path + "': chunks hold " + std::to_string(flat.numel()) +
                " elements, the shape needs " + std::to_string(numel));
  return flat.reshape(dims);
}

void flatten(const Value& v, const std::string& path, const std::string& ctx, TensorMap& out) {
  auto child_path = [&](const std::string& k) { return path.empty() ? k : path + "/" + k; };
  if (v.kind == Value::kMap) {
    if (find(v, "__msgpack_chunked_array__")) {
      out[path] = unchunk(v, path, ctx);
      return;
    }
    for (const auto& [k, c] : v.entries) flatten(c, child_path(k), ctx, out);
  } else if (v.kind == Value::kArray) {
    for (size_t k = 0; k < v.items.size(); ++k) flatten(v.items[k], child_path(std::to_string(k)), ctx, out);
  } else {
    auto t = leaf_tensor(v, path, ctx);
    if (t.defined()) out[path] = t;
  }
}

// ---- writer ----
void put_be(std::string& s, uint64_t v, int n) {
  for (int k = n - 1; k >= 0; --k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
}
void put_str(std::string& s, std::string_view x) {
  if (x.size() < 32) s.push_back(static_cast<char>(0xa0 | x.size()));
  else if (x.size() < 256) s.push_back(static_cast<char>(0xd9)), put_be(s, x.size(), 1);
  else if (x.size() < 65536) s.push_back(static_cast<char>(0xda)), put_be(s, x.size(), 2);
  else s.push_back(static_cast<char>(0xdb)), put_be(s, x.size(), 4);
  s += x;
}
void put_bin(std::string& s, std::string_view x) {
  if (x.size() < 256) s.push_back(static_cast<char>(0xc4)), put_be(s, x.size(), 1);
  else if (x.size() < 65536) s.push_back(static_cast<char>(0xc5)), put_be(s, x.size(), 2);
  else s.push_back(static_cast<char>(0xc6)), put_be(s, x.size(), 4);
  s += x;
}
void put_uint(std::string& s, uint64_t v) {
  if (v < 128) s.push_back(static_cast<char>(v));
  else if (v < 256) s.push_back(static_cast<char>(0xcc)), put_be(s, v, 1);
  else if (v < 65536) s.push_back(static_cast<char>(0xcd)), put_be(s, v, 2);
  else if (v < (1ull << 32)) s.push_back(static_cast<char>(0xce)), put_be(s, v, 4);
  else s.push_back(static_cast<char>(0xcf)), put_be(s, v, 8);
}
void put_map_header(std::string& s, size_t n) {
  if (n < 16) s.push_back(static_cast<char>(0x80 | n));
  else if (n < 65536) s.push_back(static_cast<char>(0xde)), put_be(s, n, 2);
  else s.push_back(static_cast<char>(0xdf)), put_be(s, n, 4);
}

std::string ndarray_payload(const torch::Tensor& tensor) {
  const auto t = tensor.detach().to(torch::kCPU).contiguous();
  std::string p;
  p.push_back(static_cast<char>(0x93));  // fixarray of 3
  if (t.dim() < 16) p.push_back(static_cast<char>(0x90 | t.dim()));
  else p.push_back(static_cast<char>(0xdc)), put_be(p, t.dim(), 2);
  for (auto d : t.sizes()) put_uint(p, static_cast<uint64_t>(d));
  put_str(p, name_of_dtype(t.scalar_type()));
  put_bin(p, std::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
  return p;
}

struct Node {
  torch::Tensor leaf;
  std::vector<std::pair<std::string, Node>> children;  // insertion order
  Node& child(const std::string& k) {
    for (auto& [name, n] : children) {
      if (name == k) return n;
    }
    children.emplace_back(k, Node{});
    return children.back().second;
  }
};

void write_node(std::string& s, const Node& n) {
  if (n.leaf.defined()) {
    const std::string p = ndarray_payload(n.leaf);
    if (p.size() < 256) s.push_back(static_cast<char>(0xc7)), put_be(s, p.size(), 1);
    else if (p.size() < 65536) s.push_back(static_cast<char>(0xc8)), put_be(s, p.size(), 2);
    else s.push_back(static_cast<char>(0xc9)), put_be(s, p.size(), 4);
    s.push_back(1);  // ext type: ndarray
    s += p;
    return;
  }
  put_map_header(s, n.children.size());
  for (const auto& [k, c] : n.children) {
    put_str(s, k);
    write_node(s, c);
  }
}

}  // namespace

TensorMap parse_flax_msgpack(std::string_view bytes, const std::string& context) {
  Decoder dec(bytes, context);
  Value root = dec.decode("");
  if (!dec.at_end()) dec.fail("", "trailing bytes after the msgpack tree");
  if (root.kind != Value::kMap) dec.fail("", "the root is not a map (not a flax checkpoint)");
  TensorMap out;
  flatten(root, "", context, out);
  return out;
}

TensorMap read_flax_checkpoint(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(path + ": is a directory (an Orbax checkpoint?); only flax msgpack checkpoint files "
                       "(flax_use_orbax_checkpointing=False, Scenic's checkpoint_<step>) are supported");
  return parse_flax_msgpack(read_binary_file(path), path);
}

std::string flax_msgpack_bytes(const TensorMap& tensors) {
  Node root;
  for (const auto& [name, t] : tensors) {
    Node* n = &root;
    size_t start = 0;
    while (true) {
      if (n->leaf.defined()) throw Error("flax msgpack: '" + name + "' is below a leaf");
      const size_t slash = name.find('/', start);
      n = &n->child(name.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    if (!n->children.empty()) throw Error("flax msgpack: '" + name + "' is both a leaf and a subtree");
    n->leaf = t;
  }
  std::string out;
  write_node(out, root);
  return out;
}

void write_flax_checkpoint(const std::string& path, const TensorMap& tensors) {
  write_binary_file(path, flax_msgpack_bytes(tensors));
}

}  // namespace scenic::common
