// Mixup / CutMix (mixup.h) on 2-example batches with hand-checkable pixels and labels.
#include "scenic/dataset_lib/mixup.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

TEST(Mixup, MixesWithReversedBatch) {
  Batch batch;
  // [B=2, C=1, H=1, W=2]: example 0 = (0, 10), example 1 = (20, 30).
  batch["inputs"] = torch::tensor({0.f, 10.f, 20.f, 30.f}).view({2, 1, 1, 2});
  batch["label"] = torch::tensor({{1.f, 0.f, 0.f}, {0.f, 0.f, 1.f}});
  batch["batch_mask"] = torch::ones({2});
  Rng rng(7), replay(7);
  const double lam = mixup(batch, 1.0, rng);
  EXPECT_DOUBLE_EQ(lam, sample_beta(1.0, replay));  // the only draw is lambda
  EXPECT_GT(lam, 0);
  EXPECT_LT(lam, 1);
  auto x = batch["inputs"].view({-1});
  // x0 = lam * (0, 10) + (1 - lam) * (20, 30); x1 = lam * (20, 30) + (1 - lam) * (0, 10).
  EXPECT_NEAR(x[0].item<float>(), (1 - lam) * 20, 1e-5);
  EXPECT_NEAR(x[1].item<float>(), lam * 10 + (1 - lam) * 30, 1e-5);
  EXPECT_NEAR(x[2].item<float>(), lam * 20, 1e-5);
  EXPECT_NEAR(x[3].item<float>(), lam * 30 + (1 - lam) * 10, 1e-5);
  auto y = batch["label"];
  EXPECT_NEAR(y[0][0].item<float>(), lam, 1e-6);
  EXPECT_NEAR(y[0][2].item<float>(), 1 - lam, 1e-6);
  EXPECT_NEAR(y[1][0].item<float>(), 1 - lam, 1e-6);
  EXPECT_EQ(y[0][1].item<float>(), 0);
  EXPECT_TRUE(torch::allclose(y.sum(1), torch::ones({2})));  // label rows still sum to 1
  EXPECT_TRUE(torch::equal(batch["batch_mask"], torch::ones({2})));
}

TEST(Mixup, CutMixPastesABoxAndWeightsLabelsByItsArea) {
  int with_box = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Batch batch;
    // [2, 1, 8, 8]: example 0 all zeros, example 1 all ones.
    batch["inputs"] = torch::cat({torch::zeros({1, 1, 8, 8}), torch::ones({1, 1, 8, 8})});
    batch["label"] = torch::tensor({{1.f, 0.f}, {0.f, 1.f}});
    Rng rng(seed);
    CutMixBox box = cutmix(batch, 1.0, rng);
    const int64_t area = (box.y1 - box.y0) * (box.x1 - box.x0);
    EXPECT_DOUBLE_EQ(box.lambda, 1.0 - area / 64.0);
    auto x = batch["inputs"];
    // Example 0 got ones exactly inside the box; example 1 got zeros there.
    EXPECT_EQ(x[0].sum().item<float>(), float(area)) << seed;
    EXPECT_EQ(x[1].sum().item<float>(), float(64 - area)) << seed;
    if (area > 0) {
      ++with_box;
      EXPECT_EQ(x[0][0][box.y0][box.x0].item<float>(), 1.f);
      EXPECT_EQ(x[0][0][box.y1 - 1][box.x1 - 1].item<float>(), 1.f);
    }
    auto y = batch["label"];
    EXPECT_NEAR(y[0][0].item<float>(), box.lambda, 1e-6);
    EXPECT_NEAR(y[0][1].item<float>(), 1 - box.lambda, 1e-6);
    EXPECT_NEAR(y[1][1].item<float>(), box.lambda, 1e-6);
    EXPECT_TRUE(torch::allclose(y.sum(1), torch::ones({2})));
  }
  EXPECT_GE(with_box, 15);
}

TEST(Mixup, SameSeedSameResult) {
  auto make = [] {
    Batch b;
    b["inputs"] = torch::arange(2 * 3 * 4 * 4, torch::kFloat32).view({2, 3, 4, 4});
    b["label"] = torch::eye(2);
    return b;
  };
  Batch a = make(), b = make();
  Rng ra(3), rb(3);
  cutmix(a, 0.5, ra);
  cutmix(b, 0.5, rb);
  EXPECT_TRUE(torch::equal(a["inputs"], b["inputs"]));
  EXPECT_TRUE(torch::equal(a["label"], b["label"]));
}

TEST(Mixup, BetaMoments) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)): a = 1 -> 1/12, a = 0.2 -> 0.1786.
  for (double alpha : {1.0, 0.2}) {
    Rng rng(11);
    const int n = 20000;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; ++i) {
      const double v = sample_beta(alpha, rng);
      ASSERT_GE(v, 0);
      ASSERT_LE(v, 1);
      sum += v, sq += v * v;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.01) << alpha;
    EXPECT_NEAR(var, 1.0 / (4 * (2 * alpha + 1)), 0.005) << alpha;
  }
}

TEST(Mixup, ErrorsAndOneHot) {
  Batch batch;
  batch["inputs"] = torch::zeros({2, 1, 2, 2});
  batch["label"] = torch::tensor({1, 0}, torch::kInt64);
  Rng rng(0);
  EXPECT_CONTAINS(error_of([&] { mixup(batch, 1.0, rng); }), "requires one-hot float targets");
  target_to_one_hot(batch, 3);
  EXPECT_TRUE(torch::equal(batch["label"], torch::tensor({{0.f, 1.f, 0.f}, {1.f, 0.f, 0.f}})));
  EXPECT_CONTAINS(error_of([&] { mixup(batch, 0.0, rng); }), "alpha must be > 0");
  Batch bad;
  bad["label"] = torch::tensor({4}, torch::kInt64);
  EXPECT_CONTAINS(error_of([&] { target_to_one_hot(bad, 3); }), "outside [0, 3)");
  Batch none;
  EXPECT_CONTAINS(error_of([&] { cutmix(none, 1.0, rng); }), "needs 'inputs' and 'label'");
}

}  // namespace
}  // namespace scenic::dataset
