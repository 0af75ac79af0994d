// FlopCounter: multiply-adds (one per multiply-add, Scenic's fuse_multiply_add unit) of
// each counted op, checked against the formula written beside each case.
#include "scenic/common_lib/flop_counter.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

namespace scenic::common {
namespace {

namespace F = torch::nn::functional;

TEST(FlopCounter, MatrixProducts) {
  torch::NoGradGuard no_grad;
  std::map<std::string, int64_t> by_op;
  // mm [5, 7] x [7, 11]: 5 * 7 * 11 = 385.
  EXPECT_EQ(count_flops([] { torch::mm(torch::randn({5, 7}), torch::randn({7, 11})); }), 385);
  // addmm: the bias add is element-wise, not counted: 385 again.
  EXPECT_EQ(count_flops([] { torch::addmm(torch::randn({11}), torch::randn({5, 7}), torch::randn({7, 11})); }), 385);
  // The in-place forms (a residual accumulated into, model::dense_add): the same.
  EXPECT_EQ(count_flops([] { torch::randn({5, 11}).addmm_(torch::randn({5, 7}), torch::randn({7, 11})); }), 385);
  EXPECT_EQ(count_flops([] { torch::randn({2, 5, 11}).baddbmm_(torch::randn({2, 5, 7}), torch::randn({2, 7, 11})); }),
            770);
  // bmm [2, 3, 4] x [2, 4, 5]: 2 * 3 * 4 * 5 = 120.
  EXPECT_EQ(count_flops([] { torch::bmm(torch::randn({2, 3, 4}), torch::randn({2, 4, 5})); }), 120);
  // matmul with broadcast batch: [2, 1, 3, 4] x [5, 4, 6] -> batch [2, 5]: 10 * 3 * 4 * 6 = 720,
  // counted once at aten::matmul (it runs bmm/mm inside).
  EXPECT_EQ(count_flops([] { torch::matmul(torch::randn({2, 1, 3, 4}), torch::randn({5, 4, 6})); }, &by_op), 720);
  EXPECT_EQ(by_op, (std::map<std::string, int64_t>{{"aten::matmul", 720}}));
  // matrix-vector [3, 4] x [4]: 12; vector-vector: 4.
  EXPECT_EQ(count_flops([] { torch::matmul(torch::randn({3, 4}), torch::randn({4})); }), 12);
  EXPECT_EQ(count_flops([] { torch::matmul(torch::randn({4}), torch::randn({4})); }), 4);
}

TEST(FlopCounter, LinearCountedOnceAtTheOutermostOp) {
  torch::NoGradGuard no_grad;
  torch::nn::Linear fc(784, 64);
  std::map<std::string, int64_t> by_op;
  // x [3, 784] -> 3 * 784 * 64 = 150,528, counted once whether it shows up as aten::linear
  // (Python's F.linear) or as the addmm that LibTorch's Linear reaches directly.
  EXPECT_EQ(count_flops([&] { fc(torch::randn({3, 784})); }, &by_op), 150'528);
  EXPECT_EQ(by_op.size(), 1u);
  // at::linear called through the dispatcher: counted at linear, its addmm does not add.
  EXPECT_EQ(count_flops([&] { at::linear(torch::randn({3, 784}), fc->weight, fc->bias); }, &by_op), 150'528);
  EXPECT_EQ(by_op.size(), 1u);
  // Token inputs [2, 5, 784]: 10 rows -> 501,760.
  EXPECT_EQ(count_flops([&] { fc(torch::randn({2, 5, 784})); }), 501'760);
}

TEST(FlopCounter, Convolutions) {
  torch::NoGradGuard no_grad;
  // conv2d [2, 3, 8, 8] * [4, 3, 3, 3], padding 1 -> out [2, 4, 8, 8] = 512 elements,
  // each 3 * 3 * 3 = 27 multiply-adds: 13,824.
  EXPECT_EQ(count_flops([] {
              F::conv2d(torch::randn({2, 3, 8, 8}), torch::randn({4, 3, 3, 3}), F::Conv2dFuncOptions().padding(1));
            }),
            13'824);
  // Grouped: [2, 4, 8, 8] * [6, 2, 3, 3], groups 2, no padding -> out [2, 6, 6, 6] = 432,
  // each (4 / 2) * 9 = 18: 7,776.
  EXPECT_EQ(count_flops([] {
              F::conv2d(torch::randn({2, 4, 8, 8}), torch::randn({6, 2, 3, 3}), F::Conv2dFuncOptions().groups(2));
            }),
            7'776);
  // A patch embedding (ViT): [1, 1, 28, 28] * [192, 1, 4, 4], stride 4 -> [1, 192, 7, 7]:
  // 9,408 outputs x 16 = 150,528.
  torch::nn::Conv2d embed(torch::nn::Conv2dOptions(1, 192, 4).stride(4));
  EXPECT_EQ(count_flops([&] { embed(torch::randn({1, 1, 28, 28})); }), 150'528);
  // Transposed: input [1, 4, 5, 5] (100 elements), weight [C_in 4, C_out 2, 3, 3], stride 2:
  // each input element is multiplied into 2 * 9 outputs: 1,800.
  EXPECT_EQ(count_flops([] {
              F::conv_transpose2d(torch::randn({1, 4, 5, 5}), torch::randn({4, 2, 3, 3}),
                                  F::ConvTranspose2dFuncOptions().stride(2));
            }),
            1'800);
}

TEST(FlopCounter, AttentionEinsumAndElementwise) {
  torch::NoGradGuard no_grad;
  // sdpa q [2, 3, 5, 8], k [2, 3, 7, 8], v [2, 3, 7, 4]: 6 heads-batches x 5 x 7 x (8 + 4) = 2,520.
  std::map<std::string, int64_t> by_op;
  EXPECT_EQ(count_flops(
                [] {
                  at::scaled_dot_product_attention(torch::randn({2, 3, 5, 8}), torch::randn({2, 3, 7, 8}),
                                                   torch::randn({2, 3, 7, 4}));
                },
                &by_op),
            2'520);
  EXPECT_EQ(by_op.size(), 1u);
  // einsum is not a counted op: the bmm it runs is (2 * 3 * 4 * 5 = 120).
  EXPECT_EQ(count_flops([] { torch::einsum("bij,bjk->bik", {torch::randn({2, 3, 4}), torch::randn({2, 4, 5})}); }),
            120);
  // Element-wise ops count nothing.
  EXPECT_EQ(count_flops([] { torch::relu(torch::randn({100}) + 1).softmax(0); }), 0);
}

TEST(FlopCounter, ForwardOnlyNestingAndStop) {
  torch::nn::Linear fc(10, 20);
  auto x = torch::randn({4, 10});
  // With autograd on, the backward's mm ops (here dW: 20 * 4 * 10 = 800 more) run inside
  // BACKWARD_FUNCTION records and are not counted: 4 * 10 * 20 = 800 for the forward alone.
  EXPECT_EQ(count_flops([&] { fc(x).sum().backward(); }), 800);
  // Nested counters: only the innermost counts.
  FlopCounter outer;
  torch::mm(torch::randn({2, 3}), torch::randn({3, 4}));  // 24 to outer
  {
    FlopCounter inner;
    torch::mm(torch::randn({2, 3}), torch::randn({3, 5}));  // 30 to inner
    EXPECT_EQ(inner.total(), 30);
  }
  torch::mm(torch::randn({1, 3}), torch::randn({3, 4}));  // 12 to outer
  EXPECT_EQ(outer.total(), 36);
  EXPECT_TRUE(outer.uncounted().empty());
}

TEST(FlopCounter, StopsWhenDestroyed) {
  int64_t after = -1;
  EXPECT_FALSE(FlopCounter::active());
  {
    FlopCounter c;
    EXPECT_TRUE(FlopCounter::active());
    {
      FlopCounter inner;
    }
    EXPECT_TRUE(FlopCounter::active());  // the outer one again
    bool on_other_thread = true;
    std::thread([&] { on_other_thread = FlopCounter::active(); }).join();
    EXPECT_FALSE(on_other_thread);  // per thread
    torch::mm(torch::randn({2, 2}), torch::randn({2, 2}));
    EXPECT_EQ(c.total(), 8);
  }
  // No counter: nothing observes this (and no callback is left registered).
  torch::mm(torch::randn({2, 2}), torch::randn({2, 2}));
  after = count_flops([] {});
  EXPECT_EQ(after, 0);
  EXPECT_FALSE(FlopCounter::active());
  EXPECT_FALSE(at::hasThreadLocalCallbacks());
}

}  // namespace
}  // namespace scenic::common
