#include "scenic/common_lib/npz.h"

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <optional>
#include <cstring>
#include <fstream>
#include <iterator>
#include <torch/torch.h>
#include <vector>

namespace scenic::common {

static_assert(std::endian::native == std::endian::little,
              "the weight readers copy little-endian data as is");

namespace {

struct DtypeInfo {
  const char* descr;  // numpy's dtype.str for little-endian data
  torch::ScalarType type;
};

// The descr written for each torch dtype (first match) and every descr we accept.
constexpr DtypeInfo kDtypes[] = {
    {"<f4", torch::kFloat32}, {"<f8", torch::kFloat64}, {"<f2", torch::kFloat16},
    {"<i4", torch::kInt32},   {"<i8", torch::kInt64},   {"<i2", torch::kInt16},
    {"|i1", torch::kInt8},    {"|u1", torch::kUInt8},   {"|b1", torch::kBool},
    {"<i1", torch::kInt8},    {"<u1", torch::kUInt8},   {"<b1", torch::kBool},
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The value of `'key': <value>` in the header dict, up to the next top-level ',' or '}'
// (the shape tuple's commas are inside parentheses).
std::string header_value(const std::string& header, const std::string& key, const std::string& ctx) {
  const auto k = header.find("'" + key + "'");
  if (k == std::string::npos) throw Error(ctx + ": .npy header has no '" + key + "': " + header);
  auto p = header.find(':', k);
  if (p == std::string::npos) throw Error(ctx + ": malformed .npy header: " + header);
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  int depth = 0;
  size_t e = p;
  for (; e < header.size(); ++e) {
    const char c = header[e];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
  }
  return header.substr(p, e - p);
}

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

void put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}
void put32(std::string& s, uint32_t v) {
  put16(s, static_cast<uint16_t>(v & 0xffff));
  put16(s, static_cast<uint16_t>(v >> 16));
}

}  // namespace

torch::Tensor parse_npy(std::string_view bytes, const std::string& ctx) {
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < 10 || bytes.substr(0, 6) != "\x93NUMPY")
    throw Error(ctx + ": not a .npy file (bad magic)");
  const int major = b[6];
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = le16(b + 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(ctx + ": truncated .npy header");
    header_len = le32(b + 8);
    offset = 12;
  } else {
    throw Error(ctx + ": unsupported .npy format version " + std::to_string(major));
  }
  if (bytes.size() < offset + header_len) throw Error(ctx + ": truncated .npy header");
  const std::string header(bytes.substr(offset, header_len));
  offset += header_len;

  std::string descr = header_value(header, "descr", ctx);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    throw Error(ctx + ": unsupported .npy dtype " + descr + " (structured arrays are not supported)");
  descr = descr.substr(1, descr.size() - 2);
  std::optional<torch::ScalarType> type;
  for (const auto& d : kDtypes) {
    if (descr == d.descr) type = d.type;
  }
  if (!type) {
    if (!descr.empty() && descr[0] == '>')
      throw Error(ctx + ": big-endian dtype '" + descr + "' is not supported (save little-endian)");
    throw Error(ctx + ": unsupported dtype '" + descr +
                "' (supported: float16/32/64, int8/16/32/64, uint8, bool)");
  }
  const std::string fortran = header_value(header, "fortran_order", ctx);
  if (fortran != "False" && fortran != "True")
    throw Error(ctx + ": bad fortran_order '" + fortran + "' in .npy header");
  std::string shape_text = header_value(header, "shape", ctx);
  if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
    throw Error(ctx + ": bad shape '" + shape_text + "' in .npy header");
  std::vector<int64_t> shape;
  {
    std::string num;
    for (char c : shape_text.substr(1) + ",") {
      if (std::isdigit(static_cast<unsigned char>(c))) {
        num += c;
      } else if (c == ',' || c == ')') {
        if (!num.empty()) shape.push_back(std::stoll(num));
        num.clear();
      } else if (c != ' ' && c != 'L') {
        throw Error(ctx + ": bad shape '" + shape_text + "' in .npy header");
      }
    }
  }
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(*type);
  if (bytes.size() - offset < nbytes)
    throw Error(ctx + ": truncated .npy data: shape " + shape_str(shape) + " " + descr + " needs " +
                std::to_string(nbytes) + " bytes, the file has " + std::to_string(bytes.size() - offset));
  const bool f_order = fortran == "True";
  // Fortran order stores the transpose's C order: read with the reversed shape, then
  // reverse the axes back.
  std::vector<int64_t> stored(shape);
  if (f_order) std::reverse(stored.begin(), stored.end());
  auto t = torch::empty(stored, torch::TensorOptions().dtype(*type));
  if (nbytes) std::memcpy(t.data_ptr(), bytes.data() + offset, nbytes);
  if (f_order && t.dim() > 1) {
    std::vector<int64_t> perm(t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) perm[i] = t.dim() - 1 - i;
    t = t.permute(perm).contiguous();
  }
  return t;
}

