// Tests for the Flax msgpack reader against trees flax.serialization wrote
// (tools/fixtures/make_weight_format_fixtures.py): nested dicts, lists, NumPy scalars,
// native numbers, complex, bfloat16, skipped metadata, chunked arrays; our writer's
// round trip; and errors on damaged buffers.
#include "scenic/common_lib/msgpack_tree.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::error_of;
using scenic::testing::TempDir;

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/common_lib/testdata/weights/";

TEST(FlaxMsgpack, ReadsFlaxSerializedTree) {
  const auto m = read_flax_checkpoint(kDir + "tree.msgpack");
  // 'name' (a string), 'nothing' (None) and 'empty' ({}) hold no tensors.
  std::vector<std::string> keys;
  for (const auto& [k, v] : m) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"bf16", "count", "flag", "lr", "params/blocks/0", "params/blocks/1",
                                            "params/dense/bias", "params/dense/kernel", "step", "z"}));
  EXPECT_TRUE(torch::equal(m.at("params/dense/kernel"), torch::arange(12, torch::kFloat32).reshape({3, 4}) * 0.5));
  EXPECT_EQ(m.at("params/dense/bias").scalar_type(), torch::kFloat16);
  EXPECT_TRUE(torch::equal(m.at("params/blocks/0"), (torch::arange(6, torch::kInt32) - 3).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(m.at("params/blocks/1"), torch::arange(6, torch::kFloat64).reshape({2, 3}) * 0.25));
  EXPECT_EQ(m.at("step").scalar_type(), torch::kInt64);  // np.int64(7): ext 3
  EXPECT_EQ(m.at("step").item<int64_t>(), 7);
  EXPECT_EQ(m.at("lr").item<double>(), 0.5);
  EXPECT_EQ(m.at("count").item<int64_t>(), 3);
  EXPECT_TRUE(m.at("flag").item<bool>());
  EXPECT_TRUE(m.at("z").is_complex());
  EXPECT_EQ(torch::real(m.at("z")).item<double>(), 1.0);
  EXPECT_EQ(torch::imag(m.at("z")).item<double>(), -2.0);
  EXPECT_EQ(m.at("bf16").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(m.at("bf16").to(torch::kFloat32), torch::tensor({0.f, 0.5f, 1.f, 1.5f})));
}

TEST(FlaxMsgpack, ReassemblesChunkedArrays) {
  // 2x5 float32 written in chunks of 4 elements: {'__msgpack_chunked_array__', shape, chunks}.
  const auto m = read_flax_checkpoint(kDir + "chunked.msgpack");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(torch::equal(m.at("w"), torch::arange(10, torch::kFloat32).reshape({2, 5})));
}

TEST(FlaxMsgpack, WriteReadRoundTripIsExact) {
  TempDir dir;
  TensorMap in{{"params/Transformer/encoder_norm/scale", torch::randn({32})},
               {"params/embedding/kernel", torch::randn({4, 4, 3, 32})},
               {"params/cls", torch::randn({1, 1, 32})},
               {"global_step", torch::tensor(12, torch::kInt64)},
               {"bf", torch::randn({3}).to(torch::kBFloat16)}};
  // More than 15 entries in one map (map16) and a payload over 64 KiB (ext32).
  for (int i = 0; i < 20; ++i) in["many/k" + std::to_string(i)] = torch::full({1}, i, torch::kInt32);
  in["big"] = torch::randn({100, 200});
  write_flax_checkpoint(dir.file("ckpt"), in);
  const auto out = read_flax_checkpoint(dir.file("ckpt"));
  ASSERT_EQ(out.size(), in.size());
  for (const auto& [k, v] : in) {
    EXPECT_EQ(out.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(out.at(k), v)) << k;
  }
}

TEST(FlaxMsgpack, TruncationNamesFileAndPath) {
  const auto bytes = read_binary_file(kDir + "tree.msgpack");
  const auto msg = error_of([&] { parse_flax_msgpack(std::string_view(bytes).substr(0, 120), "ckpt_7"); });
  EXPECT_CONTAINS(msg, "ckpt_7: at '");
  EXPECT_CONTAINS(msg, "truncated data");
  EXPECT_CONTAINS(error_of([] { parse_flax_msgpack("\x93\x01\x02\x03", "f"); }), "not a map");
  EXPECT_CONTAINS(error_of([] { parse_flax_msgpack("\x81\xa1" "a" "\xc1", "f"); }), "at 'a': invalid msgpack type byte 0xc1");
}

TEST(FlaxMsgpack, BadArrayPayloadNamesThePath) {
  // {'w': ext1(msgpack(((2,), 'float32', 4 bytes)))}: 4 bytes cannot hold 2 floats.
  std::string payload = "\x93\x91\x02\xa7" "float32" "\xc4\x04" "abcd";
  std::string bytes = "\x81\xa1w\xc7";
  bytes.push_back(static_cast<char>(payload.size()));
  bytes.push_back(1);
  bytes += payload;
  const auto msg = error_of([&] { parse_flax_msgpack(bytes, "ckpt"); });
  EXPECT_CONTAINS(msg, "ckpt: at 'w': bad flax ndarray payload");
  EXPECT_CONTAINS(msg, "4 data bytes for float32 of 2 elements");
}

TEST(FlaxMsgpack, DirectoryIsReportedAsOrbax) {
  TempDir dir;
  EXPECT_CONTAINS(error_of([&] { read_flax_checkpoint(dir.path()); }), "Orbax");
}

}  // namespace
}  // namespace scenic::common
