// Tests for the safetensors reader and writer against a file the safetensors library
// wrote (tools/fixtures/make_weight_format_fixtures.py), a round trip, and damaged files.
#include "scenic/common_lib/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;
using scenic::testing::TempDir;

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/common_lib/testdata/weights/";

TEST(Safetensors, ReadsPythonWrittenFile) {
  const auto f = read_safetensors(kDir + "tensors.safetensors");
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"format", "np"}, {"origin", "fixture"}}));
  const auto& m = f.tensors;
  ASSERT_EQ(m.size(), 9u);
  EXPECT_TRUE(torch::equal(m.at("f32"), torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.5));
  EXPECT_TRUE(torch::equal(m.at("f64"), torch::arange(6, torch::kFloat64).reshape({2, 3}) * 0.25));
  EXPECT_EQ(m.at("f16").scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::equal(m.at("i32"), (torch::arange(6, torch::kInt32) - 3).reshape({2, 3})));
  EXPECT_EQ(m.at("i64")[4].item<int64_t>(), 40'000'000'000LL);
  EXPECT_TRUE(torch::equal(m.at("i8"), torch::tensor({-1, 2, -3}, torch::kInt8)));
  EXPECT_TRUE(torch::equal(m.at("u8"), torch::arange(250, 256, torch::kInt64).to(torch::kUInt8)));
  EXPECT_TRUE(torch::equal(m.at("b"), torch::tensor({true, false, true})));
  EXPECT_EQ(m.at("bf16").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(m.at("bf16").to(torch::kFloat32), torch::tensor({0.f, 0.5f, 1.f, 1.5f})));
}

TEST(Safetensors, WriteReadRoundTripIsExact) {
  TempDir dir;
  TensorMap in{{"blocks.0.attn.qkv.weight", torch::randn({96, 32})},
               {"cls_token", torch::randn({1, 1, 32})},
               {"h", torch::randn({5}).to(torch::kBFloat16)},
               {"n", torch::arange(3, torch::kInt64)},
               {"empty", torch::zeros({0, 4})}};
  write_safetensors(dir.file("x.safetensors"), in, {{"format", "pt"}});
  const auto bytes = read_binary_file(dir.file("x.safetensors"));
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<uint8_t>(bytes[k]);
  EXPECT_EQ(n % 8, 0u);  // header padded to 8 bytes, as the Python writer does
  const auto out = read_safetensors(dir.file("x.safetensors"));
  EXPECT_EQ(out.metadata.at("format"), "pt");
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [k, v] : in) {
    EXPECT_EQ(out.tensors.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(out.tensors.at(k), v)) << k;
  }
}

TEST(Safetensors, TruncatedFileNamesTheTensor) {
  const auto bytes = read_binary_file(kDir + "tensors.safetensors");
  // The tensor whose data ends last is the one the cut reaches first.
  const auto msg = error_of([&] { parse_safetensors(std::string_view(bytes).substr(0, bytes.size() - 3), "w.st"); });
  EXPECT_CONTAINS(msg, "w.st: tensor '");
  EXPECT_CONTAINS(msg, "truncated file");
  EXPECT_CONTAINS(error_of([&] { parse_safetensors(std::string_view(bytes).substr(0, 40), "w.st"); }),
                  "w.st: truncated safetensors file (header of");
  EXPECT_CONTAINS(error_of([] { parse_safetensors("abc", "w.st"); }), "not a safetensors file");
}

TEST(Safetensors, CorruptHeaderErrors) {
  auto make = [](const std::string& json) {
    std::string s;
    for (int k = 0; k < 8; ++k) s.push_back(static_cast<char>((json.size() >> (8 * k)) & 0xff));
    return s + json + std::string(16, '\0');
  };
  EXPECT_CONTAINS(error_of([&] { parse_safetensors(make("{not json"), "f"); }), "f: corrupt safetensors header");
  // 2x2 F32 needs 16 bytes, the offsets give 12.
  EXPECT_CONTAINS(error_of([&] {
                    parse_safetensors(make(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})"), "f");
                  }),
                  "f: tensor 'w': data_offsets [0, 12] do not hold 16 bytes");
  EXPECT_CONTAINS(error_of([&] {
                    parse_safetensors(make(R"({"w":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})"), "f");
                  }),
                  "tensor 'w': unsupported dtype 'C64'");
  EXPECT_CONTAINS(error_of([&] { parse_safetensors(make(R"({"w":{"dtype":"F32"}})"), "f"); }),
                  "needs dtype, shape and data_offsets");
}

}  // namespace
}  // namespace scenic::common
