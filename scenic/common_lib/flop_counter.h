// FlopCounter: the multiply-adds of the matrix-product ops a piece of code runs.
//
// The counterpart of Scenic's debug_utils.compute_flops. Scenic asks XLA's cost analysis
// for the unfused FLOPs of the jitted forward pass at batch size 1 and, with
// fuse_multiply_add, halves them, so a multiply-add counts as ONE FLOP. We count the same
// unit, but by watching the ATen ops that run: while a FlopCounter lives, a thread-local
// RecordFunction callback sees every op this thread dispatches and adds up the
// multiply-adds of the matrix products, from the shapes of their inputs (and outputs):
//   mm, addmm          [M, K] x [K, N]                 M K N
//   bmm, baddbmm       [B, M, K] x [B, K, N]           B M K N
//   matmul             broadcast batch x M K N
//   linear             x [..., K], w [N, K]            numel(x) N
//     (and mkldnn::_linear_pointwise, the oneDNN inner product of layers/dense.h)
//   conv{1,2,3}d, convolution, _convolution            numel(out) C_in/groups prod(kernel)
//   conv_transpose{1,2,3}d (and transposed convolution) numel(in) C_out/groups prod(kernel)
//   scaled_dot_product_attention  q [..., L, E], k [..., S, E], v [..., S, Ev]
//                      batch L S (E + Ev)   (q k^T and weights v)
// An op counted here that runs other counted ops (linear -> addmm, conv2d -> convolution
// -> mkldnn_convolution, sdpa's math path -> bmm) is counted once, at the outermost;
// ops not in the list (einsum, ...) are transparent, so the products they run count.
// (LibTorch's C++ nn::Linear reaches addmm/matmul without an aten::linear record; the
// count is the same.)
// Element-wise work (bias adds, activations, norms, softmax) is not counted; XLA's count
// includes it, which puts Scenic's figure a few percent above ours for ViTs and ResNets.
// Ops run inside an autograd node's backward (a BACKWARD_FUNCTION record) are not
// counted, so running backward under a counter still gives the forward's count.
#pragma once

#include <ATen/record_function.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace scenic::common {

class FlopCounter {
 public:
  // Counting starts on this thread; it stops when the counter is destroyed. Counters
  // nest: only the innermost live one counts.
  FlopCounter();
  ~FlopCounter();
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;

  int64_t total() const;
  // Whether a counter lives on this thread. Models that skip work whose result nothing
  // reads (ViT's token classifier, vit.cc) run in full while counting, so the count is
  // the model's nominal one, as Scenic and the papers quote it.
  static bool active();
  // Multiply-adds per op name ("aten::linear", ...), outermost counted ops only.
  const std::map<std::string, int64_t>& by_op() const { return by_op_; }

  // Counted ops whose shapes could not be read (e.g. a matmul of 0-dim tensors), by
  // name: they add nothing to total(). Empty in every case the tests cover.
  const std::map<std::string, int64_t>& uncounted() const { return uncounted_; }

  // Called by the callbacks; public so they need no friendship.
  void add(const std::string& op, int64_t flops) { by_op_[op] += flops; }
  void add_uncounted(const std::string& op) { ++uncounted_[op]; }

 private:
  at::CallbackHandle handle_ = 0;
  FlopCounter* previous_ = nullptr;
  int previous_depth_ = 0;
  std::map<std::string, int64_t> by_op_, uncounted_;
};

// Runs `fn` under a FlopCounter and returns the multiply-adds it counted (and, with
// `by_op`, the split per op).
int64_t count_flops(const std::function<void()>& fn, std::map<std::string, int64_t>* by_op = nullptr);

}  // namespace scenic::common
