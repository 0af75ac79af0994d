#include "scenic/common_lib/tfrecord.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace scenic::common {
namespace {

constexpr uint32_t kCrc32cPoly = 0x82f63b78u;  // Castagnoli, bit-reflected
constexpr uint32_t kMaskDelta = 0xa282ead8u;
constexpr size_t kHeaderSize = 12;  // uint64 length + uint32 masked CRC of the length
constexpr size_t kFooterSize = 4;   // uint32 masked CRC of the data

// Slicing-by-8 tables: table[0] is the classic byte-at-a-time table; table[k][b] is the
// CRC of byte b followed by k zero bytes, so 8 input bytes fold in with 8 lookups.
using CrcTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr CrcTables make_tables() {
  CrcTables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCrc32cPoly : c >> 1;
    t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (int k = 1; k < 8; ++k) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}

constexpr CrcTables kTables = make_tables();

uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

void store_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void store_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

std::string record_prefix(const std::string& path, size_t index) {
  return path + ": record " + std::to_string(index) + ": ";
}

// pread until `n` bytes or EOF; returns the number read, throws on an I/O error.
size_t pread_full(int fd, void* buf, size_t n, uint64_t offset, const std::string& path) {
  size_t got = 0;
  auto* out = static_cast<char*>(buf);
  while (got < n) {
    const ssize_t r = ::pread(fd, out + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw TFRecordError(path + ": read error: " + std::strerror(errno));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// An fd closed on scope exit.
class Fd {
 public:
  explicit Fd(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw TFRecordError(path + ": cannot open: " + std::strerror(errno));
  }
  ~Fd() { ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint32_t lo = c ^ load_le32(p);
    const uint32_t hi = load_le32(p + 4);
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return ~c;
}

uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

uint32_t unmask_crc32c(uint32_t masked) {
  const uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

TFRecordReader::TFRecordReader(std::string path) : path_(std::move(path)) {
  Fd fd(path_);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    throw TFRecordError(path_ + ": cannot stat: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw TFRecordError(path_ + ": is a directory, expected a file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint64_t pos = 0;
  while (pos < file_size) {
    const size_t index = entries_.size();
    const uint64_t left = file_size - pos;
    uint8_t header[kHeaderSize];
    if (left < kHeaderSize || pread_full(fd.get(), header, kHeaderSize, pos, path_) < kHeaderSize) {
      broken_message_ = record_prefix(path_, index) + "truncated record: " +
                        std::to_string(left) + " bytes left at offset " + std::to_string(pos) +
                        ", a record header needs " + std::to_string(kHeaderSize);
      entries_.push_back({pos, 0});
      break;
    }
    const uint64_t length = load_le64(header);
    const uint32_t stored = load_le32(header + 8);
    const uint32_t actual = mask_crc32c(crc32c_extend(0, header, 8));
    if (stored != actual) {
      broken_message_ = record_prefix(path_, index) + "bad length CRC at offset " +
                        std::to_string(pos) + " (stored " + hex32(stored) + ", computed " +
                        hex32(actual) + "): the file is corrupt";
      entries_.push_back({pos + kHeaderSize, 0});
      break;
    }
    if (length > left - kHeaderSize || left - kHeaderSize - length < kFooterSize) {
      broken_message_ = record_prefix(path_, index) + "truncated record: header at offset " +
                        std::to_string(pos) + " announces " + std::to_string(length) +
                        " bytes of data + 4 of CRC, but only " +
                        std::to_string(left - kHeaderSize) + " bytes follow";
      entries_.push_back({pos + kHeaderSize, 0});
      break;
    }
    entries_.push_back({pos + kHeaderSize, length});
    pos += kHeaderSize + length + kFooterSize;
  }
}

std::string TFRecordReader::read(size_t index) const {
  if (index >= entries_.size()) {
    throw TFRecordError(record_prefix(path_, index) + "out of range: the file has " +
                        std::to_string(entries_.size()) + " records");
  }
  if (is_broken() && index + 1 == entries_.size()) throw TFRecordError(broken_message_);
  const Entry& e = entries_[index];
  std::string data(e.length + kFooterSize, '\0');
  Fd fd(path_);
  const size_t got = pread_full(fd.get(), data.data(), data.size(), e.offset, path_);
  if (got < data.size()) {
    // The file shrank since it was indexed.
    throw TFRecordError(record_prefix(path_, index) + "truncated record: read " +
                        std::to_string(got) + " of " + std::to_string(data.size()) +
                        " bytes at offset " + std::to_string(e.offset));
  }
  const uint32_t stored = load_le32(reinterpret_cast<const uint8_t*>(data.data()) + e.length);
  const uint32_t actual = mask_crc32c(crc32c_extend(0, data.data(), e.length));
  if (stored != actual) {
    throw TFRecordError(record_prefix(path_, index) + "bad data CRC (stored " + hex32(stored) +
                        ", computed " + hex32(actual) + " over " + std::to_string(e.length) +
                        " bytes at offset " + std::to_string(e.offset) +
                        "): the record is corrupt");
  }
  data.resize(e.length);
  return data;
}

std::vector<std::string> read_all_tfrecords(const std::string& path) {
  TFRecordReader reader(path);
  std::vector<std::string> out;
  out.reserve(reader.size());
  for (size_t i = 0; i < reader.size(); ++i) out.push_back(reader.read(i));
  return out;
}

TFRecordWriter::TFRecordWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) {
    throw TFRecordError(path + ": cannot open for writing: " + std::strerror(errno));
  }
}

TFRecordWriter::~TFRecordWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TFRecordWriter::write(std::string_view record) {
  if (file_ == nullptr) throw TFRecordError(path_ + ": write after close");
  uint8_t header[kHeaderSize];
  store_le64(header, record.size());
  store_le32(header + 8, mask_crc32c(crc32c_extend(0, header, 8)));
  uint8_t footer[kFooterSize];
  store_le32(footer, mask_crc32c(crc32c(record)));
  if (std::fwrite(header, 1, kHeaderSize, file_) != kHeaderSize ||
      std::fwrite(record.data(), 1, record.size(), file_) != record.size() ||
      std::fwrite(footer, 1, kFooterSize, file_) != kFooterSize) {
    throw TFRecordError(path_ + ": write error: " + std::strerror(errno));
  }
}

void TFRecordWriter::flush() {
  if (file_ == nullptr) throw TFRecordError(path_ + ": flush after close");
  if (std::fflush(file_) != 0) throw TFRecordError(path_ + ": write error: " + std::strerror(errno));
}

void TFRecordWriter::close() {
  if (file_ == nullptr) return;
  const bool ok = std::fflush(file_) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok || !closed) throw TFRecordError(path_ + ": write error on close: " + std::strerror(errno));
}

}  // namespace scenic::common
