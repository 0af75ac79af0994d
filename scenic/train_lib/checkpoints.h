// Checkpoints: the train state (parameters, buffers, optimizer state, step, torch's
// CPU RNG state, metadata such as timing)
// saved as `<workdir>/checkpoints/checkpoint_<step>` (Scenic's save/restore_checkpoint,
// flax's `checkpoint_<step>` naming).
//
// Writes are atomic: the archive goes to `checkpoint_<step>.tmp`, is fsync'ed, renamed
// into place and the directory fsync'ed, so a process killed at any instant leaves the
// previous checkpoint loadable; a failed write (disk full) throws and leaves the older
// checkpoints untouched. The newest `keep` checkpoints are kept.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace scenic::train {

struct TrainStateRef {
  torch::nn::Module* network = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;  // may be null (eval-only restore)
  int64_t step = 0;
  std::string metadata;  // free-form JSON (e.g. timing), restored verbatim
  bool include_rng = true;  // save / restore torch's CPU generator state
  // More state kept in the checkpoint's "extra" section (e.g. the EMA weights).
  std::function<void(torch::serialize::OutputArchive&)> save_extra;
  std::function<void(torch::serialize::InputArchive&)> load_extra;  // called only if present
};

// Paths of `checkpoint_<step>` files in `dir`, sorted by step (ignores *.tmp leftovers).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
std::optional<std::string> latest_checkpoint(const std::string& dir);

// Saves atomically and prunes to the newest `keep` (keep <= 0 keeps all). Returns the path.
std::string save_checkpoint(const std::string& dir, const TrainStateRef& state, int keep);

// Restores into `state` (network, and optimizer when set); fills step and metadata.
// Throws scenic::Error naming the file and the parameter on a missing key or a shape
// mismatch, or when the file is not a checkpoint.
void restore_checkpoint(const std::string& path, TrainStateRef& state);

}  // namespace scenic::train
