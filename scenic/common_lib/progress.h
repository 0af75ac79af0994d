// ProgressBar: step/total, examples/s, loss and ETA on the console while training.
//
// On a terminal it redraws one line in place (at most ~10 times a second); when stdout
// is not a terminal (CI, `| tee`, nohup) it prints a plain line every `plain_every_s`
// seconds instead, so logs stay readable. Plays the role of CLU's ReportProgress.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace scenic::common {

class ProgressBar {
 public:
  ProgressBar(int64_t total_steps, int64_t start_step, int64_t examples_per_step,
              double plain_every_s = 30.0, std::FILE* out = stdout);
  // Whether a redraw is due now (so callers fetch the loss from the device only then).
  bool due() const;
  void update(int64_t step, double loss);
  // Ends the bar line (call before logging other lines).
  void finish();
  // "1h02m03s" style.
  static std::string format_duration(double seconds);

 private:
  using Clock = std::chrono::steady_clock;
  int64_t total_, start_, examples_per_step_;
  double plain_every_s_;
  std::FILE* out_;
  bool tty_;
  bool drawn_ = false;
  Clock::time_point t0_, last_draw_;
};

}  // namespace scenic::common
