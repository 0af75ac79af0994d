#include "scenic/train_lib/lr_schedules.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <utility>
#include <variant>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

using common::ConfigDict;

// A factor maps (running product, step) to the new running product. All but
// linear_decay multiply; linear_decay pulls the product towards its end value.
using Factor = std::function<double(double ratio, double step)>;

std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Python's `x % 1.0` (floored, so the result is in [0, 1) also for negative x).
double mod1(double x) { return x - std::floor(x); }

// Reads keys of `lr_configs`. Defaults are applied the way Scenic's `config.get(k, d)`
// does, but written into the config only after every factor has been read: two
// factors may share a key (`warmup_steps`) where one requires it and another has a
// default, and the required read must still fail when the key is missing.
class KeyReader {
 public:
  explicit KeyReader(ConfigDict lr) : lr_(std::move(lr)) {}

  double required(const std::string& key) const { return lr_.get<double>(key); }

  template <typename T>
  T optional(const std::string& key, T default_value) {
    std::optional<T> v = lr_.get_optional<T>(key);
    if (v) return *v;
    pending_.emplace_back(key, default_value);
    return default_value;
  }

  std::vector<double> list(const std::string& key) const {
    return lr_.get<std::vector<double>>(key);
  }

  std::string path(const std::string& key) const { return lr_.prefix() + "." + key; }

  void record_defaults() {
    for (const auto& [key, value] : pending_) {
      if (lr_.has(key)) continue;  // first default wins
      std::visit([&](const auto& v) { lr_.set(key, v); }, value);
    }
  }

 private:
  ConfigDict lr_;
  std::vector<std::pair<std::string, std::variant<int64_t, double, bool>>> pending_;
};

void require_positive(const KeyReader& r, const std::string& key, double value,
                      const std::string& factor) {
  if (!(value > 0)) {
    std::ostringstream ss;
    ss << "config key '" << r.path(key) << "' must be > 0 for the '" << factor
       << "' learning-rate factor, got " << value;
    throw Error(ss.str());
  }
}

// Scenic's cosine_decay_scheduler: SGDR (cosine with warm restarts). Cycle i lasts
// steps_per_cycle * t_mul^i steps and starts at m_mul^i.
double cosine_decay_scheduler(double step, double steps_per_cycle, double t_mul, double m_mul,
                              double alpha) {
  double progress = step / steps_per_cycle;
  double i_restart;
  if (t_mul == 1.0) {
    i_restart = std::floor(progress);
    progress -= i_restart;
  } else {
    i_restart = std::floor(std::log(1.0 - progress * (1.0 - t_mul)) / std::log(t_mul));
    const double sum_r = (1.0 - std::pow(t_mul, i_restart)) / (1.0 - t_mul);
    progress = (progress - sum_r) / std::pow(t_mul, i_restart);
  }
  const double m_fac = std::pow(m_mul, i_restart);
  const double cosine_decay =
      std::max(0.0, 0.5 * m_fac * (1.0 + std::cos(std::numbers::pi * mod1(progress))));
  return (1 - alpha) * cosine_decay + alpha;
}

