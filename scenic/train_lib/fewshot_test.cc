// Few-shot ridge regression (fewshot.h): whitening and the closed-form solve against
// hand-computed values and numpy (tools/fixtures/fewshot_ridge.py ->
// testdata/fewshot_ridge.json), example selection, best-l2 choice and metric names.
#include "scenic/train_lib/fewshot.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

namespace scenic::train {
namespace {

torch::Tensor from_json(const nlohmann::json& j) {
  std::vector<double> flat;
  int64_t rows = j.size(), cols = -1;
  for (const auto& row : j) {
    if (row.is_array()) {
      cols = row.size();
      for (const auto& v : row) flat.push_back(v.get<double>());
    } else {
      flat.push_back(row.get<double>());
    }
  }
  auto t = torch::tensor(flat, torch::kFloat64);
  return cols < 0 ? t : t.view({rows, cols});
}

TEST(FewShot, WhiteningUsesPopulationStdAndAppendsBias100) {
  // Column 0: 1, 3, 5 -> mean 3, population std sqrt((4 + 0 + 4) / 3) = 1.6329932.
  // Column 1: 10, 10, 16 -> mean 12, std sqrt((4 + 4 + 16) / 3) = 2.8284271.
  auto x = torch::tensor({1.0, 10.0, 3.0, 10.0, 5.0, 16.0}, torch::kFloat64).view({3, 2});
  auto w = whitening_of(x);
  EXPECT_NEAR(w.mean[0][0].item<double>(), 3.0, 1e-12);
  EXPECT_NEAR(w.mean[0][1].item<double>(), 12.0, 1e-12);
  EXPECT_NEAR(w.std[0][0].item<double>(), std::sqrt(8.0 / 3.0) + 1e-5, 1e-12);
  EXPECT_NEAR(w.std[0][1].item<double>(), std::sqrt(8.0) + 1e-5, 1e-12);
  auto z = whiten_with_bias(x, w);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{3, 3}));
  // (1 - 3) / (1.6329932 + 1e-5) = -1.2247374; (16 - 12) / (2.8284271 + 1e-5) = 1.4142086.
  EXPECT_NEAR(z[0][0].item<double>(), -2.0 / (std::sqrt(8.0 / 3.0) + 1e-5), 1e-12);
  EXPECT_NEAR(z[2][1].item<double>(), 4.0 / (std::sqrt(8.0) + 1e-5), 1e-12);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(z[i][2].item<double>(), 100.0);
  // A constant column (std 0) divides by 1e-5 instead of 0.
  auto c = whiten_with_bias(torch::ones({2, 1}, torch::kFloat64), whitening_of(torch::ones({2, 1})));
  EXPECT_EQ(c[0][0].item<double>(), 0.0);
}

TEST(FewShot, RidgeRegressionHandComputed2D) {
  // X = I (2 examples, 2 features), labels {0, 1}, K = 2, l2 = 1:
  // X^T X + I = 2I, X^T Y = Y = [[1, -1], [-1, 1]] (targets 2 onehot - 1), so W = Y / 2.
  auto x = torch::eye(2, torch::kFloat64);
  auto w = ridge_regression(x, torch::tensor({0, 1}, torch::kLong), 2, 1.0);
  auto expected = torch::tensor({0.5, -0.5, -0.5, 0.5}, torch::kFloat64).view({2, 2});
  EXPECT_TRUE(torch::allclose(w, expected, 0, 1e-12)) << w;
  // l2 = 3: 4I W = Y, W = Y / 4.
  EXPECT_TRUE(torch::allclose(ridge_regression(x, torch::tensor({0, 1}), 2, 3.0), expected / 2, 0, 1e-12));
}

TEST(FewShot, MatchesNumpyReference) {
  std::ifstream in(std::string(SCENIC_SOURCE_DIR) + "/scenic/train_lib/testdata/fewshot_ridge.json");
  ASSERT_TRUE(in.good());
  const auto j = nlohmann::json::parse(in);
  const int64_t k = j["num_classes"];
  auto x = from_json(j["x"]), x_test = from_json(j["x_test"]);
  auto y = from_json(j["y"]).to(torch::kLong), y_test = from_json(j["y_test"]).to(torch::kLong);
  const auto w = whitening_of(x);
  EXPECT_TRUE(torch::allclose(w.mean.flatten(), from_json(j["mean"]), 0, 1e-12));
  EXPECT_TRUE(torch::allclose(w.std.flatten(), from_json(j["std"]), 0, 1e-12));
  ASSERT_EQ(j["cases"].size(), 4u);
  for (const auto& c : j["cases"]) {
    const double l2 = c["l2_reg"];
    auto weights = ridge_regression(whiten_with_bias(x, w), y, k, l2);
    auto ref = from_json(c["weights"]);
    EXPECT_TRUE(torch::allclose(weights, ref, 1e-8, 1e-9)) << "l2 " << l2 << "\n" << weights << "\n" << ref;
    auto scores = whiten_with_bias(x_test, w).mm(weights);
    EXPECT_TRUE(torch::allclose(scores, from_json(c["test_scores"]), 1e-8, 1e-8)) << "l2 " << l2;
    EXPECT_DOUBLE_EQ(fewshot_accuracy(x, y, x_test, y_test, l2, k), c["accuracy"].get<double>()) << "l2 " << l2;
  }
}

