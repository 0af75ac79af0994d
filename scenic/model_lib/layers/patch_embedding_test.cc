// Tests for embed_patches: the patch convolution as one GEMM has the convolution's
// values and gradients (input, weight, bias), drops the rows and columns a patch does
// not fill, and leaves other convolutions to the convolution itself.
#include "scenic/model_lib/layers/patch_embedding.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/model_lib/layers/dense.h"

namespace scenic::model {
namespace {

void expect_same_as_conv(torch::nn::Conv2d conv, const torch::Tensor& images) {
  auto x = images.clone().requires_grad_(true);
  const auto got = embed_patches(conv, x);
  const auto want = conv(x).flatten(2).transpose(1, 2);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max();
  const auto g = torch::randn_like(want);
  const std::vector<torch::Tensor> wrt{x, conv->weight, conv->bias};
  const auto dgot = torch::autograd::grad({got}, wrt, {g}, /*retain_graph=*/true);
  const auto dwant = torch::autograd::grad({want}, wrt, {g}, /*retain_graph=*/true);
  for (size_t i = 0; i < wrt.size(); ++i)
    EXPECT_TRUE(torch::allclose(dgot[i], dwant[i], 1e-4, 1e-5)) << "gradient " << i << ": "
                                                                << (dgot[i] - dwant[i]).abs().max();
}

TEST(PatchEmbedding, GemmHasTheConvolutionsValuesAndGradients) {
  torch::manual_seed(0);
  const auto old = gemm_backend();
  for (auto backend : {GemmBackend::kAten, GemmBackend::kOneDnn}) {
    if (backend == GemmBackend::kOneDnn && !onednn_linear_available()) continue;
    set_gemm_backend(backend);
    // Fashion-MNIST ViT: 1 channel, 7x7 patches.
    torch::nn::Conv2d mnist(torch::nn::Conv2dOptions(1, 16, 7).stride(7));
    expect_same_as_conv(mnist, torch::randn({3, 1, 28, 28}));
    // RGB, rectangular patches, sizes a patch does not divide (the conv drops the rest).
    torch::nn::Conv2d rgb(torch::nn::Conv2dOptions(3, 8, {4, 5}).stride({4, 5}));
    expect_same_as_conv(rgb, torch::randn({2, 3, 18, 23}));
  }
  set_gemm_backend(old);
}

TEST(PatchEmbedding, OtherConvolutionsRunAsConvolutions) {
  torch::manual_seed(1);
  torch::nn::Conv2d overlapping(torch::nn::Conv2dOptions(2, 4, 3).stride(2));
  expect_same_as_conv(overlapping, torch::randn({2, 2, 9, 9}));
  torch::nn::Conv2d padded(torch::nn::Conv2dOptions(2, 4, 2).stride(2).padding(1));
  expect_same_as_conv(padded, torch::randn({2, 2, 8, 8}));
  torch::nn::Conv2d grouped(torch::nn::Conv2dOptions(4, 4, 2).stride(2).groups(2));
  expect_same_as_conv(grouped, torch::randn({1, 4, 6, 6}));
}

TEST(PatchEmbedding, WrongChannelCountIsTheConvolutionsError) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(1, 8, 7).stride(7));
  EXPECT_THROW(embed_patches(conv, torch::randn({2, 3, 28, 28})), c10::Error);
}

}  // namespace
}  // namespace scenic::model
