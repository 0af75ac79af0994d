// Evaluation on a multi-core CPU: split the batch over the threads, not each op.
//
// ATen runs every op of a forward on all its intra-op threads. For the small ops of an
// eval forward (a 17-token ViT: 2176 x 128 x 128 GEMMs, LayerNorms of 2176 rows) that
// is a fork and a join per op: on 2 cores the second thread bought the Fashion-MNIST
// ViT's eval step only 1.1x, and profiles showed each thread waiting for the other
// 20% of the time. Here each thread runs the whole forward of one contiguous slice of
// the batch with every op single-threaded (inside the parallel region ATen, oneDNN and
// MKL do not fork again), and the outputs are concatenated: per example the same
// computation, so the same outputs (to the float rounding of a GEMM that blocks
// differently for fewer rows). bench/README.md has the figures. Only networks that opt
// in (model::Network::splits_batch_on_cpu: ViT, Mixer) are split by evaluate and
// `scenic bench`: convolution networks run faster with oneDNN splitting each conv.
//
// Training steps split the same way (accumulate_gradients_split): each thread runs the
// forward, loss and backward of one slice, and the slices' gradients accumulate into
// the parameters' `.grad` with the weights of gradient accumulation
// (grad_accumulation.h), so `.grad` is the whole batch's gradient whenever the loss is
// a batch_mask-weighted mean (every classification loss). Each slice draws its dropout
// and stochastic-depth masks from a generator of its own (model_lib/layers/
// random_masks.h), forked from the default one in slice order before the threads start:
// a run is reproducible for its `rng_seed` and thread count (its masks are other draws
// than an unsplit step's, from the same distribution). Only networks that opt in
// (model::Network::splits_batch_on_cpu: ViT, Mixer) are split, and never one with buffers
// (BatchNorm's batch statistics, which a split step would compute per slice and update
// from two threads at once).
//
// Config keys (top level): `eval_split_batch`, `train_split_batch`: true (default) |
// false, read by `set_threads` (setup.h) into process-wide settings, as `gemm_backend` is.
#pragma once

#include <torch/types.h>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"
#include "scenic/train_lib/grad_accumulation.h"

namespace scenic::train {

// `network.forward(inputs)` computed as up to `threads` slices of `inputs` along dim 0,
// one per thread at once, concatenated along dim 0. Each slice has at least
// `min_per_thread` examples. One plain forward instead when `threads` <= 1, when the
// batch is too small for two slices, when `inputs` is not on the CPU, when grad mode is
// on (an eval-only path: autograd graphs are not built across threads here), or when
// the build has no OpenMP. Thread-local state (grad mode, autocast) is that of the
// caller in every thread. Throws scenic::Error when an output's first dim is not its
// slice's size (the network does not map [B, ...] to [B, ...]); an exception in any
// thread is rethrown in the caller.
torch::Tensor forward_split_batch(model::Network& network, const torch::Tensor& inputs, int threads,
                                  int64_t min_per_thread = 1);

// How many slices forward_split_batch makes of a batch of `batch` CPU examples: at most
// `threads`, each of at least `min_per_thread` examples; 1 (no split) when that gives
// fewer than two or the build has no OpenMP.
int64_t split_slices(int64_t batch, int threads, int64_t min_per_thread = 1);

// The process-wide setting (default true) and the thread count evaluation of `network`
// splits over: ATen's intra-op threads when the setting is on and the network opts in
// (model::Network::splits_batch_on_cpu), else 1.
void set_eval_split_batch(bool on);
bool eval_split_batch();
int eval_split_threads(const model::Network& network);

// How many slices a training step of `batch` on `network` splits into with `threads`
// threads: split_slices(B, threads), lowered until it divides B, when the setting is
// on, the batch's tensors are on the CPU and the network opts in and has no buffers;
// else 1.
int64_t train_split_slices(const model::Network& network, const dataset::Batch& batch, int threads);

// One training step's gradients from `slices` equal slices of `batch` (as split_batch
// makes them) run at once, one per thread: `loss_fn` and the weighted backward of each
// slice, as accumulate_gradients(batch, slices, loss_fn) computes them one after the
// other (call optimizer.zero_grad() before). `loss_fn` runs concurrently on several
// threads and must not touch shared state. One plain accumulate_gradients(batch, 1, ...)
// when slices < 2, inside a parallel region, or without OpenMP. An exception in any
// slice is rethrown here (the `.grad` are then partial).
AccumulatedStep accumulate_gradients_split(const dataset::Batch& batch, int64_t slices,
                                           const MicrobatchLossFn& loss_fn);

void set_train_split_batch(bool on);
bool train_split_batch();

// Whether this build opens its own OpenMP regions (false: forward_split_batch always
// runs one plain forward).
bool batch_split_available();

}  // namespace scenic::train