std::string npy_bytes(const torch::Tensor& tensor) {
  const auto t = tensor.detach().to(torch::kCPU).contiguous();
  const char* descr = nullptr;
  for (const auto& d : kDtypes) {
    if (d.type == t.scalar_type() && descr == nullptr) descr = d.descr;
  }
  if (descr == nullptr)
    throw Error(std::string("npy: cannot write dtype ") + c10::toString(t.scalar_type()));
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                       shape_str(t.sizes().vec()) + ", }";
  // Pad with spaces so the data starts 64-byte aligned (numpy's layout), newline last.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  put16(out, static_cast<uint16_t>(header.size()));
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

std::string read_binary_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path + ": read error");
  return bytes;
}

void write_binary_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(path + ": cannot open for writing");
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw Error(path + ": write error");
}

torch::Tensor read_npy(const std::string& path) { return parse_npy(read_binary_file(path), path); }

void write_npy(const std::string& path, const torch::Tensor& tensor) {
  write_binary_file(path, npy_bytes(tensor));
}

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50,
                   kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;

std::string inflate_raw(std::string_view in, uint64_t out_size, const std::string& ctx) {
  std::string out(out_size, '\0');
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw Error(ctx + ": zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const uint64_t produced = zs.total_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || produced != out_size)
    throw Error(ctx + ": corrupt deflate data (zlib: " + (zs.msg ? zs.msg : std::to_string(rc)) + ")");
  return out;
}

}  // namespace

