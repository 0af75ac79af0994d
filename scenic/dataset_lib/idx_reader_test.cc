#include "scenic/dataset_lib/idx_reader.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <torch/torch.h>

#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

using testing::idx_bytes;
using testing::read_raw;
using testing::TempDir;
using testing::write_gz;
using testing::write_raw;

// 3 images of 2x4, pixel k = 10 * k + 1 (k = flat index), so 0..231 plus a 255 at the end.
std::vector<uint8_t> small_pixels() {
  std::vector<uint8_t> p;
  for (int k = 0; k < 24; ++k) p.push_back(static_cast<uint8_t>(k == 23 ? 255 : 10 * k + 1));
  return p;
}

void expect_small_images(const torch::Tensor& t) {
  ASSERT_EQ(t.scalar_type(), torch::kUInt8);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 1, 2, 4}));
  auto flat = t.contiguous().view({-1});
  auto expected = small_pixels();
  for (int k = 0; k < 24; ++k) EXPECT_EQ(flat[k].item<int>(), expected[k]) << k;
  EXPECT_EQ(t[1][0][1][2].item<int>(), 10 * (8 + 4 + 2) + 1);  // image 1, row 1, col 2
}

TEST(IdxReader, RawImagesAndLabels) {
  TempDir dir;
  write_raw(dir.file("img"), idx_bytes(0x08, {3, 2, 4}, small_pixels()));
  write_raw(dir.file("lab"), idx_bytes(0x08, {3}, {7, 0, 9}));
  expect_small_images(read_idx_images(dir.file("img")));
  torch::Tensor labels = read_idx_labels(dir.file("lab"));
  EXPECT_EQ(labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(labels, torch::tensor({7, 0, 9}, torch::kInt64)));
}

TEST(IdxReader, GzippedImagesAndLabels) {
  TempDir dir;
  write_gz(dir.file("img.gz"), idx_bytes(0x08, {3, 2, 4}, small_pixels()));
  write_gz(dir.file("lab.gz"), idx_bytes(0x08, {3}, {7, 0, 9}));
  expect_small_images(read_idx_images(dir.file("img.gz")));
  EXPECT_TRUE(torch::equal(read_idx_labels(dir.file("lab.gz")),
                           torch::tensor({7, 0, 9}, torch::kInt64)));
}

TEST(IdxReader, GzipIsDetectedByMagicNotByName) {
  TempDir dir;
  write_gz(dir.file("gzipped_without_suffix"), idx_bytes(0x08, {3, 2, 4}, small_pixels()));
  write_raw(dir.file("raw_with_suffix.gz"), idx_bytes(0x08, {3, 2, 4}, small_pixels()));
  expect_small_images(read_idx_images(dir.file("gzipped_without_suffix")));
  expect_small_images(read_idx_images(dir.file("raw_with_suffix.gz")));
}

TEST(IdxReader, ConcatenatedGzipMembers) {
  TempDir dir;
  auto bytes = idx_bytes(0x08, {3, 2, 4}, small_pixels());
  std::vector<uint8_t> a(bytes.begin(), bytes.begin() + 13), b(bytes.begin() + 13, bytes.end());
  write_gz(dir.file("a.gz"), a);
  write_gz(dir.file("b.gz"), b);
  auto joined = read_raw(dir.file("a.gz"));
  auto second = read_raw(dir.file("b.gz"));
  joined.insert(joined.end(), second.begin(), second.end());
  write_raw(dir.file("ab.gz"), joined);
  expect_small_images(read_idx_images(dir.file("ab.gz")));
}

TEST(IdxReader, MultiByteTypesAreBigEndian) {
  TempDir dir;
  // int32 [2, 2]: 1, -2, 0x01020304, 256
  std::vector<uint8_t> ints = {0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 0, 0, 1, 0};
  write_raw(dir.file("i32"), idx_bytes(0x0C, {2, 2}, ints));
  torch::Tensor t = read_idx(dir.file("i32"));
  EXPECT_EQ(t.scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(t, torch::tensor({1, -2, 0x01020304, 256}, torch::kInt32).view({2, 2})));
  // float32 [2]: 1.5 (0x3fc00000), -0.25 (0xbe800000)
  write_raw(dir.file("f32"), idx_bytes(0x0D, {2}, {0x3f, 0xc0, 0, 0, 0xbe, 0x80, 0, 0}));
  torch::Tensor f = read_idx(dir.file("f32"));
  EXPECT_EQ(f.scalar_type(), torch::kFloat32);
  EXPECT_EQ(f[0].item<float>(), 1.5f);
  EXPECT_EQ(f[1].item<float>(), -0.25f);
}