TEST(FewShot, IndicesTakeTheFirstShotsOfEachClassInOrder) {
  auto labels = torch::tensor({2, 0, 1, 0, 2, 0, 1}, torch::kLong);
  auto idx = fewshot_indices(labels, 3, 2);
  EXPECT_TRUE(torch::equal(idx, torch::tensor({1, 3, 2, 6, 0, 4}, torch::kLong))) << idx;
  // Classes with fewer examples give what they have; class 3 has none.
  idx = fewshot_indices(labels, 4, 3);
  EXPECT_TRUE(torch::equal(idx, torch::tensor({1, 3, 5, 2, 6, 0, 4}, torch::kLong))) << idx;
}

TEST(FewShot, BestL2ByMeanRankAcrossDatasets) {
  const std::vector<double> l2s{0.5, 1.0, 2.0};
  FewShotResults r;
  // a: accuracies 0.5, 0.7, 0.6 -> ranks 0, 2, 1; b: 0.2, 0.1, 0.8 -> ranks 1, 0, 2.
  // Mean ranks 0.5, 1, 1.5: l2 = 2.
  r["a"] = {{{1, 0.5}, 0.5}, {{1, 1.0}, 0.7}, {{1, 2.0}, 0.6}};
  r["b"] = {{{1, 0.5}, 0.2}, {{1, 1.0}, 0.1}, {{1, 2.0}, 0.8}};
  EXPECT_EQ(best_l2_by_mean_rank(r, {1}, l2s).at(1), 2.0);
  // b: 0.9, 0.1, 0.8 -> ranks 2, 0, 1: mean ranks all 1, a tie: the first l2.
  r["b"] = {{{1, 0.5}, 0.9}, {{1, 1.0}, 0.1}, {{1, 2.0}, 0.8}};
  EXPECT_EQ(best_l2_by_mean_rank(r, {1}, l2s).at(1), 0.5);
}

TEST(FewShot, SummaryUsesScenicMetricNames) {
  FewShotResults r;
  r["mnist"] = {{{1, 0.0009765625}, 0.25}, {{1, 1024.0}, 0.5}, {{5, 0.0009765625}, 0.75}, {{5, 1024.0}, 0.625}};
  auto s = fewshot_summary(r, {1, 5}, {0.0009765625, 1024.0}, std::make_pair(std::string("mnist"), int64_t{5}));
  EXPECT_EQ(s.at("zz/mnist_1shot_l2=0.0009765625"), 0.25);
  EXPECT_EQ(s.at("zz/mnist_1shot_l2=1024.0"), 0.5);
  EXPECT_EQ(s.at("z/best_l2_for_1shot_image_eval"), 1024.0);
  EXPECT_EQ(s.at("z/mnist_1shot"), 0.5);
  EXPECT_EQ(s.at("z/best_l2_for_5shot_image_eval"), 0.0009765625);
  EXPECT_EQ(s.at("z/mnist_5shot"), 0.75);
  EXPECT_EQ(s.at("a/mnist_5shot"), 0.75);
  EXPECT_EQ(s.size(), 4u + 2u + 2u + 1u);
}

TEST(FewShot, PythonFloatRepr) {
  // Expected strings are Python's repr() of the same floats.
  EXPECT_EQ(python_float_repr(0.0009765625), "0.0009765625");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(1024.0), "1024.0");
  EXPECT_EQ(python_float_repr(1e-5), "1e-05");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(524288.0), "524288.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(123.456), "123.456");
  EXPECT_EQ(python_float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(python_float_repr(-2.5), "-2.5");
  EXPECT_EQ(python_float_repr(0.0), "0.0");
}

}  // namespace
}  // namespace scenic::train
