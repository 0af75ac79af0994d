// TFRecord files: reading (with random access by record index) and writing, without
// TensorFlow.
//
// The record container of tf.io.TFRecordWriter / tf.data.TFRecordDataset, which TFDS
// uses for its `*.tfrecord-NNNNN-of-MMMMM` shards (Scenic reads every dataset through
// them). Each record is
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) |
//   length bytes of data          | uint32 masked_crc32c(data)
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC32C is the Castagnoli
// polynomial (reflected 0x82f63b78). Only uncompressed files are supported (TFDS writes
// them uncompressed).
//
// TFRecordReader scans the headers once (opening the file, reading 12 bytes per record
// and checking each length CRC) to index record offsets, then reads any record by index
// with pread, checking its data CRC. A damaged file does not fail the scan: the records
// before the damage are indexed, and the first damaged record is kept as a "broken"
// entry whose read() throws the error (truncated record, bad length CRC). Records after
// a broken length are unreachable (the framing is lost), as in TensorFlow. So a source
// can skip bad records (dataset_configs.on_error: skip) and still read the good ones.
// Every error names the file and the record index.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::common {

// CRC32C of `n` bytes, continuing from `crc` (0 to start). crc32c("123456789") =
// 0xe3069283 (the standard check value).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);
inline uint32_t crc32c(std::string_view data) { return crc32c_extend(0, data.data(), data.size()); }
// TFRecord's rotation + constant applied to stored CRCs, and its inverse.
uint32_t mask_crc32c(uint32_t crc);
uint32_t unmask_crc32c(uint32_t masked);

// A bad record or file. Messages start with "<path>: record <i>: ".
class TFRecordError : public Error {
 public:
  using Error::Error;
};

class TFRecordReader {
 public:
  // Opens and indexes `path`; throws TFRecordError if the file cannot be opened or read.
  explicit TFRecordReader(std::string path);

  // Number of indexed records, counting a trailing broken one (see is_broken).
  size_t size() const { return entries_.size(); }
  // Whether the file ends in damage (a truncated record or a bad length CRC).
  bool is_broken() const { return !broken_message_.empty(); }
  // Number of records that can be read without error from the framing (data CRCs are
  // checked only on read).
  size_t num_intact() const { return is_broken() ? entries_.size() - 1 : entries_.size(); }
  const std::string& path() const { return path_; }

  // The data of record `index`. Thread-safe (opens the file per call: a dataset may
  // have more shards than a process may hold open). Throws TFRecordError for an index
  // out of range, a broken record, a short read or a bad data CRC.
  std::string read(size_t index) const;

 private:
  struct Entry {
    uint64_t offset;  // of the data (after the 12-byte header)
    uint64_t length;
  };
  std::string path_;
  std::vector<Entry> entries_;
  std::string broken_message_;  // error for the last entry when the file is damaged
};

// Every record of `path`, in order (throws on the first bad one).
std::vector<std::string> read_all_tfrecords(const std::string& path);

class TFRecordWriter {
 public:
  // Creates (truncates) `path`; throws TFRecordError if it cannot.
  explicit TFRecordWriter(const std::string& path);
  ~TFRecordWriter();
  TFRecordWriter(const TFRecordWriter&) = delete;
  TFRecordWriter& operator=(const TFRecordWriter&) = delete;

  void write(std::string_view record);
  // Pushes buffered records to the OS, so readers (TensorBoard) see them; throws on error.
  void flush();
  // Flushes and closes; throws on a write error. Called by the destructor if needed
  // (which swallows errors).
  void close();

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace scenic::common
