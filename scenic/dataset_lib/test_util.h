// Test helpers for dataset_lib: temporary directories and IDX files written
// independently of the reader (gzip through zlib's gzopen/gzwrite), plus a fake
// MNIST directory whose pixel values and labels follow known formulas.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "scenic/common_lib/testing.h"  // TempDir

namespace scenic::dataset::testing {

using scenic::testing::TempDir;

inline void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// Header (magic 0x0000TTNN, sizes) followed by `data` as given.
inline std::vector<uint8_t> idx_bytes(uint8_t type_code, const std::vector<uint32_t>& dims,
                                      const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out = {0, 0, type_code, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

inline void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

inline bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline void remove_file(const std::string& path) { ASSERT_EQ(::unlink(path.c_str()), 0) << path; }

inline std::vector<uint8_t> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Fake MNIST: pixel (split s, example i, row r, col c) and label formulas.
constexpr int kSide = 28;
inline uint8_t fake_pixel(int split, int i, int r, int c) {
  return static_cast<uint8_t>((split * 101 + i * 37 + r * 5 + c * 3) % 256);
}
inline int64_t fake_label(int split, int i) { return split == 0 ? i % 10 : (i * 3 + 1) % 10; }

// Writes {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (split 0 = train, 1 = test).
inline void write_fake_mnist(const std::string& dir, int num_train, int num_test, bool gz) {
  const char* prefixes[2] = {"train", "t10k"};
  const int counts[2] = {num_train, num_test};
  for (int s = 0; s < 2; ++s) {
    std::vector<uint8_t> pixels, labels;
    for (int i = 0; i < counts[s]; ++i) {
      labels.push_back(static_cast<uint8_t>(fake_label(s, i)));
      for (int r = 0; r < kSide; ++r)
        for (int c = 0; c < kSide; ++c) pixels.push_back(fake_pixel(s, i, r, c));
    }
    const uint32_t n = static_cast<uint32_t>(counts[s]);
    auto images = idx_bytes(0x08, {n, kSide, kSide}, pixels);
    auto label_file = idx_bytes(0x08, {n}, labels);
    const std::string base = dir + "/" + prefixes[s];
    if (gz) {
      write_gz(base + "-images-idx3-ubyte.gz", images);
      write_gz(base + "-labels-idx1-ubyte.gz", label_file);
    } else {
      write_raw(base + "-images-idx3-ubyte", images);
      write_raw(base + "-labels-idx1-ubyte", label_file);
    }
  }
}

}  // namespace scenic::dataset::testing