TEST(IdxReader, WrongMagic) {
  TempDir dir;
  write_raw(dir.file("labels-as-images"), idx_bytes(0x08, {3}, {1, 2, 3}));
  std::string msg = error_of([&] { read_idx_images(dir.file("labels-as-images")); });
  EXPECT_NE(msg.find(dir.file("labels-as-images")), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad magic 0x00000801"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 0x00000803 for idx3 ubyte images"), std::string::npos) << msg;

  write_raw(dir.file("garbage"), {'h', 'e', 'l', 'l', 'o', '!', '!', '!'});
  msg = error_of([&] { read_idx(dir.file("garbage")); });
  EXPECT_NE(msg.find(dir.file("garbage") + ": bad magic 0x68656c6c"), std::string::npos) << msg;
}

TEST(IdxReader, TruncatedData) {
  TempDir dir;
  auto pixels = small_pixels();
  pixels.resize(20);
  write_gz(dir.file("short.gz"), idx_bytes(0x08, {3, 2, 4}, pixels));
  std::string msg = error_of([&] { read_idx_images(dir.file("short.gz")); });
  EXPECT_NE(msg.find(dir.file("short.gz") + ": truncated: header says 3 images of 2x4 (24 bytes)"
                                            " but only 20 bytes of data"),
            std::string::npos)
      << msg;
}

TEST(IdxReader, ExtraBytesAfterData) {
  TempDir dir;
  auto pixels = small_pixels();
  pixels.push_back(0);
  write_raw(dir.file("long"), idx_bytes(0x08, {3, 2, 4}, pixels));
  std::string msg = error_of([&] { read_idx_images(dir.file("long")); });
  EXPECT_NE(msg.find(dir.file("long")), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 extra bytes"), std::string::npos) << msg;
}

TEST(IdxReader, TruncatedHeader) {
  TempDir dir;
  auto bytes = idx_bytes(0x08, {60000, 28, 28}, {});
  bytes.resize(10);  // magic + 1.5 sizes
  write_raw(dir.file("hdr"), bytes);
  std::string msg = error_of([&] { read_idx_images(dir.file("hdr")); });
  EXPECT_NE(msg.find(dir.file("hdr") + ": truncated header"), std::string::npos) << msg;
  EXPECT_NE(msg.find("need 16 header bytes but the file has 10"), std::string::npos) << msg;

  write_raw(dir.file("empty"), {});
  msg = error_of([&] { read_idx_labels(dir.file("empty")); });
  EXPECT_NE(msg.find(dir.file("empty") + ": truncated header"), std::string::npos) << msg;
}

TEST(IdxReader, CorruptGzip) {
  TempDir dir;
  write_gz(dir.file("ok.gz"), idx_bytes(0x08, {3, 2, 4}, small_pixels()));
  auto gz = read_raw(dir.file("ok.gz"));

  auto bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0xff;  // CRC32 trailer
  write_raw(dir.file("crc.gz"), bad_crc);
  std::string msg = error_of([&] { read_idx_images(dir.file("crc.gz")); });
  EXPECT_NE(msg.find(dir.file("crc.gz") + ": corrupt gzip stream"), std::string::npos) << msg;

  auto bad_method = gz;
  bad_method[2] = 7;  // compression method must be 8 (deflate)
  write_raw(dir.file("method.gz"), bad_method);
  msg = error_of([&] { read_idx_images(dir.file("method.gz")); });
  EXPECT_NE(msg.find(dir.file("method.gz") + ": corrupt gzip stream"), std::string::npos) << msg;

  auto cut = gz;
  cut.resize(gz.size() / 2);
  write_raw(dir.file("cut.gz"), cut);
  msg = error_of([&] { read_idx_images(dir.file("cut.gz")); });
  EXPECT_NE(msg.find(dir.file("cut.gz") + ": truncated gzip stream"), std::string::npos) << msg;

  auto trailing = gz;
  trailing.push_back('x');
  write_raw(dir.file("trailing.gz"), trailing);
  msg = error_of([&] { read_idx_images(dir.file("trailing.gz")); });
  EXPECT_NE(msg.find(dir.file("trailing.gz") + ": corrupt gzip stream"), std::string::npos)
      << msg;
}

TEST(IdxReader, MissingFile) {
  TempDir dir;
  std::string msg = error_of([&] { read_idx_images(dir.file("nope")); });
  EXPECT_NE(msg.find(dir.file("nope") + ": no such file"), std::string::npos) << msg;
}

TEST(IdxReader, FindDataFilePrefersPlainThenGz) {
  TempDir dir;
  write_raw(dir.file("a"), {1});
  write_raw(dir.file("a.gz"), {1});
  write_raw(dir.file("b.gz"), {1});
  EXPECT_EQ(find_data_file(dir.path(), "a"), dir.file("a"));
  EXPECT_EQ(find_data_file(dir.path(), "b"), dir.file("b.gz"));
  std::string msg = error_of([&] { find_data_file(dir.path(), "c"); });
  EXPECT_NE(msg.find(dir.file("c") + ": not found (looked for c and c.gz in " + dir.path()),
            std::string::npos)
      << msg;
  msg = error_of([&] { find_data_file(dir.file("no_such_dir"), "c"); });
  EXPECT_NE(msg.find(dir.file("no_such_dir") + ": data directory does not exist"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace scenic::dataset
