#include "scenic/common_lib/tfrecord.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;

const std::string kTestdata = std::string(SCENIC_SOURCE_DIR) + "/scenic/common_lib/testdata/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

nlohmann::json fixture_json() {
  return nlohmann::json::parse(read_file(kTestdata + "examples.json"));
}

// The serialized records TensorFlow wrote (tools/fixtures/make_tfrecord_fixtures.py).
std::vector<std::string> expected_records() {
  std::vector<std::string> out;
  const nlohmann::json json = fixture_json();  // kept alive for the loop
  for (const auto& r : json["records"]) out.push_back(unhex(r["serialized_hex"]));
  return out;
}

// A file in a fresh temp dir, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& name) : path_(dir_.file(name)) {}
  const std::string& path() const { return path_; }

 private:
  scenic::testing::TempDir dir_;
  std::string path_;
};

// Bit-at-a-time CRC32C straight from the definition (reflected polynomial 0x82f63b78),
// independent of the table-driven implementation.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32c, StandardCheckValueAndRfc3720Vectors) {
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);  // the CRC-32C catalogue's check value
  EXPECT_EQ(crc32c(""), 0u);
  // RFC 3720 (iSCSI) appendix B.4: 32 bytes of zeros, of 0xff, and 0x00..0x1f.
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46dd794eu);
}

TEST(Crc32c, TableDrivenMatchesBitwiseAndExtendsAcrossSplits) {
  std::string data;
  for (int i = 0; i < 301; ++i) data.push_back(static_cast<char>((i * 73 + 11) % 256));
  // Every length 0..301 (all alignments of the 8-byte loop and its tail).
  for (size_t n = 0; n <= data.size(); ++n) {
    ASSERT_EQ(crc32c(data.substr(0, n)), crc32c_bitwise(data.substr(0, n))) << "length " << n;
  }
  const uint32_t whole = crc32c(data);
  for (size_t cut = 0; cut <= data.size(); cut += 7) {
    const uint32_t head = crc32c(data.substr(0, cut));
    EXPECT_EQ(crc32c_extend(head, data.data() + cut, data.size() - cut), whole) << "cut " << cut;
  }
}

TEST(Crc32c, MaskIsTensorFlowsRotationPlusConstant) {
  // mask(c) = rotr15(c) + 0xa282ead8: mask(0) = 0xa282ead8; rotr15(0x8000) = 1.
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
  EXPECT_EQ(mask_crc32c(0x8000u), 0xa282ead9u);
  for (uint32_t c : {0u, 1u, 0xe3069283u, 0xffffffffu, 0x12345678u}) {
    EXPECT_EQ(unmask_crc32c(mask_crc32c(c)), c);
  }
}

TEST(TFRecordReader, ReadsTheFileTensorFlowWrote) {
  const auto expected = expected_records();
  ASSERT_EQ(expected.size(), 4u);
  EXPECT_EQ(expected[2].size(), 0u);  // an empty Example is a zero-length record
  TFRecordReader reader(kTestdata + "examples.tfrecord");
  ASSERT_EQ(reader.size(), expected.size());
  EXPECT_FALSE(reader.is_broken());
  EXPECT_EQ(reader.num_intact(), expected.size());
  // Random access, out of order.
  for (size_t i : {3u, 0u, 2u, 1u}) EXPECT_EQ(reader.read(i), expected[i]) << "record " << i;
  EXPECT_EQ(read_all_tfrecords(kTestdata + "examples.tfrecord"), expected);
}

TEST(TFRecordWriter, WritesTheSameBytesAsTensorFlow) {
  TempFile tmp("writer.tfrecord");
  {
    TFRecordWriter writer(tmp.path());
    for (const auto& r : expected_records()) writer.write(r);
    writer.close();
  }
  const std::string ours = read_file(tmp.path());
  const std::string theirs = read_file(kTestdata + "examples.tfrecord");
  EXPECT_EQ(static_cast<int64_t>(theirs.size()), fixture_json()["file_size"].get<int64_t>());
  EXPECT_TRUE(ours == theirs) << "our file differs from TensorFlow's";
}

// Byte offset where record `i` starts: each record is 12 + length + 4 bytes.
size_t record_offset(const std::vector<std::string>& records, size_t i) {
  size_t off = 0;
  for (size_t j = 0; j < i; ++j) off += 16 + records[j].size();
  return off;
}

