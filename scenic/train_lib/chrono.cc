#include "scenic/train_lib/chrono.h"

#include "scenic/common_lib/errors.h"

namespace scenic::train {

Chrono::Chrono(int64_t num_cores) : num_cores_(num_cores < 1 ? 1 : num_cores) {
  process_start_ = step_start_ = Clock::now();
}

void Chrono::restore(const nlohmann::json& state) {
  if (!state.is_object()) return;
  try {
    accum_train_time_ = state.value("accum_train_time", 0.0);
    examples_seen_ = state.value("examples_seen", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("checkpoint metadata: bad timing state: ") + e.what());
  }
}

nlohmann::json Chrono::state() const {
  return {{"accum_train_time", accum_train_time_}, {"examples_seen", examples_seen_}};
}

void Chrono::step_started() { step_start_ = Clock::now(); }

void Chrono::step_finished(int64_t examples) {
  const double dt = std::chrono::duration<double>(Clock::now() - step_start_).count();
  accum_train_time_ += dt;
  window_time_ += dt;
  examples_seen_ += examples;
  window_examples_ += examples;
}

std::map<std::string, double> Chrono::summary() {
  const double rate = window_time_ > 0 ? window_examples_ / window_time_ : 0.0;
  std::map<std::string, double> out{
      {"examples_per_sec", rate},
      {"examples_per_sec_per_core", rate / num_cores_},
      {"examples_seen", double(examples_seen_)},
      {"accum_train_time_s", accum_train_time_},
      {"core_hours", accum_train_time_ * num_cores_ / 3600.0},
      {"uptime_s", std::chrono::duration<double>(Clock::now() - process_start_).count()},
  };
  window_time_ = 0.0;
  window_examples_ = 0;
  return out;
}

}  // namespace scenic::train
