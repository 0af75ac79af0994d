// Tests for ClassificationModel and MultiLabelClassificationModel (Scenic's
// classification_model.py / multilabel_classification_model.py, inventory §2.2):
// the training loss (smoothing, L2 over ndim > 1 parameters) and the metric pairs
// (sum, normalizer) that leave padded examples out.
//
// The logits are given directly (the metric and loss functions take the network's
// output); the dummy network only carries parameters for the L2 term.
#include "scenic/model_lib/base_models/classification_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/model_lib/base_models/multilabel_classification_model.h"

namespace scenic::model {
namespace {

constexpr double kTol = 1e-6;
constexpr double kLse = 0.407605964;  // log(1 + e^-1 + e^-2); see model_utils_test.cc

// A network with a [2, 2] kernel (sum of squares 1 + 4 + 9 + 16 = 30), a [2] bias and a
// [1, 1, 1, 3] conv kernel of 2s (sum of squares 12); the bias is left out of L2.
// Its forward is the identity, so `inputs` are the logits.
class DummyNet : public Network {
 public:
  explicit DummyNet(int64_t scale) {
    kernel = register_parameter("kernel", torch::tensor({{1.f, 2.f}, {3.f, 4.f}}));
    bias = register_parameter("bias", torch::tensor({10.f, 20.f}));
    conv = register_parameter("conv", torch::full({1, 1, 1, 3}, 2.f));
    scale_ = scale;
  }
  torch::Tensor forward(const torch::Tensor& inputs) override { return inputs * scale_; }
  torch::Tensor kernel, bias, conv;
  int64_t scale_;
};

template <typename Task>
std::unique_ptr<NetworkModel<Task>> make_model(const std::string& yaml, bool target_is_onehot = false) {
  dataset::MetaData meta;
  meta.num_classes = 3;
  meta.input_shape = {-1, 3};
  meta.target_is_onehot = target_is_onehot;
  auto fn = [](const common::ConfigDict& model_config, const dataset::MetaData&) {
    return std::make_shared<DummyNet>(model_config.get<int64_t>("scale"));
  };
  return std::make_unique<NetworkModel<Task>>(common::ConfigDict::from_yaml_string(yaml), meta, fn,
                                              "scale: 1\n");
}

// z = [[1, 2, 3], [1, 0, -1]], labels [2, 1]: CE = [0.407605964, 1.407605964].
dataset::Batch batch2() {
  return {{"label", torch::tensor({2, 1}, torch::kLong)}};
}
torch::Tensor logits2() { return torch::tensor({{1.f, 2.f, 3.f}, {1.f, 0.f, -1.f}}); }

// The same two examples plus a padded third one whose logits are garbage but would be
// "correct" (argmax 1 = label 1) if it were counted.
dataset::Batch batch3_padded() {
  return {{"label", torch::tensor({2, 1, 1}, torch::kLong)},
          {"batch_mask", torch::tensor({1.f, 1.f, 0.f})}};
}
torch::Tensor logits3() {
  return torch::tensor({{1.f, 2.f, 3.f}, {1.f, 0.f, -1.f}, {-1e30f, 1e30f, 0.f}});
}

TEST(ClassificationModel, LossIsMeanCrossEntropy) {
  auto model = make_model<ClassificationModel>("model: {scale: 1}\n");
  auto net = model->build_network();
  // (0.407605964 + 1.407605964) / 2
  EXPECT_NEAR(model->loss_function(logits2(), batch2(), net.get()).item<double>(),
              (1.0 + 2 * kLse) / 2, kTol);
  // The padded example (garbage logits) is ignored: same value.
  EXPECT_NEAR(model->loss_function(logits3(), batch3_padded(), net.get()).item<double>(),
              (1.0 + 2 * kLse) / 2, kTol);
  // Without a network no L2 term can be added; still the same value.
  EXPECT_NEAR(model->loss_function(logits2(), batch2(), nullptr).item<double>(), (1.0 + 2 * kLse) / 2,
              kTol);
}

TEST(ClassificationModel, LossWithLabelSmoothing) {
  auto model = make_model<ClassificationModel>("label_smoothing: 0.1\nmodel: {scale: 1}\n");
  // Smoothed CE = 0.9 * CE + 0.1 * mean(-log p) = [0.507605964, 1.407605964]; mean:
  EXPECT_NEAR(model->loss_function(logits2(), batch2(), nullptr).item<double>(),
              (0.1 + kLse + 1.0 + kLse) / 2, kTol);
  // `label_smoothing: null` (as in the shipped configs) means none.
  auto none = make_model<ClassificationModel>("label_smoothing: null\nmodel: {scale: 1}\n");
  EXPECT_NEAR(none->loss_function(logits2(), batch2(), nullptr).item<double>(), (1.0 + 2 * kLse) / 2,
              kTol);
}

TEST(ClassificationModel, LossWithL2DecayCountsOnlyMatrices) {
  auto model = make_model<ClassificationModel>("l2_decay_factor: 0.1\nmodel: {scale: 1}\n");
  auto net = model->build_network();
  // L2 = 30 (kernel) + 12 (conv); the bias (100 + 400) is excluded.
  // loss = 0.907605964 + 0.5 * 0.1 * 42 = 0.907605964 + 2.1
  EXPECT_NEAR(model->loss_function(logits2(), batch2(), net.get()).item<double>(),
              (1.0 + 2 * kLse) / 2 + 2.1, 1e-5);
  // The gradient of the L2 term reaches the parameters: d/dW (0.5 * 0.1 * W^2) = 0.1 * W.
  auto* dummy = static_cast<DummyNet*>(net.get());
  model->loss_function(logits2(), batch2(), net.get()).backward();
  EXPECT_TRUE(torch::allclose(dummy->kernel.grad(), 0.1 * dummy->kernel.detach()));
  EXPECT_FALSE(dummy->bias.grad().defined() && dummy->bias.grad().abs().sum().item<double>() > 0);
}

TEST(ClassificationModel, MetricsIgnorePaddedExamples) {
  // Smoothing and L2 in the config must not leak into the metrics.
  auto model =
      make_model<ClassificationModel>("label_smoothing: 0.1\nl2_decay_factor: 1.0\nmodel: {scale: 1}\n");
  auto metrics = model->get_metrics_fn("validation")(logits3(), batch3_padded());
  ASSERT_EQ(metrics.size(), 2u);
  ASSERT_TRUE(metrics.count("accuracy"));
  ASSERT_TRUE(metrics.count("loss"));
  // argmax = [2, 0, 1] vs labels [2, 1, 1]: example 0 right, 1 wrong, 2 padded.
  EXPECT_DOUBLE_EQ(metrics["accuracy"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(metrics["accuracy"].second.item<double>(), 2.0);
  // Unnormalized CE summed over the real examples: 0.407605964 + 1.407605964.
  EXPECT_NEAR(metrics["loss"].first.item<double>(), 1.0 + 2 * kLse, kTol);
  EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 2.0);
  for (const auto& [name, pair] : metrics) {
    EXPECT_EQ(pair.first.dim(), 0) << name;
    EXPECT_EQ(pair.second.dim(), 0) << name;
    EXPECT_FALSE(pair.first.requires_grad()) << name;
  }
}

TEST(ClassificationModel, MetricsWithoutBatchMaskCountEveryExample) {
  auto model = make_model<ClassificationModel>("model: {scale: 1}\n");
  auto metrics = model->get_metrics_fn("train")(logits2(), batch2());
  EXPECT_DOUBLE_EQ(metrics["accuracy"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(metrics["accuracy"].second.item<double>(), 2.0);
  EXPECT_NEAR(metrics["loss"].first.item<double>(), 1.0 + 2 * kLse, kTol);
  EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 2.0);
}

TEST(ClassificationModel, OneHotTargetsAreUsedAsGiven) {
  auto model = make_model<ClassificationModel>("model: {scale: 1}\n", /*target_is_onehot=*/true);
  dataset::Batch batch{{"label", torch::tensor({{0.f, 0.f, 1.f}, {0.f, 1.f, 0.f}})}};
  EXPECT_NEAR(model->loss_function(logits2(), batch, nullptr).item<double>(), (1.0 + 2 * kLse) / 2, kTol);
  // Soft targets: 0.5/0.5 on classes 1 and 2 of row 0 -> 0.5 * (1.4076 + 0.4076).
  dataset::Batch soft{{"label", torch::tensor({{0.f, 0.5f, 0.5f}})}};
  EXPECT_NEAR(model->loss_function(logits2().slice(0, 0, 1), soft, nullptr).item<double>(),
              0.5 * (1.0 + 2 * kLse), kTol);
}

TEST(ClassificationModel, MissingLabelThrows) {
  auto model = make_model<ClassificationModel>("model: {scale: 1}\n");
  EXPECT_THROW(model->loss_function(logits2(), dataset::Batch{}, nullptr), scenic::Error);
}

TEST(ClassificationModel, NetworkConfigComesFromModelOrDefaults) {
  auto configured = make_model<ClassificationModel>("model: {scale: 3}\n");
  auto x = torch::ones({1, 3});
  EXPECT_TRUE(torch::equal(configured->build_network()->forward(x), 3 * x));
  // No `model:` block: the default ("scale: 1") is used and recorded in the config.
  auto defaulted = make_model<ClassificationModel>("batch_size: 4\n");
  EXPECT_TRUE(torch::equal(defaulted->build_network()->forward(x), x));
  EXPECT_EQ(defaulted->config().get<int64_t>("model.scale"), 1);
}

// Multi-label: z = [[2, -1], [0, 3]] with multi-hot t = [[1, 0], [1, 0]].
// Elementwise BCE = log(1 + e^z) - t z:
//   row 0: log(1 + e^-2) + log(1 + e^-1) = 0.126928011 + 0.313261687 = 0.440189698
//   row 1: log 2 + log(1 + e^3)          = 0.693147181 + 3.048587352 = 3.741734533
// prec@1: argmax = [0, 1] -> t at argmax = [1, 0].
std::unique_ptr<NetworkModel<MultiLabelClassificationModel>> make_multilabel(const std::string& yaml) {
  auto m = make_model<MultiLabelClassificationModel>(yaml, /*target_is_onehot=*/true);
  return m;
}
torch::Tensor ml_logits() { return torch::tensor({{2.f, -1.f}, {0.f, 3.f}, {1e30f, -1e30f}}); }
dataset::Batch ml_batch() {
  return {{"label", torch::tensor({{1.f, 0.f}, {1.f, 0.f}, {0.f, 1.f}})},
          {"batch_mask", torch::tensor({1.f, 1.f, 0.f})}};
}

TEST(MultiLabelClassificationModel, LossSumsClassesAveragesRealExamples) {
  auto model = make_multilabel("model: {scale: 1}\n");
  // (0.440189698 + 3.741734533) / 2
  EXPECT_NEAR(model->loss_function(ml_logits(), ml_batch(), nullptr).item<double>(),
              (0.440189698 + 3.741734533) / 2, 1e-5);
  auto l2 = make_multilabel("l2_decay_factor: 0.1\nmodel: {scale: 1}\n");
  auto net = l2->build_network();
  EXPECT_NEAR(l2->loss_function(ml_logits(), ml_batch(), net.get()).item<double>(),
              (0.440189698 + 3.741734533) / 2 + 2.1, 1e-5);
  // ls = 0.2 on K = 2 makes targets 0.9 / 0.1: log(1 + e^z) - t z per element:
  //   row 0: (2.126928011 - 1.8) + (0.313261687 + 0.1)   = 0.740189698
  //   row 1: (0.693147181 - 0)   + (3.048587352 - 0.3)   = 3.441734533
  auto ls = make_multilabel("label_smoothing: 0.2\nmodel: {scale: 1}\n");
  EXPECT_NEAR(ls->loss_function(ml_logits(), ml_batch(), nullptr).item<double>(),
              (0.740189698 + 3.441734533) / 2, 1e-5);
}

TEST(MultiLabelClassificationModel, MetricsPrecAt1AndLoss) {
  auto model = make_multilabel("label_smoothing: 0.2\nmodel: {scale: 1}\n");
  auto metrics = model->get_metrics_fn("validation")(ml_logits(), ml_batch());
  ASSERT_EQ(metrics.size(), 2u);
  ASSERT_TRUE(metrics.count("prec@1"));
  EXPECT_DOUBLE_EQ(metrics["prec@1"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(metrics["prec@1"].second.item<double>(), 2.0);
  // No smoothing in the metric loss.
  EXPECT_NEAR(metrics["loss"].first.item<double>(), 0.440189698 + 3.741734533, 1e-5);
  EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 2.0);
}

TEST(MultiLabelClassificationModel, IntegerLabelsAreOneHotEncoded) {
  auto model = make_model<MultiLabelClassificationModel>("model: {scale: 1}\n");
  // Labels [0, 0] on z = [[2, -1], [0, 3]] are the multi-hot rows [1, 0] above.
  dataset::Batch batch{{"label", torch::tensor({0, 0}, torch::kLong)}};
  auto z = ml_logits().slice(0, 0, 2);
  EXPECT_NEAR(model->loss_function(z, batch, nullptr).item<double>(), (0.440189698 + 3.741734533) / 2,
              1e-5);
  auto metrics = model->get_metrics_fn("train")(z, batch);
  EXPECT_DOUBLE_EQ(metrics["prec@1"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(metrics["prec@1"].second.item<double>(), 2.0);
}

}  // namespace
}  // namespace scenic::model
