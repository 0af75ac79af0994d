#include "scenic/dataset_lib/index_stream.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, bound) without modulo bias (std::uniform_int_distribution is
// implementation-defined, so it would make the order depend on the standard library).
uint64_t bounded(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);  // multiple of bound
  uint64_t x;
  do x = rng(); while (x >= limit);
  return x % bound;
}

}  // namespace

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t n) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

TrainIndexStream::TrainIndexStream(int64_t num_examples, int64_t batch_size, uint64_t seed,
                                   int64_t start_step)
    : n_(num_examples), batch_size_(batch_size), seed_(seed), step_(start_step) {
  if (n_ <= 0) throw Error("training stream over an empty split (0 examples)");
  if (batch_size_ <= 0) {
    throw Error("batch_size must be > 0, got " + std::to_string(batch_size_));
  }
  if (start_step < 0) throw Error("start_step must be >= 0, got " + std::to_string(start_step));
  // Position of the first index; k * B fits int64 for any realistic run.
  const int64_t pos = start_step * batch_size_;
  epoch_ = pos / n_;
  offset_ = pos % n_;
  perm_ = epoch_permutation(seed_, epoch_, n_);
}

std::vector<int64_t> TrainIndexStream::next() {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(batch_size_));
  while (static_cast<int64_t>(out.size()) < batch_size_) {
    if (offset_ == n_) {
      ++epoch_;
      offset_ = 0;
      perm_ = epoch_permutation(seed_, epoch_, n_);
    }
    const int64_t take = std::min(batch_size_ - static_cast<int64_t>(out.size()), n_ - offset_);
    out.insert(out.end(), perm_.begin() + offset_, perm_.begin() + offset_ + take);
    offset_ += take;
  }
  ++step_;
  return out;
}

}  // namespace scenic::dataset