TensorMap read_npz(const std::string& path) {
  const std::string data = read_binary_file(path);
  const auto* b = reinterpret_cast<const uint8_t*>(data.data());
  const size_t n = data.size();
  // The end-of-central-directory record: 22 bytes plus a comment of up to 64 KiB.
  if (n < 22) throw Error(path + ": not a zip/.npz archive (too short)");
  size_t eocd = std::string::npos;
  for (size_t i = n - 22 + 1; i-- > (n > 22 + 65535 ? n - 22 - 65535 : 0);) {
    if (le32(b + i) == kEndSig) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos)
    throw Error(path + ": not a zip/.npz archive or truncated (no end of central directory)");
  uint64_t count = le16(b + eocd + 10), cd_size = le32(b + eocd + 12), cd_offset = le32(b + eocd + 16);
  if (eocd >= 20 && le32(b + eocd - 20) == kZip64LocatorSig) {
    const uint64_t z64 = le64(b + eocd - 20 + 8);
    if (z64 + 56 > n || le32(b + z64) != kZip64EndSig) throw Error(path + ": corrupt ZIP64 end record");
    count = le64(b + z64 + 32);
    cd_size = le64(b + z64 + 40);
    cd_offset = le64(b + z64 + 48);
  }
  if (cd_offset + cd_size > n) throw Error(path + ": truncated archive (central directory past the end)");
  TensorMap out;
  size_t p = cd_offset;
  for (uint64_t e = 0; e < count; ++e) {
    if (p + 46 > n || le32(b + p) != kCentralSig)
      throw Error(path + ": corrupt central directory at entry " + std::to_string(e));
    const uint16_t method = le16(b + p + 10);
    const uint32_t crc = le32(b + p + 16);
    uint64_t csize = le32(b + p + 20), usize = le32(b + p + 24);
    const uint16_t name_len = le16(b + p + 28), extra_len = le16(b + p + 30), comment_len = le16(b + p + 32);
    uint64_t local = le32(b + p + 42);
    if (p + 46 + name_len + extra_len > n) throw Error(path + ": truncated central directory");
    const std::string name(data.data() + p + 46, name_len);
    // ZIP64 extra field: the 64-bit values of the fields saturated at 0xffffffff, in order.
    for (size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const uint16_t id = le16(b + x), len = le16(b + x + 2);
      if (id == 0x0001) {
        size_t q = x + 4;
        if (usize == 0xffffffffu) usize = le64(b + q), q += 8;
        if (csize == 0xffffffffu) csize = le64(b + q), q += 8;
        if (local == 0xffffffffu) local = le64(b + q);
      }
      x += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    const std::string ctx = path + ": member '" + name + "'";
    if (local + 30 > n || le32(b + local) != kLocalSig) throw Error(ctx + ": corrupt local header");
    const uint64_t start = local + 30 + le16(b + local + 26) + le16(b + local + 28);
    if (start + csize > n)
      throw Error(ctx + ": truncated archive (member data runs past the end of the file)");
    std::string_view raw(data.data() + start, csize);
    std::string inflated;
    if (method == 8) {
      inflated = inflate_raw(raw, usize, ctx);
      raw = inflated;
    } else if (method != 0) {
      throw Error(ctx + ": unsupported zip compression method " + std::to_string(method) +
                  " (stored and deflate are supported)");
    }
    if (raw.size() != usize) throw Error(ctx + ": size mismatch");
    const uint32_t actual = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uInt>(raw.size())));
    if (actual != crc) throw Error(ctx + ": CRC-32 mismatch (corrupt data)");
    std::string key = name;
    if (key.size() > 4 && key.ends_with(".npy")) key.resize(key.size() - 4);
    out[key] = parse_npy(raw, ctx);
  }
  return out;
}

void write_npz(const std::string& path, const TensorMap& tensors) {
  std::string out, central;
  for (const auto& [key, tensor] : tensors) {
    const std::string name = key + ".npy";
    const std::string body = npy_bytes(tensor);
    if (out.size() + body.size() > 0xfffffff0ull)
      throw Error(path + ": archive over 4 GiB needs ZIP64, which write_npz does not write");
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
    const uint32_t offset = static_cast<uint32_t>(out.size());
    auto common = [&](std::string& s) {  // version needed .. extra length
      put16(s, 20);  // version needed: 2.0
      put16(s, 0);   // flags
      put16(s, 0);   // method: stored
      put16(s, 0);   // mod time
      put16(s, 0x21);  // mod date: 1980-01-01
      put32(s, crc);
      put32(s, static_cast<uint32_t>(body.size()));
      put32(s, static_cast<uint32_t>(body.size()));
      put16(s, static_cast<uint16_t>(name.size()));
      put16(s, 0);  // extra length
    };
    put32(out, kLocalSig);
    common(out);
    out += name;
    out += body;
    put32(central, kCentralSig);
    put16(central, 20);  // version made by
    common(central);
    put16(central, 0);  // comment length
    put16(central, 0);  // disk number
    put16(central, 0);  // internal attributes
    put32(central, 0);  // external attributes
    put32(central, offset);
    central += name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  put32(out, kEndSig);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<uint16_t>(tensors.size()));
  put16(out, static_cast<uint16_t>(tensors.size()));
  put32(out, static_cast<uint32_t>(central.size()));
  put32(out, cd_offset);
  put16(out, 0);
  write_binary_file(path, out);
}

}  // namespace scenic::common
