// Tests for the .npy/.npz reader and writer against files numpy wrote
// (tools/fixtures/make_weight_format_fixtures.py: np.savez, np.savez_compressed, np.save
// of a Fortran-ordered array), a write/read round trip, and corrupt files.
#include "scenic/common_lib/npz.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;
using scenic::testing::TempDir;

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/common_lib/testdata/weights/";

// The fixture's values (see the script): f32 = arange(12).reshape(3, 4) * 0.5, ...
void expect_fixture_arrays(const TensorMap& m) {
  ASSERT_EQ(m.size(), 11u);
  const auto& f32 = m.at("f32");
  EXPECT_EQ(f32.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(f32, torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.5));
  EXPECT_EQ(m.at("f64").scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(m.at("f64"), torch::arange(6, torch::kFloat64).reshape({2, 3}) * 0.25));
  EXPECT_EQ(m.at("f16").scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::equal(m.at("f16").to(torch::kFloat32), torch::tensor({0.f, 0.5f, 1.f, 1.5f})));
  EXPECT_EQ(m.at("i32").scalar_type(), torch::kInt32);
  EXPECT_TRUE(torch::equal(m.at("i32"), (torch::arange(6, torch::kInt32) - 3).reshape({2, 3})));
  EXPECT_EQ(m.at("i64").scalar_type(), torch::kInt64);
  EXPECT_EQ(m.at("i64")[4].item<int64_t>(), 40'000'000'000LL);  // 4 * 1e10, beyond int32
  EXPECT_TRUE(torch::equal(m.at("i8"), torch::tensor({-1, 2, -3}, torch::kInt8)));
  EXPECT_TRUE(torch::equal(m.at("u8"), torch::arange(250, 256, torch::kInt64).to(torch::kUInt8)));
  EXPECT_TRUE(torch::equal(m.at("b"), torch::tensor({true, false, true})));
  // Column-major on disk, row-major values back: [[0, 1, 2], [3, 4, 5]].
  EXPECT_TRUE(torch::equal(m.at("fortran"), torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_EQ(m.at("scalar").dim(), 0);
  EXPECT_EQ(m.at("scalar").item<float>(), 3.5f);
  EXPECT_TRUE(torch::equal(m.at("nested/name/kernel"), torch::arange(8, torch::kFloat32).reshape({2, 2, 2})));
}

TEST(Npz, ReadsNumpySavez) { expect_fixture_arrays(read_npz(kDir + "formats.npz")); }

TEST(Npz, ReadsNumpySavezCompressed) { expect_fixture_arrays(read_npz(kDir + "formats_compressed.npz")); }

TEST(Npz, ReadsFortranOrderNpy) {
  const auto t = read_npy(kDir + "fortran.npy");
  EXPECT_TRUE(torch::equal(t, torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_TRUE(t.is_contiguous());
}

TEST(Npz, WriteReadRoundTripIsExact) {
  TempDir dir;
  TensorMap in{{"a/b", torch::randn({3, 5})},
               {"c", torch::arange(7, torch::kInt64)},
               {"d", torch::tensor({true, false})},
               {"e", torch::randn({2, 2}, torch::kFloat64)},
               {"s", torch::tensor(2.5f)},
               {"h", torch::randn({4}).to(torch::kFloat16)}};
  write_npz(dir.file("x.npz"), in);
  const auto out = read_npz(dir.file("x.npz"));
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [k, v] : in) {
    EXPECT_EQ(out.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(out.at(k), v)) << k;
  }
}

TEST(Npz, NpyWriterIsByteIdenticalToNumpy) {
  // formats.npz's first member is np.save of f32 = arange(12).reshape(3, 4) * 0.5: its 176
  // bytes (a header padded so the data starts at 128, then 12 floats) start after the
  // 30-byte local header, the 7-byte name 'f32.npy' and numpy's 20-byte ZIP64 extra field.
  const auto npz = read_binary_file(kDir + "formats.npz");
  const auto ours = npy_bytes(torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.5);
  ASSERT_EQ(ours.size(), 176u);
  EXPECT_EQ(npz.substr(30 + 7 + 20, 176), ours);
}

TEST(Npz, TruncatedArchiveNamesFileAndMember) {
  TempDir dir;
  auto bytes = read_binary_file(kDir + "formats.npz");
  // Cut the data of the first member ('f32.npy') but keep the central directory: move it.
  // Simplest real damage: drop bytes from the middle, which shifts the directory.
  const std::string cut = bytes.substr(0, 100) + bytes.substr(300);
  write_binary_file(dir.file("cut.npz"), cut);
  const auto msg = error_of([&] { read_npz(dir.file("cut.npz")); });
  EXPECT_CONTAINS(msg, dir.file("cut.npz"));
  write_binary_file(dir.file("short.npz"), bytes.substr(0, bytes.size() / 2));
  EXPECT_CONTAINS(error_of([&] { read_npz(dir.file("short.npz")); }), "no end of central directory");
}

TEST(Npz, CorruptDataFailsCrcNamingTheMember) {
  TempDir dir;
  auto bytes = read_binary_file(kDir + "formats.npz");
  // Flip one byte inside the first member's array data (its npy data starts at 64 of the
  // member; the member starts after a 30-byte local header, 7-byte name, 20-byte extra).
  bytes[30 + 7 + 20 + 64 + 3] ^= 0x40;
  write_binary_file(dir.file("bad.npz"), bytes);
  const auto msg = error_of([&] { read_npz(dir.file("bad.npz")); });
  EXPECT_CONTAINS(msg, "member 'f32.npy'");
  EXPECT_CONTAINS(msg, "CRC-32 mismatch");
}

TEST(Npz, NpyErrors) {
  EXPECT_CONTAINS(error_of([] { parse_npy("hello world", "x.npy"); }), "x.npy: not a .npy file");
  auto good = npy_bytes(torch::zeros({3, 4}));
  EXPECT_CONTAINS(error_of([&] { parse_npy(good.substr(0, good.size() - 4), "x.npy"); }), "truncated .npy data");
  auto be = good;
  be.replace(be.find("<f4"), 3, ">f4");
  EXPECT_CONTAINS(error_of([&] { parse_npy(be, "x.npy"); }), "big-endian");
  auto obj = good;
  obj.replace(obj.find("<f4"), 3, "|O8");
  EXPECT_CONTAINS(error_of([&] { parse_npy(obj, "x.npy"); }), "unsupported dtype '|O8'");
  EXPECT_CONTAINS(error_of([] { read_npz("/nonexistent/file.npz"); }), "/nonexistent/file.npz: cannot open");
}

}  // namespace
}  // namespace scenic::common
