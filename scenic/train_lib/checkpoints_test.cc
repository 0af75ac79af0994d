#include "scenic/train_lib/checkpoints.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {
namespace fs = std::filesystem;

struct Net : torch::nn::Module {
  explicit Net(int64_t width) {
    fc = register_module("fc", torch::nn::Linear(3, width));
    bn = register_module("bn", torch::nn::BatchNorm1d(width));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

class CheckpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("ckpt_" + std::to_string(::getpid()) + "_" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CheckpointsTest, RoundTripRestoresParamsBuffersOptimizerStepAndMetadata) {
  torch::manual_seed(0);
  Net a(4);
  torch::optim::Adam opt_a(a.parameters(), torch::optim::AdamOptions(0.1));
  // One real step so the optimizer has moment estimates and BN has running stats.
  auto loss = a.bn(a.fc(torch::randn({8, 3}))).pow(2).sum();
  loss.backward();
  opt_a.step();
  save_checkpoint(dir_.string(), {&a, &opt_a, 7, R"({"accum_train_time": 1.5})"}, 3);

  Net b(4);
  torch::optim::Adam opt_b(b.parameters(), torch::optim::AdamOptions(0.1));
  TrainStateRef state{&b, &opt_b, 0, ""};
  restore_checkpoint((dir_ / "checkpoint_7").string(), state);
  EXPECT_EQ(state.step, 7);
  EXPECT_EQ(state.metadata, R"({"accum_train_time": 1.5})");
  for (const auto& p : a.named_parameters()) EXPECT_TRUE(torch::equal(p.value(), b.named_parameters()[p.key()])) << p.key();
  for (const auto& p : a.named_buffers()) EXPECT_TRUE(torch::equal(p.value(), b.named_buffers()[p.key()])) << p.key();
  // The same next update from both optimizers proves the Adam state came back.
  for (auto* net : {&a, &b}) {
    net->zero_grad();
    for (auto& p : net->parameters()) p.mutable_grad() = torch::ones_like(p);
  }
  opt_a.step();
  opt_b.step();
  for (const auto& p : a.named_parameters()) EXPECT_TRUE(torch::allclose(p.value(), b.named_parameters()[p.key()])) << p.key();
}

TEST_F(CheckpointsTest, KeepsTheNewestNAndIgnoresTemporaries) {
  Net net(2);
  for (int64_t step : {1, 2, 3, 4}) save_checkpoint(dir_.string(), {&net, nullptr, step, "{}"}, 2);
  std::ofstream(dir_ / "checkpoint_9.tmp") << "half-written";
  auto all = list_checkpoints(dir_.string());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 3);
  EXPECT_EQ(all[1].first, 4);
  EXPECT_EQ(*latest_checkpoint(dir_.string()), (dir_ / "checkpoint_4").string());
  EXPECT_FALSE(latest_checkpoint((dir_ / "nothing").string()).has_value());
}

TEST_F(CheckpointsTest, ShapeMismatchNamesTheParameter) {
  Net small(2), big(5);
  save_checkpoint(dir_.string(), {&small, nullptr, 1, "{}"}, 0);
  TrainStateRef state{&big, nullptr, 0, ""};
  try {
    restore_checkpoint((dir_ / "checkpoint_1").string(), state);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "'fc.weight' has shape [2, 3]");
  }
}

TEST_F(CheckpointsTest, CorruptFileIsAClearError) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "checkpoint_5") << "not a zip archive";
  Net net(2);
  TrainStateRef state{&net, nullptr, 0, ""};
  try {
    restore_checkpoint((dir_ / "checkpoint_5").string(), state);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_CONTAINS(e.what(), "checkpoint_5");
    EXPECT_CONTAINS(e.what(), "cannot be read");
  }
}

TEST_F(CheckpointsTest, FailedWriteLeavesPreviousCheckpoints) {
  Net net(2);
  save_checkpoint(dir_.string(), {&net, nullptr, 1, "{}"}, 3);
  // A directory squatting on the temporary path makes the write fail mid-way.
  fs::create_directories(dir_ / "checkpoint_2.tmp" / "x");
  EXPECT_THROW(save_checkpoint(dir_.string(), {&net, nullptr, 2, "{}"}, 3), Error);
  auto all = list_checkpoints(dir_.string());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first, 1);
  TrainStateRef state{&net, nullptr, 0, ""};
  restore_checkpoint(all[0].second, state);
  EXPECT_EQ(state.step, 1);
}

}  // namespace
}  // namespace scenic::train
