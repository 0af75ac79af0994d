// Tests for EncoderDecoderModel (Scenic's encoder_decoder_model.py, inventory §2.2):
// token cross-entropy with Scenic's sequence-mask normalization, token accuracy, mean
// loss and perplexity clipped at 1e4, on a tiny batch with a padded sequence.
#include "scenic/model_lib/base_models/encoder_decoder_model.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::model {
namespace {

constexpr double kTol = 1e-6;
constexpr double kLse = 0.407605964;  // log(1 + e^-1 + e^-2); see model_utils_test.cc

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

// Encoder-decoder: logits [B=2, L=2, V=3]; sequence 0 has tokens
//   z = [1, 2, 3], label 2 -> CE 0.407605964, correct
//   z = [1, 0, -1], label 1 -> CE 1.407605964, wrong
// and sequence 1 is padding (garbage logits), batch_mask [1, 0].
torch::Tensor seq_logits() {
  return torch::tensor({{{1.f, 2.f, 3.f}, {1.f, 0.f, -1.f}}, {{-1e30f, 1e30f, 0.f}, {0.f, 0.f, 0.f}}});
}
dataset::Batch seq_batch() {
  return {{"label", torch::tensor({{2, 1}, {1, 1}}, torch::kLong)}, {"batch_mask", torch::tensor({1.f, 0.f})}};
}

TEST(EncoderDecoderModel, LossNormalizesBySequencesWithASequenceMask) {
  auto model = make_model<EncoderDecoderModel>("");
  // As Scenic: the [B] mask's sum (1 sequence) is the normalizer: (0.4076 + 1.4076) / 1.
  EXPECT_NEAR(model->loss_function(seq_logits(), seq_batch(), nullptr).item<double>(), 1.0 + 2 * kLse, kTol);
  // Without a mask: all B * L = 4 tokens (the second sequence made harmless: z = 0 -> CE ln 3).
  auto z = seq_logits().clone();
  z[1] = torch::zeros({2, 3});
  dataset::Batch unmasked{{"label", seq_batch().at("label")}};
  EXPECT_NEAR(model->loss_function(z, unmasked, nullptr).item<double>(), (1.0 + 2 * kLse + 2 * std::log(3.0)) / 4,
              kTol);
  // Label smoothing 0.1: [0.1 + kLse, 1 + kLse] (see model_utils_test.cc); L2 + 0.5 * 0.1 * 30.
  auto smoothed = make_model<EncoderDecoderModel>("label_smoothing: 0.1\nl2_decay_factor: 0.1\n");
  auto net = smoothed->build_network();
  EXPECT_NEAR(smoothed->loss_function(seq_logits(), seq_batch(), net.get()).item<double>(),
              1.1 + 2 * kLse + 1.5, 1e-5);
}

TEST(EncoderDecoderModel, MetricsCountTokensAndClipPerplexity) {
  auto model = make_model<EncoderDecoderModel>("label_smoothing: 0.1\n");
  auto metrics = model->get_metrics_fn("validation")(seq_logits(), seq_batch());
  ASSERT_EQ(metrics.size(), 3u);
  // The [B] mask is tiled over tokens: 1 of 2 real tokens correct.
  EXPECT_DOUBLE_EQ(metrics["accuracy"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(metrics["accuracy"].second.item<double>(), 2.0);
  // Mean token CE (no smoothing), normalizer 1; perplexity exp(0.907605964) = 2.478436...
  const double mean_ce = (1.0 + 2 * kLse) / 2;
  EXPECT_NEAR(metrics["loss"].first.item<double>(), mean_ce, kTol);
  EXPECT_DOUBLE_EQ(metrics["loss"].second.item<double>(), 1.0);
  EXPECT_NEAR(metrics["perplexity"].first.item<double>(), std::exp(mean_ce), 1e-5);
  EXPECT_DOUBLE_EQ(metrics["perplexity"].second.item<double>(), 1.0);
  // A token mask [B, L] is used as given: only the first token is real.
  dataset::Batch token_mask{{"label", seq_batch().at("label")},
                            {"batch_mask", torch::tensor({{1.f, 0.f}, {0.f, 0.f}})}};
  auto tm = model->get_metrics_fn("test")(seq_logits(), token_mask);
  EXPECT_DOUBLE_EQ(tm["accuracy"].first.item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(tm["accuracy"].second.item<double>(), 1.0);
  EXPECT_NEAR(tm["loss"].first.item<double>(), kLse, kTol);
  // CE 100 per token: exp(100) is clipped to 1e4.
  auto hopeless = torch::tensor({{{0.f, 0.f, 100.f}}});
  dataset::Batch b{{"label", torch::tensor({{0}}, torch::kLong)}};
  auto hm = model->get_metrics_fn("test")(hopeless, b);
  EXPECT_NEAR(hm["loss"].first.item<double>(), 100.0, 1e-3);
  EXPECT_DOUBLE_EQ(hm["perplexity"].first.item<double>(), 1e4);
}

TEST(EncoderDecoderModel, OneHotTargetsAndShapeErrors) {
  auto model = make_model<EncoderDecoderModel>("", /*target_is_onehot=*/true);
  dataset::Batch b{{"label", torch::one_hot(torch::tensor({{2, 1}, {1, 1}}, torch::kLong), 3).to(torch::kFloat32)},
                   {"batch_mask", torch::tensor({1.f, 0.f})}};
  EXPECT_NEAR(model->loss_function(seq_logits(), b, nullptr).item<double>(), 1.0 + 2 * kLse, kTol);
  auto ints = make_model<EncoderDecoderModel>("");
  EXPECT_CONTAINS(testing::error_of([&] { ints->loss_function(seq_logits()[0], seq_batch(), nullptr); }),
                  "[B, L, V]");
}

}  // namespace
}  // namespace scenic::model