Factor make_factor(const std::string& name, double base_lr, KeyReader& r) {
  if (name == "constant") {
    return [base_lr](double ratio, double) { return ratio * base_lr; };
  }
  if (name == "polynomial") {
    const double decay_steps = r.required("decay_steps");
    const double end_factor = r.required("end_factor");
    const double power = r.required("power");
    require_positive(r, "decay_steps", decay_steps, name);
    return [=](double ratio, double step) {
      const double decay = step <= decay_steps ? 1.0 : 0.0;
      return ratio * ((1 - end_factor) * std::pow(decay * (1 - step / decay_steps), power) +
                      end_factor);
    };
  }
  if (name == "piecewise_constant" || name == "piecewise_linear") {
    const std::vector<double> events = r.list("decay_events");
    const std::vector<double> decay_factors = r.list("decay_factors");
    if (events.size() != decay_factors.size()) {
      throw Error("config keys '" + r.path("decay_events") + "' and '" +
                  r.path("decay_factors") + "' must have the same length (got " +
                  std::to_string(events.size()) + " and " +
                  std::to_string(decay_factors.size()) + ")");
    }
    if (!std::is_sorted(events.begin(), events.end())) {
      throw Error("config key '" + r.path("decay_events") + "' must be in increasing order");
    }
    // factors[i] holds after i events have passed; an event at step e counts from e+1.
    std::vector<double> factors = {1.0};
    factors.insert(factors.end(), decay_factors.begin(), decay_factors.end());
    if (name == "piecewise_constant") {
      return [events, factors](double ratio, double step) {
        const auto index = std::count_if(events.begin(), events.end(),
                                         [step](double e) { return e < step; });
        return ratio * factors[index];
      };
    }
    if (events.empty()) {
      throw Error("config key '" + r.path("decay_events") +
                  "' must not be empty for the 'piecewise_linear' learning-rate factor");
    }
    std::vector<double> boundaries = {0.0};
    boundaries.insert(boundaries.end(), events.begin(), events.end());
    factors.push_back(decay_factors.back());
    // Linear between (boundaries[i], factors[i]) and (boundaries[i+1], factors[i+1]);
    // constant at the last factor after the last event (Scenic appends `step` as the
    // final boundary, which makes the slope there zero).
    return [boundaries, factors](double ratio, double step) {
      const size_t index = std::count_if(boundaries.begin() + 1, boundaries.end(),
                                         [step](double e) { return e < step; });
      const double next_boundary = index + 1 < boundaries.size() ? boundaries[index + 1] : step;
      const double m = factors[index + 1] - factors[index];
      const double n = next_boundary - boundaries[index];
      const double a = m / std::max(n, 1.0);
      return ratio * (a * (step - boundaries[index]) + factors[index]);
    };
  }
  if (name == "linear_warmup") {
    const double warmup_steps = r.required("warmup_steps");
    const double alpha = r.optional<double>("warmup_alpha", 0.0);
    return [=](double ratio, double step) {
      if (warmup_steps <= 0) return ratio;
      return ratio * std::min(1.0, alpha + step * (1.0 - alpha) / warmup_steps);
    };
  }
  if (name == "rsqrt_decay") {
    const double warmup_steps = r.optional<double>("warmup_steps", 0.0);
    const double timescale = r.optional<double>("timescale", 10000.0);
    const double shift = timescale - warmup_steps;
    return [=](double ratio, double step) {
      if (!(warmup_steps < step)) return ratio;
      return ratio * std::sqrt(timescale) / std::sqrt(step + shift);
    };
  }
  if (name == "decay_every") {
    const double steps_per_decay = r.required("steps_per_decay");
    const double decay_factor = r.required("decay_factor");
    require_positive(r, "steps_per_decay", steps_per_decay, name);
    return [=](double ratio, double step) {
      return ratio * std::pow(decay_factor, std::floor(step / steps_per_decay));
    };
  }
  if (name == "exponential_decay") {
    const double decay_steps = r.required("decay_steps");
    const double decay_rate = r.required("decay_rate");
    const bool staircase = r.optional<bool>("staircase", false);
    require_positive(r, "decay_steps", decay_steps, name);
    return [=](double ratio, double step) {
      double progress = step / decay_steps;
      if (staircase) progress = std::floor(progress);
      return ratio * std::pow(decay_rate, progress);
    };
  }
  if (name == "cosine_decay") {
    const double steps_per_cycle = r.required("steps_per_cycle");
    require_positive(r, "steps_per_cycle", steps_per_cycle, name);
    const double t_mul = r.optional<double>("t_mul", 1.0);
    const double m_mul = r.optional<double>("m_mul", 1.0);
    const double alpha = r.optional<double>("alpha", 0.0);
    const double warmup_steps = r.optional<double>("warmup_steps", 0.0);
    const double start_decay_step = r.optional<double>("start_decay_step", 0.0);
    const double total_steps = r.optional<double>("total_steps", steps_per_cycle);
    require_positive(r, "total_steps", total_steps, name);
    // Scenic shortens every cycle by its share of the warmup, so that warmup plus
    // cosine cycles span total_steps; with no steps left the factor is skipped.
    const double cycle =
        steps_per_cycle - std::trunc(warmup_steps / (total_steps / steps_per_cycle));
    if (!(cycle > 0)) return [](double ratio, double) { return ratio; };
    return [=](double ratio, double step) {
      const double adjusted_step = std::max(0.0, step - (warmup_steps + start_decay_step));
      return ratio * cosine_decay_scheduler(adjusted_step, cycle, t_mul, m_mul, alpha);
    };
  }
  if (name == "linear_decay") {
    const double warmup_steps = r.optional<double>("warmup_steps", 0.0);
    const double total_steps = r.required("total_steps");
    const double end_lr = r.optional<double>("end_learning_rate", 0.0);
    if (!(total_steps > warmup_steps)) {
      std::ostringstream ss;
      ss << "config key '" << r.path("total_steps") << "' (" << total_steps
         << ") must be greater than '" << r.path("warmup_steps") << "' (" << warmup_steps
         << ") for the 'linear_decay' learning-rate factor";
      throw Error(ss.str());
    }
    return [=](double ratio, double step) {
      const double progress = std::max(0.0, (step - warmup_steps) / (total_steps - warmup_steps));
      return (ratio - end_lr) * std::max(1.0 - progress, 0.0) + end_lr;
    };
  }
  if (name == "linear_cooldown") {
    const double warmup_steps = r.optional<double>("warmup_steps", 0.0);
    const double total_steps = r.required("total_steps");
    const double cooldown_steps = r.required("cooldown_steps");
    require_positive(r, "cooldown_steps", cooldown_steps, name);
    // As in Scenic, no floor at zero: past total_steps the factor goes negative.
    return [=](double ratio, double step) {
      const double adjusted_step = std::max(step, warmup_steps);
      return ratio * std::min(1.0, (total_steps - adjusted_step) / cooldown_steps);
    };
  }
  // Unknown names are rejected before any factor is built.
  throw Error("unknown learning-rate factor '" + name + "'");
}

}  // namespace