TEST(TFRecordReader, TruncatedDataReportsTheRecordAndKeepsEarlierOnes) {
  const auto records = expected_records();
  const std::string file = read_file(kTestdata + "examples.tfrecord");
  TempFile tmp("truncated.tfrecord");
  // Cut record 3 in the middle of its data.
  write_file(tmp.path(), file.substr(0, record_offset(records, 3) + 12 + records[3].size() / 2));
  TFRecordReader reader(tmp.path());
  EXPECT_EQ(reader.size(), 4u);
  EXPECT_TRUE(reader.is_broken());
  EXPECT_EQ(reader.num_intact(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(reader.read(i), records[i]);
  const std::string msg = error_of([&] { reader.read(3); });
  EXPECT_CONTAINS(msg, tmp.path() + ": record 3: truncated record");
  EXPECT_CONTAINS(error_of([&] { read_all_tfrecords(tmp.path()); }), "record 3: truncated");
}

TEST(TFRecordReader, TruncatedHeaderAndMissingFooter) {
  const auto records = expected_records();
  const std::string file = read_file(kTestdata + "examples.tfrecord");
  TempFile tmp("truncated_header.tfrecord");
  // 5 bytes into record 2's 12-byte header.
  write_file(tmp.path(), file.substr(0, record_offset(records, 2) + 5));
  TFRecordReader reader(tmp.path());
  EXPECT_EQ(reader.size(), 3u);
  EXPECT_EQ(reader.read(1), records[1]);
  EXPECT_CONTAINS(error_of([&] { reader.read(2); }),
                  tmp.path() + ": record 2: truncated record: 5 bytes left");
  // Everything but the last byte: record 3's data CRC is incomplete.
  write_file(tmp.path(), file.substr(0, file.size() - 1));
  TFRecordReader cut_footer(tmp.path());
  EXPECT_EQ(cut_footer.size(), 4u);
  EXPECT_CONTAINS(error_of([&] { cut_footer.read(3); }), "record 3: truncated record");
}

TEST(TFRecordReader, FlippedDataByteIsABadDataCrcForThatRecordOnly) {
  const auto records = expected_records();
  std::string file = read_file(kTestdata + "examples.tfrecord");
  file[record_offset(records, 1) + 12 + 3] ^= 0x20;  // a byte of record 1's data
  TempFile tmp("flipped_data.tfrecord");
  write_file(tmp.path(), file);
  TFRecordReader reader(tmp.path());
  EXPECT_FALSE(reader.is_broken());  // the framing is intact
  EXPECT_EQ(reader.size(), 4u);
  EXPECT_EQ(reader.read(0), records[0]);
  EXPECT_EQ(reader.read(3), records[3]);
  EXPECT_CONTAINS(error_of([&] { reader.read(1); }), tmp.path() + ": record 1: bad data CRC");
}

TEST(TFRecordReader, FlippedLengthByteIsABadLengthCrcAndEndsTheFile) {
  const auto records = expected_records();
  std::string file = read_file(kTestdata + "examples.tfrecord");
  file[record_offset(records, 2) + 1] ^= 0x01;  // record 2's length, second byte
  TempFile tmp("flipped_length.tfrecord");
  write_file(tmp.path(), file);
  TFRecordReader reader(tmp.path());
  EXPECT_TRUE(reader.is_broken());
  EXPECT_EQ(reader.size(), 3u);  // records 0, 1 and the broken 2; 3 is unreachable
  EXPECT_EQ(reader.read(1), records[1]);
  EXPECT_CONTAINS(error_of([&] { reader.read(2); }), tmp.path() + ": record 2: bad length CRC");
  // A flipped byte in the stored length CRC itself reads the same way.
  file = read_file(kTestdata + "examples.tfrecord");
  file[record_offset(records, 0) + 9] ^= 0x80;
  write_file(tmp.path(), file);
  EXPECT_CONTAINS(error_of([&] { TFRecordReader(tmp.path()).read(0); }),
                  "record 0: bad length CRC");
}

TEST(TFRecordReader, MissingFileEmptyFileAndOutOfRange) {
  EXPECT_CONTAINS(error_of([] { TFRecordReader("/nonexistent/x.tfrecord"); }),
                  "/nonexistent/x.tfrecord: cannot open");
  TempFile tmp("empty.tfrecord");
  write_file(tmp.path(), "");
  TFRecordReader empty(tmp.path());
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_FALSE(empty.is_broken());
  TFRecordReader reader(kTestdata + "examples.tfrecord");
  EXPECT_CONTAINS(error_of([&] { reader.read(4); }), "record 4: out of range: the file has 4 records");
}

TEST(TFRecordWriter, RoundTripsLargeAndBinaryRecords) {
  TempFile tmp("roundtrip.tfrecord");
  std::vector<std::string> records = {std::string(100000, '\xab'), std::string("\0\x01\x02", 3), ""};
  for (int i = 0; i < 50; ++i) records.push_back("record " + std::to_string(i));
  TFRecordWriter writer(tmp.path());
  writer.write(records[0]);
  writer.flush();  // visible to a reader while the writer is open
  EXPECT_EQ(read_all_tfrecords(tmp.path()), std::vector<std::string>{records[0]});
  for (size_t i = 1; i < records.size(); ++i) writer.write(records[i]);
  writer.close();
  EXPECT_EQ(read_all_tfrecords(tmp.path()), records);
  EXPECT_CONTAINS(error_of([&] { writer.write("x"); }), "write after close");
  EXPECT_CONTAINS(error_of([] { TFRecordWriter("/nonexistent/dir/out.tfrecord"); }),
                  "/nonexistent/dir/out.tfrecord: cannot open for writing");
}

}  // namespace
}  // namespace scenic::common
