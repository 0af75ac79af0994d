// conv1x1: the product path against torch::conv2d in float64 (values, and the gradients
// of x, weight and bias), the layout it returns, and the rule that picks it.
#include "scenic/model_lib/layers/pointwise_conv.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/errors.h"

namespace scenic::model {
namespace {

torch::Tensor channels_last(const torch::Tensor& t) { return t.contiguous(torch::MemoryFormat::ChannelsLast); }

struct Grads {
  torch::Tensor y, dx, dw, db;
};

Grads run(const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0, const torch::Tensor& g,
          int64_t stride, Conv1x1Path path, bool reference) {
  auto x = (reference ? x0.to(torch::kDouble) : x0.clone()).requires_grad_(true);
  auto w = (reference ? w0.to(torch::kDouble) : w0.clone()).requires_grad_(true);
  torch::Tensor b;
  if (b0.defined()) b = (reference ? b0.to(torch::kDouble) : b0.clone()).requires_grad_(true);
  if (!reference) x = channels_last(x.detach()).requires_grad_(true);
  auto y = reference ? torch::conv2d(x, w, b, stride) : conv1x1(x, w, b, stride, path);
  y.backward(reference ? g.to(torch::kDouble) : g);
  return {y.detach(), x.grad(), w.grad(), b.defined() ? b.grad() : torch::Tensor()};
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, const char* what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double err = (got.to(torch::kDouble) - want).abs().max().item<double>();
  const double scale = want.abs().max().item<double>();
  EXPECT_LT(err, 1e-5 * scale + 1e-6) << what << ": max error " << err << " of " << scale;
}

void check_against_conv2d(int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t stride, bool with_bias) {
  torch::manual_seed(7);
  const auto x = torch::randn({n, cin, h, w});
  const auto wt = channels_last(torch::randn({cout, cin, 1, 1}));
  const auto b = with_bias ? torch::randn({cout}) : torch::Tensor();
  const int64_t ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
  const auto g = channels_last(torch::randn({n, cout, ho, wo}));
  const auto got = run(x, wt, b, g, stride, Conv1x1Path::kGemm, false);
  const auto want = run(x, wt, b, g, stride, Conv1x1Path::kConv, true);
  EXPECT_TRUE(got.y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  expect_close(got.y, want.y, "y");
  expect_close(got.dx, want.dx, "dx");
  expect_close(got.dw, want.dw, "dweight");
  if (with_bias) expect_close(got.db, want.db, "dbias");
}

TEST(Conv1x1, ProductEqualsConv2dForwardAndBackward) { check_against_conv2d(3, 5, 7, 4, 6, 1, false); }
TEST(Conv1x1, ProductEqualsConv2dWithBias) { check_against_conv2d(2, 6, 3, 3, 5, 1, true); }
TEST(Conv1x1, ProductEqualsConv2dStrided) {
  check_against_conv2d(2, 4, 6, 5, 7, 2, false);  // odd sizes: the last row and column are kept
  check_against_conv2d(1, 3, 2, 7, 7, 3, true);
}

TEST(Conv1x1, RulePicksTheProductWhereTheWeightsOutweighTheActivations) {
  const auto cl = [](std::vector<int64_t> s) { return channels_last(torch::zeros(s)); };
  // ResNet-50 at batch 8: the last stage (7x7, 2048 <-> 512) and the third (14x14).
  EXPECT_TRUE(conv1x1_uses_gemm(cl({8, 2048, 7, 7}), cl({512, 2048, 1, 1}), 1));
  EXPECT_TRUE(conv1x1_uses_gemm(cl({8, 1024, 14, 14}), cl({256, 1024, 1, 1}), 1));
  EXPECT_TRUE(conv1x1_uses_gemm(cl({8, 1024, 14, 14}), cl({2048, 1024, 1, 1}), 2));  // 7x7 out
  // 56x56 and 28x28: oneDNN. 10 * 512 * 128 = 655360 < 6272 * 640 = 4014080.
  EXPECT_FALSE(conv1x1_uses_gemm(cl({8, 256, 56, 56}), cl({64, 256, 1, 1}), 1));
  EXPECT_FALSE(conv1x1_uses_gemm(cl({8, 512, 28, 28}), cl({128, 512, 1, 1}), 1));
  // At the boundary: 10 * 4 * 4 = 160 >= rows * 8 for rows <= 20.
  EXPECT_TRUE(conv1x1_uses_gemm(cl({5, 4, 2, 2}), cl({4, 4, 1, 1}), 1));   // 20 rows
  EXPECT_FALSE(conv1x1_uses_gemm(cl({7, 4, 3, 1}), cl({4, 4, 1, 1}), 1));  // 21 rows
  // Other layouts, dtypes: conv2d.
  EXPECT_FALSE(conv1x1_uses_gemm(torch::zeros({8, 2048, 7, 7}), cl({512, 2048, 1, 1}), 1));
  EXPECT_FALSE(conv1x1_uses_gemm(cl({8, 2048, 7, 7}).to(torch::kDouble), cl({512, 2048, 1, 1}).to(torch::kDouble), 1));
}

TEST(Conv1x1, AutoOnAnNchwInputIsConv2d) {
  torch::manual_seed(1);
  const auto x = torch::randn({2, 8, 2, 2});  // weights win the rule, but NCHW: conv2d
  const auto w = torch::randn({8, 8, 1, 1});
  ASSERT_FALSE(conv1x1_uses_gemm(x, w, 1));
  EXPECT_TRUE(torch::equal(conv1x1(x, w, {}, 1), torch::conv2d(x, w)));
}

TEST(Conv1x1, BadShapesNameBoth) {
  try {
    conv1x1(torch::zeros({2, 3, 4, 4}), torch::zeros({5, 4, 1, 1}), {}, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x [2, 3, 4, 4], weight [5, 4, 1, 1]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(conv1x1(torch::zeros({2, 4, 4, 4}), torch::zeros({5, 4, 3, 3}), {}, 1), Error);
  EXPECT_THROW(conv1x1(torch::zeros({2, 4, 4, 4}), torch::zeros({5, 4, 1, 1}), {}, 0), Error);
}

}  // namespace
}  // namespace scenic::model