const std::vector<std::string>& lr_factor_names() {
  static const std::vector<std::string> names = {
      "constant",          "polynomial",   "piecewise_constant", "piecewise_linear",
      "linear_warmup",     "rsqrt_decay",  "decay_every",        "exponential_decay",
      "cosine_decay",      "linear_decay", "linear_cooldown"};
  return names;
}

LrFn get_learning_rate_fn(const common::ConfigDict& config) {
  const ConfigDict lr = config.sub("lr_configs");
  const double base_lr = lr.get<double>("base_learning_rate");
  const std::optional<std::string> schedule =
      lr.get_optional<std::string>("learning_rate_schedule");
  if (!schedule) {
    return [base_lr](int64_t) { return base_lr; };
  }
  if (*schedule != "compound") {
    const std::string hint = common::closest_match(*schedule, {"compound"});
    throw Error("config key '" + lr.prefix() + ".learning_rate_schedule': unknown schedule '" +
                *schedule + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; known schedules: compound");
  }

  const std::string factors_str = lr.get<std::string>("factors");
  std::vector<std::string> names;
  // Python's str.split('*'): "" gives one empty name, "a*" gives "a" and "".
  for (size_t begin = 0;;) {
    const size_t end = factors_str.find('*', begin);
    names.push_back(trim(factors_str.substr(begin, end == std::string::npos ? end : end - begin)));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  const auto& known = lr_factor_names();
  for (const auto& name : names) {
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    const std::string hint = common::closest_match(name, known);
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    throw Error("config key '" + lr.prefix() + ".factors': unknown factor '" + name + "' in '" +
                factors_str + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; known factors: " + list);
  }

  KeyReader reader(lr);
  std::vector<Factor> factors;
  factors.reserve(names.size());
  for (const auto& name : names) factors.push_back(make_factor(name, base_lr, reader));
  reader.record_defaults();

  return [factors = std::move(factors)](int64_t step) {
    const double s = static_cast<double>(step);
    double ratio = 1.0;
    for (const auto& f : factors) ratio = f(ratio, s);
    return ratio;
  };
}

}  // namespace scenic::train
