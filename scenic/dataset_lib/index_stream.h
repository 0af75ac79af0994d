// The deterministic order in which training examples are visited.
//
// Mirrors the effect of Scenic's tf.data train pipeline (`shuffle(seed) -> repeat() ->
// batch(drop_remainder=True)`), made exactly resumable: the stream of example indices is
// the concatenation of per-epoch permutations of [0, n), the permutation of epoch e
// depending only on (seed, e); batch k is stream positions [k*B, (k+1)*B), so batches
// may straddle an epoch boundary. Starting at batch k costs one permutation, not k
// batches, and a resumed run sees the same batches as an uninterrupted one.
// The PRNG (mt19937_64 plus our own bounded sampling) is fully specified by the C++
// standard, so the order is the same on every platform and independent of torch's RNG.
#pragma once

#include <cstdint>
#include <vector>

namespace scenic::dataset {

// The permutation of [0, n) used for `epoch` (Fisher-Yates).
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n);

// Yields the index batches of the infinite training stream, starting at `start_step`.
class TrainIndexStream {
 public:
  TrainIndexStream(int64_t num_examples, int64_t batch_size, uint64_t seed,
                   int64_t start_step = 0);
  // The indices of the next batch: [batch_size], each in [0, num_examples).
  std::vector<int64_t> next();
  int64_t step() const { return step_; }  // index of the batch next() returns

 private:
  int64_t n_, batch_size_;
  uint64_t seed_;
  int64_t step_;
  int64_t epoch_ = 0, offset_ = 0;  // stream position of the next index
  std::vector<int64_t> perm_;        // permutation of epoch_
};

}  // namespace scenic::dataset
