#include "scenic/common_lib/progress.h"

#include <unistd.h>

#include <cstdio>
#include <sstream>

namespace scenic::common {

ProgressBar::ProgressBar(int64_t total_steps, int64_t start_step, int64_t examples_per_step,
                         double plain_every_s, std::FILE* out)
    : total_(total_steps),
      start_(start_step),
      examples_per_step_(examples_per_step),
      plain_every_s_(plain_every_s),
      out_(out),
      tty_(isatty(fileno(out)) != 0),
      t0_(Clock::now()),
      last_draw_(Clock::now()) {}

bool ProgressBar::due() const {
  const double since = std::chrono::duration<double>(Clock::now() - last_draw_).count();
  return since >= (tty_ ? 0.1 : plain_every_s_);
}

std::string ProgressBar::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const auto total = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (total >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm%02lds", long(total / 3600), long(total / 60 % 60), long(total % 60));
  } else if (total >= 60) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", long(total / 60), long(total % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lds", long(total));
  }
  return buf;
}

void ProgressBar::update(int64_t step, double loss) {
  last_draw_ = Clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - t0_).count();
  const int64_t done = step - start_;
  const double steps_per_s = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = steps_per_s > 0 ? (total_ - step) / steps_per_s : -1.0;
  const double frac = total_ > 0 ? static_cast<double>(step) / total_ : 0.0;
  char stats[160];
  std::snprintf(stats, sizeof(stats), "%ld/%ld  %.0f ex/s  loss %.4f  ETA %s", long(step), long(total_),
                steps_per_s * examples_per_step_, loss, format_duration(eta).c_str());
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar += std::string(kWidth - filled, '.');
    std::fprintf(out_, "\r[%s] %3.0f%%  %s\033[K", bar.c_str(), frac * 100.0, stats);
    drawn_ = true;
  } else {
    std::fprintf(out_, "progress: %s\n", stats);
  }
  std::fflush(out_);
}

void ProgressBar::finish() {
  if (tty_ && drawn_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
  drawn_ = false;
}

}  // namespace scenic::common
