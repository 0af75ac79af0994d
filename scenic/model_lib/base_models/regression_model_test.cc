// Tests for RegressionModel (Scenic's regression_model.py, inventory §2.2) on a tiny
// batch with padding.
#include "scenic/model_lib/base_models/regression_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

// Identity network with a [2, 2] kernel (sum of squares 30) and a [2] bias (not in L2).
class IdentityNet : public Network {
 public:
  IdentityNet() {
    kernel = register_parameter("kernel", torch::tensor({{1.f, 2.f}, {3.f, 4.f}}));
    bias = register_parameter("bias", torch::tensor({10.f, 20.f}));
  }
  torch::Tensor forward(const torch::Tensor& inputs) override { return inputs; }
  torch::Tensor kernel, bias;
};

template <typename Task>
std::unique_ptr<NetworkModel<Task>> make_model(const std::string& yaml, bool target_is_onehot = false) {
  dataset::MetaData meta;
  meta.num_classes = 3;
  meta.target_is_onehot = target_is_onehot;
  auto fn = [](const common::ConfigDict&, const dataset::MetaData&) { return std::make_shared<IdentityNet>(); };
  return std::make_unique<NetworkModel<Task>>(common::ConfigDict::from_yaml_string(yaml), meta, fn,
                                              "hidden: 4\n");
}

// predictions [[1, 2], [3, 4], [0, 0]] vs targets [[1, 0], [0, 0], [5, 5]]: squared
// errors per example 4, 25, 50; the third example is padding.
torch::Tensor predictions() { return torch::tensor({{1.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}}); }
dataset::Batch regression_batch() {
  return {{"targets", torch::tensor({{1.f, 0.f}, {0.f, 0.f}, {5.f, 5.f}})},
          {"batch_mask", torch::tensor({1.f, 1.f, 0.f})}};
}

TEST(RegressionModel, LossIsMeanSquaredErrorOverRealExamples) {
  auto model = make_model<RegressionModel>("");
  EXPECT_NEAR(model->loss_function(predictions(), regression_batch(), nullptr).item<double>(), 14.5, 1e-5);
  // l2_decay_factor 0 adds nothing; 0.1 adds 0.5 * 0.1 * 30 (kernel only).
  auto net = model->build_network();
  auto zero = make_model<RegressionModel>("l2_decay_factor: 0\n");
  EXPECT_NEAR(zero->loss_function(predictions(), regression_batch(), net.get()).item<double>(), 14.5, 1e-5);
  auto l2 = make_model<RegressionModel>("l2_decay_factor: 0.1\n");
  EXPECT_NEAR(l2->loss_function(predictions(), regression_batch(), net.get()).item<double>(), 16.0, 1e-5);
  // Gradient of the loss w.r.t. the predictions: 2 (p - y) / 2 real examples, 0 on padding.
  auto p = predictions().requires_grad_(true);
  model->loss_function(p, regression_batch(), nullptr).backward();
  EXPECT_TRUE(torch::allclose(p.grad(), torch::tensor({{0.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}})));
}

TEST(RegressionModel, MetricSumsSquaredErrorsOverRealExamples) {
  auto model = make_model<RegressionModel>("l2_decay_factor: 1.0\n");
  auto metrics = model->get_metrics_fn("validation")(predictions(), regression_batch());
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_NEAR(metrics["mean_squared_error"].first.item<double>(), 29.0, 1e-5);
  EXPECT_DOUBLE_EQ(metrics["mean_squared_error"].second.item<double>(), 2.0);
  dataset::Batch unmasked{{"targets", regression_batch().at("targets")}};
  auto all = model->get_metrics_fn("train")(predictions(), unmasked);
  EXPECT_NEAR(all["mean_squared_error"].first.item<double>(), 79.0, 1e-5);
  EXPECT_DOUBLE_EQ(all["mean_squared_error"].second.item<double>(), 3.0);
  EXPECT_CONTAINS(testing::error_of([&] { model->loss_function(predictions(), dataset::Batch{}, nullptr); }),
                  "'targets'");
}

}  // namespace
}  // namespace scenic::model
