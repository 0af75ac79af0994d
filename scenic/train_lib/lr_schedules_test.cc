#include "scenic/train_lib/lr_schedules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

using common::ConfigDict;

LrFn lr_fn(const std::string& yaml) {
  return get_learning_rate_fn(ConfigDict::from_yaml_string(yaml));
}

// Builds `lr_configs` for a compound schedule with base lr 1 and the given extra keys.
LrFn compound(const std::string& factors, const std::string& extra = "",
              double base_learning_rate = 1.0) {
  return lr_fn("lr_configs:\n  learning_rate_schedule: compound\n  factors: '" + factors +
               "'\n  base_learning_rate: " + std::to_string(base_learning_rate) + "\n" + extra);
}

std::string error_of(const std::string& yaml) {
  try {
    lr_fn(yaml);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

double half_cosine(double progress) { return 0.5 * (1 + std::cos(std::numbers::pi * progress)); }

constexpr double kTol = 1e-12;

TEST(LrSchedulesTest, NoScheduleIsTheConstantBaseRate) {
  auto f = lr_fn("lr_configs:\n  base_learning_rate: 0.1\n");
  EXPECT_DOUBLE_EQ(f(0), 0.1);
  EXPECT_DOUBLE_EQ(f(123456), 0.1);
}

TEST(LrSchedulesTest, Constant) {
  auto f = compound("constant", "", 0.25);
  EXPECT_DOUBLE_EQ(f(0), 0.25);
  EXPECT_DOUBLE_EQ(f(1000), 0.25);
  // Spaces around factors are trimmed, as Scenic's str.strip().
  EXPECT_DOUBLE_EQ(compound(" constant ", "", 0.25)(7), 0.25);
}

TEST(LrSchedulesTest, LinearWarmup) {
  auto f = compound("linear_warmup", "  warmup_steps: 100\n");
  EXPECT_NEAR(f(0), 0.0, kTol);
  EXPECT_NEAR(f(1), 0.01, kTol);
  EXPECT_NEAR(f(50), 0.5, kTol);
  EXPECT_NEAR(f(99), 0.99, kTol);
  EXPECT_NEAR(f(100), 1.0, kTol);
  EXPECT_NEAR(f(5000), 1.0, kTol);

  auto g = compound("linear_warmup", "  warmup_steps: 100\n  warmup_alpha: 0.2\n");
  EXPECT_NEAR(g(0), 0.2, kTol);
  EXPECT_NEAR(g(50), 0.2 + 50 * 0.8 / 100, kTol);
  EXPECT_NEAR(g(100), 1.0, kTol);

  // No warmup: factor 1 from the first step.
  EXPECT_NEAR(compound("linear_warmup", "  warmup_steps: 0\n")(0), 1.0, kTol);
}

TEST(LrSchedulesTest, RsqrtDecay) {
  auto f = compound("rsqrt_decay");  // warmup_steps=0, timescale=10000
  EXPECT_NEAR(f(0), 1.0, kTol);      // only applies once step > warmup_steps
  EXPECT_NEAR(f(30000), 0.5, kTol);  // sqrt(1e4) / sqrt(3e4 + 1e4)
  EXPECT_NEAR(f(10000), 1 / std::sqrt(2.0), kTol);

  auto g = compound("rsqrt_decay", "  warmup_steps: 100\n  timescale: 100\n");
  EXPECT_NEAR(g(50), 1.0, kTol);
  EXPECT_NEAR(g(100), 1.0, kTol);
  EXPECT_NEAR(g(101), std::sqrt(100.0) / std::sqrt(101.0), kTol);
  EXPECT_NEAR(g(400), 0.5, kTol);
}

TEST(LrSchedulesTest, DecayEvery) {
  auto f = compound("decay_every", "  steps_per_decay: 10\n  decay_factor: 0.5\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(9), 1.0, kTol);
  EXPECT_NEAR(f(10), 0.5, kTol);
  EXPECT_NEAR(f(25), 0.25, kTol);
}

TEST(LrSchedulesTest, ExponentialDecay) {
  auto f = compound("exponential_decay", "  decay_steps: 10\n  decay_rate: 0.5\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(5), std::sqrt(0.5), kTol);
  EXPECT_NEAR(f(20), 0.25, kTol);
  auto g = compound("exponential_decay",
                    "  decay_steps: 10\n  decay_rate: 0.5\n  staircase: true\n");
  EXPECT_NEAR(g(5), 1.0, kTol);
  EXPECT_NEAR(g(19), 0.5, kTol);
  EXPECT_NEAR(g(20), 0.25, kTol);
}

TEST(LrSchedulesTest, CosineDecaySingleCycleAndRestarts) {
  auto f = compound("cosine_decay", "  steps_per_cycle: 100\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(25), 0.5 * (1 + std::sqrt(0.5)), kTol);
  EXPECT_NEAR(f(50), 0.5, kTol);
  EXPECT_NEAR(f(99), half_cosine(0.99), kTol);
  EXPECT_NEAR(f(100), 1.0, kTol);  // t_mul=1: restarts every 100 steps
  EXPECT_NEAR(f(150), 0.5, kTol);

  auto alpha = compound("cosine_decay", "  steps_per_cycle: 100\n  alpha: 0.1\n");
  EXPECT_NEAR(alpha(50), 0.9 * 0.5 + 0.1, kTol);
  EXPECT_NEAR(alpha(100), 1.0, kTol);

  // m_mul scales each restart's peak even with t_mul = 1.
  auto m = compound("cosine_decay", "  steps_per_cycle: 100\n  m_mul: 0.5\n");
  EXPECT_NEAR(m(100), 0.5, kTol);
  EXPECT_NEAR(m(150), 0.25, kTol);
  EXPECT_NEAR(m(250), 0.125, kTol);
}

TEST(LrSchedulesTest, CosineDecaySgdrWithGrowingCycles) {
  // Cycles [0,10), [10,30), [30,70), ... with peaks 1, 0.5, 0.25.
  auto f = compound("cosine_decay", "  steps_per_cycle: 10\n  t_mul: 2\n  m_mul: 0.5\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(5), 0.5, kTol);
  EXPECT_NEAR(f(10), 0.5, kTol);   // restart 1 at its peak
  EXPECT_NEAR(f(15), 0.5 * half_cosine(0.25), kTol);
  EXPECT_NEAR(f(20), 0.25, kTol);  // middle of cycle 1
  EXPECT_NEAR(f(50), 0.125, kTol); // middle of cycle 2
  EXPECT_NEAR(f(40), 0.25 * half_cosine(0.25), kTol);
}

TEST(LrSchedulesTest, CosineDecayWithWarmupAndStart) {
  // Scenic shortens the cycle by the warmup: 100 - int(10 / (100 / 100)) = 90.
  auto f = compound("cosine_decay",
                    "  steps_per_cycle: 100\n  warmup_steps: 10\n  total_steps: 100\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(10), 1.0, kTol);
  EXPECT_NEAR(f(55), 0.5, kTol);
  EXPECT_NEAR(f(99), half_cosine(89.0 / 90.0), kTol);

  // Two cycles over 200 steps: each loses 20 / 2 = 10 steps.
  auto g = compound("cosine_decay",
                    "  steps_per_cycle: 100\n  warmup_steps: 20\n  total_steps: 200\n");
  EXPECT_NEAR(g(20 + 45), 0.5, kTol);
  EXPECT_NEAR(g(20 + 90), 1.0, kTol);

  auto s = compound("cosine_decay", "  steps_per_cycle: 100\n  start_decay_step: 20\n");
  EXPECT_NEAR(s(10), 1.0, kTol);
  EXPECT_NEAR(s(20), 1.0, kTol);
  EXPECT_NEAR(s(70), 0.5, kTol);

  // Warmup eats the whole cycle: Scenic skips the factor.
  auto none = compound("cosine_decay",
                       "  steps_per_cycle: 10\n  warmup_steps: 10\n  total_steps: 10\n");
  EXPECT_NEAR(none(5), 1.0, kTol);
  EXPECT_NEAR(none(500), 1.0, kTol);
}

TEST(LrSchedulesTest, ConstantLinearWarmupCosineDecay) {
  // ViT's schedule: 'constant*linear_warmup*cosine_decay'.
  auto f = compound("constant * linear_warmup * cosine_decay",
                    "  warmup_steps: 10\n  steps_per_cycle: 100\n  total_steps: 100\n", 0.1);
  EXPECT_NEAR(f(0), 0.0, kTol);
  EXPECT_NEAR(f(5), 0.1 * 0.5 * 1.0, kTol);
  EXPECT_NEAR(f(10), 0.1, kTol);
  EXPECT_NEAR(f(55), 0.1 * 0.5, kTol);
  EXPECT_NEAR(f(99), 0.1 * half_cosine(89.0 / 90.0), kTol);
  // The order of factors does not matter for products.
  auto g = compound("constant*cosine_decay*linear_warmup",
                    "  warmup_steps: 10\n  steps_per_cycle: 100\n  total_steps: 100\n", 0.1);
  for (int64_t step : {0, 3, 10, 42, 99}) EXPECT_NEAR(f(step), g(step), kTol) << step;
}

TEST(LrSchedulesTest, LinearDecayTransformsTheRunningProduct) {
  auto f = compound("constant*linear_decay",
                    "  total_steps: 100\n  end_learning_rate: 0.1\n", 2.0);
  EXPECT_NEAR(f(0), 2.0, kTol);
  EXPECT_NEAR(f(50), (2.0 - 0.1) * 0.5 + 0.1, kTol);
  EXPECT_NEAR(f(100), 0.1, kTol);  // the end value is absolute, not a factor of 2.0
  EXPECT_NEAR(f(150), 0.1, kTol);

  // Mixer's schedule: warmup then linear decay to end_learning_rate.
  auto g = compound("constant*linear_warmup*linear_decay",
                    "  warmup_steps: 10\n  total_steps: 110\n  end_learning_rate: 1e-5\n",
                    1e-3);
  EXPECT_NEAR(g(5), 0.5e-3, kTol);  // progress is clamped at 0 during warmup
  EXPECT_NEAR(g(60), (1e-3 - 1e-5) * 0.5 + 1e-5, kTol);
  EXPECT_NEAR(g(110), 1e-5, kTol);
  // 'linear_decay' before 'constant' transforms 1.0, and constant then scales it.
  auto h = compound("linear_decay*constant", "  total_steps: 100\n  end_learning_rate: 0.1\n",
                    2.0);
  EXPECT_NEAR(h(50), ((1 - 0.1) * 0.5 + 0.1) * 2.0, kTol);
}

TEST(LrSchedulesTest, LinearCooldown) {
  auto f = compound("linear_cooldown", "  total_steps: 100\n  cooldown_steps: 20\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(80), 1.0, kTol);
  EXPECT_NEAR(f(90), 0.5, kTol);
  EXPECT_NEAR(f(100), 0.0, kTol);
  EXPECT_NEAR(f(110), -0.5, kTol);  // Scenic does not clamp past total_steps
  auto g = compound("linear_cooldown",
                    "  total_steps: 100\n  cooldown_steps: 20\n  warmup_steps: 95\n");
  EXPECT_NEAR(g(10), 0.25, kTol);  // max(step, warmup_steps) = 95
}

TEST(LrSchedulesTest, Polynomial) {
  auto f = compound("polynomial", "  decay_steps: 100\n  end_factor: 0.1\n  power: 2\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(50), 0.9 * 0.25 + 0.1, kTol);
  EXPECT_NEAR(f(100), 0.1, kTol);
  EXPECT_NEAR(f(150), 0.1, kTol);
  auto g = compound("polynomial", "  decay_steps: 100\n  end_factor: 0.0\n  power: 0.5\n");
  EXPECT_NEAR(g(75), 0.5, kTol);
}

TEST(LrSchedulesTest, PiecewiseConstant) {
  auto f = compound("piecewise_constant",
                    "  decay_events: [10, 20]\n  decay_factors: [0.5, 0.1]\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(10), 1.0, kTol);  // an event at step e applies from step e + 1
  EXPECT_NEAR(f(11), 0.5, kTol);
  EXPECT_NEAR(f(20), 0.5, kTol);
  EXPECT_NEAR(f(21), 0.1, kTol);
  EXPECT_NEAR(f(100000), 0.1, kTol);
}

TEST(LrSchedulesTest, PiecewiseLinear) {
  auto f = compound("piecewise_linear",
                    "  decay_events: [10, 20]\n  decay_factors: [0.5, 0.1]\n");
  EXPECT_NEAR(f(0), 1.0, kTol);
  EXPECT_NEAR(f(5), 0.75, kTol);
  EXPECT_NEAR(f(10), 0.5, kTol);
  EXPECT_NEAR(f(15), 0.3, kTol);
  EXPECT_NEAR(f(20), 0.1, kTol);
  EXPECT_NEAR(f(25), 0.1, kTol);
  EXPECT_NEAR(f(1000), 0.1, kTol);
}

TEST(LrSchedulesTest, DefaultsAreRecordedAndTyposStayUnread) {
  ConfigDict c = ConfigDict::from_yaml_string(
      "lr_configs:\n  learning_rate_schedule: compound\n  factors: constant*cosine_decay\n"
      "  base_learning_rate: 0.1\n  steps_per_cycle: 50\n  warmup_step: 5\n");
  get_learning_rate_fn(c);
  EXPECT_DOUBLE_EQ(c.get<double>("lr_configs.t_mul"), 1.0);
  EXPECT_DOUBLE_EQ(c.get<double>("lr_configs.alpha"), 0.0);
  EXPECT_DOUBLE_EQ(c.get<double>("lr_configs.total_steps"), 50.0);
  EXPECT_DOUBLE_EQ(c.get<double>("lr_configs.warmup_steps"), 0.0);
  const auto unused = c.unused_keys();
  EXPECT_NE(std::find(unused.begin(), unused.end(), "lr_configs.warmup_step"), unused.end());
  EXPECT_EQ(unused.size(), 1u);
}

TEST(LrSchedulesTest, UnknownFactorNamesTheKeyAndSuggests) {
  const std::string e = error_of(
      "lr_configs:\n  learning_rate_schedule: compound\n  factors: constant*cosine_decy\n"
      "  base_learning_rate: 0.1\n  steps_per_cycle: 10\n");
  EXPECT_TRUE(contains(e, "lr_configs.factors")) << e;
  EXPECT_TRUE(contains(e, "'cosine_decy'")) << e;
  EXPECT_TRUE(contains(e, "did you mean 'cosine_decay'")) << e;
  // A trailing '*' leaves an empty factor name, as Python's split does.
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  factors: 'constant*'\n  base_learning_rate: 0.1\n"),
                       "unknown factor ''"));
}

TEST(LrSchedulesTest, MissingKeysNameTheirPath) {
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  factors: constant\n"),
                       "lr_configs.base_learning_rate"));
  EXPECT_TRUE(contains(error_of("model_name: x\n"), "lr_configs.base_learning_rate"));
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  base_learning_rate: 0.1\n"),
                       "lr_configs.factors"));
  // cosine_decay defaults warmup_steps, but linear_warmup still requires it.
  const std::string e = error_of(
      "lr_configs:\n  learning_rate_schedule: compound\n  base_learning_rate: 0.1\n"
      "  factors: cosine_decay*linear_warmup\n  steps_per_cycle: 10\n");
  EXPECT_TRUE(contains(e, "lr_configs.warmup_steps")) << e;
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  base_learning_rate: 0.1\n  factors: linear_decay\n"),
                       "lr_configs.total_steps"));
}

TEST(LrSchedulesTest, BadValuesAreRejected) {
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compund\n"
                                "  base_learning_rate: 0.1\n"),
                       "did you mean 'compound'"));
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  base_learning_rate: 0.1\n  factors: linear_decay\n"
                                "  total_steps: 10\n  warmup_steps: 10\n"),
                       "lr_configs.total_steps"));
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  base_learning_rate: 0.1\n  factors: piecewise_constant\n"
                                "  decay_events: [1, 2]\n  decay_factors: [0.5]\n"),
                       "lr_configs.decay_factors"));
  EXPECT_TRUE(contains(error_of("lr_configs:\n  learning_rate_schedule: compound\n"
                                "  base_learning_rate: 0.1\n  factors: cosine_decay\n"
                                "  steps_per_cycle: 0\n"),
                       "lr_configs.steps_per_cycle"));
  EXPECT_TRUE(contains(error_of("lr_configs:\n  base_learning_rate: fast\n"),
                       "lr_configs.base_learning_rate"));
}

}  // namespace
}  // namespace scenic::train
