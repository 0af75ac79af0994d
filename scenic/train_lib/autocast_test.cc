#include "scenic/train_lib/autocast.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "scenic/common_lib/testing.h"

namespace scenic::train {
namespace {

using common::ConfigDict;
using scenic::testing::error_of;

TEST(Autocast, ReadsTheConfigKeyAndRefusesOtherDtypes) {
  EXPECT_FALSE(read_autocast_bf16(ConfigDict::from_yaml_string("batch_size: 8")));
  EXPECT_FALSE(read_autocast_bf16(ConfigDict::from_yaml_string("autocast_dtype: float32")));
  EXPECT_TRUE(read_autocast_bf16(ConfigDict::from_yaml_string("autocast_dtype: bfloat16")));
  const auto err = error_of([] { read_autocast_bf16(ConfigDict::from_yaml_string("autocast_dtype: float16")); });
  EXPECT_NE(err.find("config key 'autocast_dtype'"), std::string::npos) << err;
  EXPECT_NE(err.find("'float16'"), std::string::npos) << err;
  EXPECT_NE(error_of([] { read_autocast_bf16(ConfigDict::from_yaml_string("autocast_dtype: 16")); }), "");
}

TEST(Autocast, ScopeRunsMatmulsInBfloat16AndRestoresTheThreadsState) {
  const auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  // The product of the bf16-rounded operands (computed outside the scope, in float32).
  const auto ref = torch::mm(a.to(torch::kBFloat16).to(torch::kFloat32), b.to(torch::kBFloat16).to(torch::kFloat32));
  ASSERT_FALSE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
  {
    AutocastScope off(false, c10::DeviceType::CPU);
    EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
  }
  {
    AutocastScope on(true, c10::DeviceType::CPU);
    EXPECT_TRUE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
    const auto y = torch::mm(a, b);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), ref, 1e-2, 1e-2));  // bf16's 8 bits
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat32);
}

TEST(Autocast, AnExceptionLeavesAutocastAsItWasIncludingAnOuterScopesDtype) {
  const auto a = torch::randn({2, 2});
  EXPECT_THROW(
      {
        AutocastScope on(true, c10::DeviceType::CPU);
        throw std::runtime_error("inside the forward");
      },
      std::runtime_error);
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
  EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat32);

  // Inside someone else's float16 autocast, ours switches to bf16 and gives theirs back.
  at::autocast::set_autocast_dtype(c10::DeviceType::CPU, at::kHalf);
  at::autocast::set_autocast_enabled(c10::DeviceType::CPU, true);
  {
    AutocastScope on(true, c10::DeviceType::CPU);
    EXPECT_EQ(at::autocast::get_autocast_dtype(c10::DeviceType::CPU), at::kBFloat16);
  }
  EXPECT_TRUE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
  EXPECT_EQ(at::autocast::get_autocast_dtype(c10::DeviceType::CPU), at::kHalf);
  at::autocast::set_autocast_enabled(c10::DeviceType::CPU, false);
  at::autocast::set_autocast_dtype(c10::DeviceType::CPU, at::kBFloat16);
}

}  // namespace
}  // namespace scenic::train
