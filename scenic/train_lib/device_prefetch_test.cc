#include "scenic/train_lib/device_prefetch.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ostream>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
// How gtest (and CTest's test names) print a parameter: without it, the struct's bytes,
// padding included, which differ between builds.
void PrintTo(const DevicePrefetchOptions& o, std::ostream* os) {
  *os << "depth " << o.depth << (o.pin_memory ? ", pinned" : ", pageable");
}

namespace {
using common::ConfigDict;

// Yields `n` batches {inputs: [2, 3] filled with i, label: [i, i+1]}, then ends; throws
// at batch `fail_at` when that is >= 0.
class CountingIterator : public dataset::BatchIterator {
 public:
  CountingIterator(int64_t n, int64_t fail_at = -1) : n_(n), fail_at_(fail_at) {}
  std::optional<dataset::Batch> next() override {
    if (i_ == fail_at_) throw Error("host iterator failed at batch " + std::to_string(i_));
    if (i_ == n_) return std::nullopt;
    const int64_t i = i_++;
    return dataset::Batch{{"inputs", torch::full({2, 3}, static_cast<double>(i))},
                          {"label", torch::tensor({i, i + 1}, torch::kInt64)}};
  }

 private:
  int64_t n_, fail_at_, i_ = 0;
};

std::string error_of(const std::string& yaml, const torch::Device& device) {
  try {
    device_prefetch_options(ConfigDict::from_yaml_string(yaml), device);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const torch::Device kCpu(torch::kCPU);
const torch::Device kCuda(torch::kCUDA);  // a Device value needs no GPU

TEST(DevicePrefetchOptions, DefaultsOnCudaAreTwoAheadAndPinned) {
  ConfigDict c = ConfigDict::from_yaml_string("dataset_configs: {}\n");
  const auto o = device_prefetch_options(c, kCuda);
  EXPECT_EQ(o.depth, 2);
  EXPECT_TRUE(o.pin_memory);
  // The defaults are recorded, so a saved config shows what ran.
  EXPECT_EQ(c.get<int64_t>("dataset_configs.prefetch_to_device"), 2);
  EXPECT_TRUE(c.get<bool>("dataset_configs.pin_memory"));
}

TEST(DevicePrefetchOptions, ExplicitValuesOnCuda) {
  const auto o = device_prefetch_options(
      ConfigDict::from_yaml_string("dataset_configs:\n  prefetch_to_device: 5\n  pin_memory: false\n"), kCuda);
  EXPECT_EQ(o.depth, 5);
  EXPECT_FALSE(o.pin_memory);
}

TEST(DevicePrefetchOptions, CpuIgnoresBothKeysButReadsThem) {
  ConfigDict c = ConfigDict::from_yaml_string("dataset_configs:\n  prefetch_to_device: 3\n  pin_memory: true\n");
  const auto o = device_prefetch_options(c, kCpu);
  EXPECT_EQ(o.depth, 0);
  EXPECT_FALSE(o.pin_memory);
  EXPECT_TRUE(c.unused_keys().empty());  // a GPU config passes the unknown-key check on a CPU
  const auto d = device_prefetch_options(ConfigDict::from_yaml_string("{}"), kCpu);
  EXPECT_EQ(d.depth, 0);
  EXPECT_FALSE(d.pin_memory);
}

TEST(DevicePrefetchOptions, BadValuesNameTheKey) {
  const std::string neg = error_of("dataset_configs:\n  prefetch_to_device: -1\n", kCuda);
  EXPECT_NE(neg.find("dataset_configs.prefetch_to_device"), std::string::npos) << neg;
  EXPECT_NE(neg.find("-1"), std::string::npos) << neg;
  // Checked on the CPU too: a bad value is a bug in the config wherever it runs.
  EXPECT_NE(error_of("dataset_configs:\n  prefetch_to_device: -2\n", kCpu).find("prefetch_to_device"),
            std::string::npos);
  const std::string type = error_of("dataset_configs:\n  pin_memory: sometimes\n", kCuda);
  EXPECT_NE(type.find("dataset_configs.pin_memory"), std::string::npos) << type;
  const std::string depth_type = error_of("dataset_configs:\n  prefetch_to_device: two\n", kCpu);
  EXPECT_NE(depth_type.find("dataset_configs.prefetch_to_device"), std::string::npos) << depth_type;
}

TEST(PrefetchToDevice, CpuReturnsTheHostIteratorItself) {
  auto host = std::make_unique<CountingIterator>(3);
  auto* raw = host.get();
  auto it = prefetch_to_device(std::move(host), kCpu, DevicePrefetchOptions{2, true});
  EXPECT_EQ(it.get(), raw);  // no thread, no copy
  for (int64_t i = 0; i < 3; ++i) {
    auto b = it->next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->at("label")[1].item<int64_t>(), i + 1);
  }
  EXPECT_FALSE(it->next().has_value());
  EXPECT_THROW(prefetch_to_device(std::make_unique<CountingIterator>(1), kCpu, DevicePrefetchOptions{-1, false}),
               Error);
}

// The CUDA path: runs where a GPU is present (skipped on CPU-only machines).
class PrefetchToCuda : public ::testing::TestWithParam<DevicePrefetchOptions> {};

TEST_P(PrefetchToCuda, SameBatchesInOrderOnTheDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto it = prefetch_to_device(std::make_unique<CountingIterator>(6), kCuda, GetParam());
  for (int64_t i = 0; i < 6; ++i) {
    auto b = it->next();
    ASSERT_TRUE(b.has_value()) << i;
    ASSERT_EQ(b->size(), 2u);
    const auto& x = b->at("inputs");
    const auto& y = b->at("label");
    EXPECT_TRUE(x.is_cuda());
    EXPECT_TRUE(y.is_cuda());
    EXPECT_EQ(x.scalar_type(), torch::kFloat32);
    EXPECT_EQ(y.scalar_type(), torch::kInt64);
    // Read on the step's (default) stream: the copy finished before the batch came out.
    EXPECT_TRUE(torch::equal(x.cpu(), torch::full({2, 3}, static_cast<double>(i))));
    EXPECT_TRUE(torch::equal(y.cpu(), torch::tensor({i, i + 1}, torch::kInt64)));
  }
  EXPECT_FALSE(it->next().has_value());
}

TEST_P(PrefetchToCuda, HostErrorReachesTheConsumerAfterEarlierBatches) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto it = prefetch_to_device(std::make_unique<CountingIterator>(6, 2), kCuda, GetParam());
  EXPECT_TRUE(it->next().has_value());
  EXPECT_TRUE(it->next().has_value());
  try {
    it->next();
    FAIL() << "expected the host iterator's error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("failed at batch 2"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(DepthAndPinning, PrefetchToCuda,
                         ::testing::Values(DevicePrefetchOptions{0, false}, DevicePrefetchOptions{0, true},
                                           DevicePrefetchOptions{2, true}, DevicePrefetchOptions{3, false}));

}  // namespace
}  // namespace scenic::train
