// Preemption: SIGTERM / SIGINT ask the training loop to save a checkpoint and stop.
//
// Cluster schedulers (Slurm, Kubernetes, Borg in Scenic's world) send SIGTERM before
// killing a job; Ctrl-C sends SIGINT. While a PreemptionGuard lives, those signals only
// set a flag (async-signal-safe); the trainer polls `requested()` once per step, writes
// a checkpoint and returns, so the rerun of the same command resumes where it stopped.
// A second signal of the same kind while the first is pending restores the default
// action and re-raises, so a stuck process can still be stopped.
#pragma once

#include <csignal>
#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::train {

class PreemptionGuard {
 public:
  PreemptionGuard();   // installs the handlers
  ~PreemptionGuard();  // restores the previous ones
  PreemptionGuard(const PreemptionGuard&) = delete;
  PreemptionGuard& operator=(const PreemptionGuard&) = delete;

  // The signal received (SIGTERM or SIGINT), or 0.
  static int requested();

 private:
  struct sigaction old_term_{}, old_int_{};
};

// Thrown by a trainer after it saved a checkpoint in response to a signal; main exits
// with status 128 + signal, the shell convention for "terminated by a signal".
class PreemptedError : public Error {
 public:
  PreemptedError(const std::string& message, int signal) : Error(message), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace scenic::train
