#include "scenic/train_lib/preemption.h"

#include <atomic>

namespace scenic::train {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the flag must be signal-safe");

void on_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig) && expected == sig) {
    // Asked twice: stop now.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

PreemptionGuard::PreemptionGuard() {
  g_signal = 0;
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &old_term_);
  sigaction(SIGINT, &sa, &old_int_);
}

PreemptionGuard::~PreemptionGuard() {
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGINT, &old_int_, nullptr);
}

int PreemptionGuard::requested() { return g_signal.load(); }

}  // namespace scenic::train
