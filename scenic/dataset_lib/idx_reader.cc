#include "scenic/dataset_lib/idx_reader.h"

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

#include <fstream>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

// POSIX stat rather than std::filesystem: the torch wheel's libtorch exports its own,
// incompatible copy of std::filesystem (pytorch/pytorch#133437), which can win symbol
// resolution and crash.
bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<uint8_t> read_raw_file(const std::string& path) {
  if (!path_exists(path)) throw Error(path + ": no such file");
  if (is_directory(path)) throw Error(path + ": is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)));
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw Error(path + ": read error");
  }
  return bytes;
}

bool has_gzip_magic(const std::vector<uint8_t>& b) {
  return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

// Inflates one or more concatenated gzip members (as `gzip -d` does).
std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out;
  out.reserve(in.size() * 4);
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  // 16 + MAX_WBITS: gzip wrapper only (the magic was checked already).
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw Error(path + ": zlib init failed");
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    const size_t old = out.size();
    out.resize(old + kChunk);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(kChunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (kChunk - zs.avail_out));
    if (rc == Z_STREAM_END) {
      // Another member may follow; trailing zero padding is tolerated, as gzip does.
      const uint8_t* rest = zs.next_in;
      const size_t left = zs.avail_in;
      if (left >= 2 && rest[0] == 0x1f && rest[1] == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      if (std::any_of(rest, rest + left, [](uint8_t c) { return c != 0; })) {
        inflateEnd(&zs);
        throw Error(path + ": corrupt gzip stream: " + std::to_string(left) +
                    " bytes of trailing garbage after the compressed data");
      }
      break;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      const size_t got = out.size();
      inflateEnd(&zs);
      throw Error(path + ": truncated gzip stream: compressed data ends early (" +
                  std::to_string(got) + " bytes decompressed so far)");
    }
    std::string msg = zs.msg ? zs.msg : ("zlib error " + std::to_string(rc));
    inflateEnd(&zs);
    throw Error(path + ": corrupt gzip stream: " + msg);
  }
  inflateEnd(&zs);
  return out;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) |
         uint32_t{p[3]};
}

struct IdxType {
  torch::Dtype dtype;
  size_t size;
  const char* name;
};

bool idx_type(uint8_t code, IdxType* t) {
  switch (code) {
    case 0x08: *t = {torch::kUInt8, 1, "ubyte"}; return true;
    case 0x09: *t = {torch::kInt8, 1, "sbyte"}; return true;
    case 0x0B: *t = {torch::kInt16, 2, "short"}; return true;
    case 0x0C: *t = {torch::kInt32, 4, "int"}; return true;
    case 0x0D: *t = {torch::kFloat32, 4, "float"}; return true;
    case 0x0E: *t = {torch::kFloat64, 8, "double"}; return true;
    default: return false;
  }
}

std::string join_dims(const std::vector<int64_t>& dims, const char* sep) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? sep : "") + std::to_string(dims[i]);
  return s;
}

// What the caller expects, for specific error messages; magic 0 = any IDX array.
struct Expect {
  uint32_t magic = 0;
  const char* what = nullptr;  // "idx3 ubyte images"
  const char* noun = nullptr;  // "images"
};

torch::Tensor parse_idx(const std::string& path, const Expect& expect) {
  std::vector<uint8_t> bytes = read_maybe_gzipped_file(path);
  if (bytes.size() < 4) {
    throw Error(path + ": truncated header: file has " + std::to_string(bytes.size()) +
                " bytes, an IDX header needs at least 4");
  }
  const uint32_t magic = be32(bytes.data());
  IdxType type;
  if (expect.magic != 0 && magic != expect.magic) {
    throw Error(path + ": bad magic " + hex32(magic) + " (expected " + hex32(expect.magic) +
                " for " + expect.what + ")");
  }
  if (bytes[0] != 0 || bytes[1] != 0 || !idx_type(bytes[2], &type) || bytes[3] == 0) {
    throw Error(path + ": bad magic " + hex32(magic) +
                " (not an IDX file: expected 0x0000TTNN with type TT in 08,09,0b,0c,0d,0e)");
  }
  const size_t ndims = bytes[3];
  const size_t header = 4 + 4 * ndims;
  if (bytes.size() < header) {
    throw Error(path + ": truncated header: " + std::to_string(ndims) + " dimensions need " +
                std::to_string(header) + " header bytes but the file has " +
                std::to_string(bytes.size()));
  }
  std::vector<int64_t> dims(ndims);
  int64_t count = 1;
  for (size_t i = 0; i < ndims; ++i) {
    dims[i] = be32(bytes.data() + 4 + 4 * i);
    if (dims[i] != 0 && count > (int64_t{1} << 40) / dims[i]) {
      throw Error(path + ": implausible IDX shape [" + join_dims(dims, ", ") + "]");
    }
    count *= dims[i];
  }
  const size_t want = static_cast<size_t>(count) * type.size;
  const size_t have = bytes.size() - header;
  if (have != want) {
    std::string says;
    if (expect.noun != nullptr && ndims >= 1) {
      std::vector<int64_t> rest(dims.begin() + 1, dims.end());
      says = std::to_string(dims[0]) + " " + expect.noun +
             (rest.empty() ? "" : " of " + join_dims(rest, "x"));
    } else {
      says = "shape [" + join_dims(dims, ", ") + "] of " + type.name;
    }
    if (have < want) {
      throw Error(path + ": truncated: header says " + says + " (" + std::to_string(want) +
                  " bytes) but only " + std::to_string(have) + " bytes of data");
    }
    throw Error(path + ": header says " + says + " (" + std::to_string(want) +
                " bytes) but the file has " + std::to_string(have - want) +
                " extra bytes after the data");
  }
  torch::Tensor t = torch::empty(dims, torch::TensorOptions().dtype(type.dtype));
  auto* dst = static_cast<uint8_t*>(t.data_ptr());
  const uint8_t* src = bytes.data() + header;
  if (type.size == 1) {
    std::memcpy(dst, src, want);
  } else {
    // IDX is big-endian; flip each element's bytes.
    for (size_t i = 0; i < want; i += type.size) {
      for (size_t j = 0; j < type.size; ++j) dst[i + j] = src[i + type.size - 1 - j];
    }
  }
  return t;
}

}  // namespace

std::vector<uint8_t> read_maybe_gzipped_file(const std::string& path) {
  std::vector<uint8_t> bytes = read_raw_file(path);
  return has_gzip_magic(bytes) ? gunzip(path, bytes) : bytes;
}

torch::Tensor read_idx(const std::string& path) { return parse_idx(path, Expect{}); }

torch::Tensor read_idx_images(const std::string& path) {
  torch::Tensor t = parse_idx(path, Expect{0x00000803, "idx3 ubyte images", "images"});
  return t.unsqueeze(1);  // [N, H, W] -> [N, 1, H, W]
}

torch::Tensor read_idx_labels(const std::string& path) {
  torch::Tensor t = parse_idx(path, Expect{0x00000801, "idx1 ubyte labels", "labels"});
  return t.to(torch::kInt64);
}

std::string find_data_file(const std::string& dir, const std::string& name) {
  if (!is_directory(dir)) {
    throw Error(dir + ": data directory does not exist (set dataset_configs.data_dir)");
  }
  const std::string plain = (!dir.empty() && dir.back() == '/' ? dir : dir + "/") + name;
  if (path_exists(plain)) return plain;
  const std::string gz = plain + ".gz";
  if (path_exists(gz)) return gz;
  throw Error(plain + ": not found (looked for " + name + " and " + name + ".gz in " + dir +
              ")");
}

}  // namespace scenic::dataset
