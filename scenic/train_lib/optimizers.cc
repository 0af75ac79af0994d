#include "scenic/train_lib/optimizers.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>

#include <algorithm>
#include <optional>
#include <sstream>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

using common::ConfigDict;

const char* const kOc = "optimizer_configs.";

std::string oc(const std::string& key) { return kOc + key; }

// Optax optimizers Scenic configs may name that we do not implement yet; naming
// them gets a "not supported yet" error rather than "unknown".
const std::vector<std::string>& known_optax_optimizers() {
  static const std::vector<std::string> names = {
      "adabelief", "adafactor", "adagrad", "adadelta", "adamax",  "adamaxw",
      "fromage",   "lamb",      "lars",    "lion",     "momentum_hp", "noisy_sgd",
      "novograd",  "radam",     "rmsprop", "sm3",      "yogi"};
  return names;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The optimizer after Scenic's get_optax_optimizer_config, with its arguments read.
struct Resolved {
  std::string name;                 // optax name: sgd | adam | adamw
  std::optional<double> momentum;   // sgd; none -> no momentum trace
  bool nesterov = false;            // sgd
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;  // adam, adamw
  double weight_decay = 0;          // sgd: coupled; adamw: decoupled
  bool mask_1d = false;             // 1-D params get no weight decay
};

// torch::optim checks these ranges with TORCH_CHECK; say it with the config key instead.
double check_range(const std::string& path, double v, bool below_one) {
  if (v >= 0 && (!below_one || v < 1)) return v;
  std::ostringstream ss;
  ss << "config key '" << path << "' must be " << (below_one ? "in [0, 1)" : ">= 0") << ", got "
     << v;
  throw Error(ss.str());
}

Resolved resolve(const ConfigDict& config) {
  const bool new_style = config.has(oc("optimizer"));
  const bool legacy = !new_style;
  if (new_style && config.has("optimizer")) {
    throw Error(
        "config keys 'optimizer' and 'optimizer_configs.optimizer' are both set; define the "
        "optimizer only once, preferably as 'optimizer_configs.optimizer'");
  }
  if (legacy && !config.has("optimizer")) {
    throw Error(
        "config key 'optimizer_configs.optimizer' is required but missing (or, legacy style, "
        "top-level 'optimizer'); supported: " + join(supported_optimizers()));
  }
  const std::string name_key = new_style ? oc("optimizer") : "optimizer";
  const std::string given = config.get<std::string>(name_key);

  Resolved r;
  r.name = given;
  bool force_nesterov = false;
  if (legacy) {
    // Scenic's backwards compatibility with flax.optim names.
    if (given == "adam" && config.has(oc("weight_decay"))) r.name = "adamw";
    if (given == "momentum") {
      r.name = "sgd";
      if (!config.has(oc("momentum"))) r.momentum = 0.9;  // flax.optim's default
    }
    if (given == "nesterov") {
      r.name = "sgd";
      force_nesterov = true;
    }
  }

  const auto& supported = supported_optimizers();
  if (std::find(supported.begin(), supported.end(), r.name) == supported.end()) {
    const auto& later = known_optax_optimizers();
    if (std::find(later.begin(), later.end(), r.name) != later.end()) {
      throw Error("config key '" + name_key + "': optimizer '" + given +
                  "' is not supported yet; supported: " + join(supported));
    }
    std::vector<std::string> candidates = supported;
    if (legacy) candidates.insert(candidates.end(), {"momentum", "nesterov"});
    const std::string hint = common::closest_match(given, candidates);
    throw Error("config key '" + name_key + "': unknown optimizer '" + given + "'" +
                (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                "; supported: " + join(supported));
  }

  // Parts of Scenic's optax chain that are not implemented yet.
  // (Scenic copies a top-level grad_clip_configs only in legacy style; in new style it
  // stays unread and check_all_used reports it.)
  std::vector<std::string> unsupported = {oc("grad_clip"), oc("freeze_params_reg_exp")};
  if (legacy) unsupported.push_back("grad_clip_configs");
  for (const auto& key : unsupported) {
    if (!config.has(key)) continue;
    throw Error("config key '" + key + "' is not supported yet" +
                (key == oc("freeze_params_reg_exp")
                     ? std::string()
                     : "; use top-level 'max_grad_norm' for global-norm gradient clipping"));
  }

  // skip_scale_and_bias_regularization: in optimizer_configs, or (legacy) top-level,
  // which wins as Scenic copies it over.
  bool skip = config.get_optional<bool>(oc("skip_scale_and_bias_regularization")).value_or(false);
  if (legacy) {
    if (auto top = config.get_optional<bool>("skip_scale_and_bias_regularization")) skip = *top;
  }

  // Legacy configs may spell adam's arguments as flax.optim did.
  auto arg = [&](const std::string& optax_key, const std::string& legacy_key, double def) {
    if (legacy && config.has(oc(legacy_key))) {
      if (config.has(oc(optax_key))) {
        throw Error("config keys '" + oc(legacy_key) + "' and '" + oc(optax_key) +
                    "' are both set; they are the same argument");
      }
      return config.get<double>(oc(legacy_key));
    }
    return config.get<double>(oc(optax_key), def);
  };

  if (r.name == "sgd") {
    if (!r.momentum) r.momentum = config.get_optional<double>(oc("momentum"));
    // Legacy 'nesterov' forces the flag; read it anyway so it is not flagged unused.
    if (force_nesterov) {
      config.get_optional<bool>(oc("nesterov"));
      r.nesterov = true;
    } else {
      r.nesterov = config.get<bool>(oc("nesterov"), false);
    }
    if (r.momentum) check_range(oc("momentum"), *r.momentum, false);
    // optax.add_decayed_weights before the sgd transform (only when non-zero).
    r.weight_decay = config.get_optional<double>(oc("weight_decay")).value_or(0.0);
    r.mask_1d = skip && r.weight_decay != 0;
  } else {  // adam, adamw
    r.b1 = check_range(oc("b1"), arg("b1", "beta1", 0.9), true);
    r.b2 = check_range(oc("b2"), arg("b2", "beta2", 0.999), true);
    r.eps = check_range(oc("eps"), arg("eps", "epsilon", 1e-8), false);
    if (r.name == "adamw") {
      // Scenic builds the decay mask only when weight_decay is given and non-zero; with
      // optax's default (1e-4) every parameter is decayed, skip flag or not.
      const bool given_wd = config.has(oc("weight_decay"));
      r.weight_decay = config.get<double>(oc("weight_decay"), 1e-4);
      r.mask_1d = skip && given_wd && r.weight_decay != 0;
    }
  }
  check_range(oc("weight_decay"), r.weight_decay, false);
  return r;
}

// Options for one param group; `wd` is the group's weight decay.
std::unique_ptr<torch::optim::OptimizerOptions> options_for(const Resolved& r, double wd) {
  if (r.name == "sgd") {
    const double m = r.momentum.value_or(0.0);
    // optax's nesterov without a momentum trace is plain sgd; torch rejects that combo.
    return std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(0.0)
                                                          .momentum(m)
                                                          .nesterov(r.nesterov && m > 0)
                                                          .weight_decay(wd));
  }
  if (r.name == "adam") {
    return std::make_unique<torch::optim::AdamOptions>(
        torch::optim::AdamOptions(0.0).betas({r.b1, r.b2}).eps(r.eps).weight_decay(0));
  }
  return std::make_unique<torch::optim::AdamWOptions>(
      torch::optim::AdamWOptions(0.0).betas({r.b1, r.b2}).eps(r.eps).weight_decay(wd));
}

}  // namespace

const std::vector<std::string>& supported_optimizers() {
  static const std::vector<std::string> names = {"sgd", "adam", "adamw"};
  return names;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const common::ConfigDict& config,
                                                        const NamedParams& params) {
  const Resolved r = resolve(config);

  std::vector<torch::Tensor> decayed, not_decayed;
  for (const auto& [name, p] : params) {
    (r.mask_1d && p.dim() == 1 ? not_decayed : decayed).push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decayed.empty()) groups.emplace_back(decayed, options_for(r, r.weight_decay));
  if (!not_decayed.empty()) groups.emplace_back(not_decayed, options_for(r, 0.0));

  if (r.name == "sgd") {
    auto defaults = options_for(r, r.weight_decay);
    return std::make_unique<torch::optim::SGD>(
        groups, static_cast<torch::optim::SGDOptions&>(*defaults));
  }
  if (r.name == "adam") {
    auto defaults = options_for(r, 0.0);
    return std::make_unique<torch::optim::Adam>(
        groups, static_cast<torch::optim::AdamOptions&>(*defaults));
  }
  auto defaults = options_for(r, r.weight_decay);
  return std::make_unique<torch::optim::AdamW>(
      groups, static_cast<torch::optim::AdamWOptions&>(*defaults));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const common::ConfigDict& config,
    const torch::OrderedDict<std::string, torch::Tensor>& params) {
  NamedParams named;
  named.reserve(params.size());
  for (const auto& item : params) named.emplace_back(item.key(), item.value());
  return make_optimizer(config, named);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double learning_rate) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(learning_rate);
}

torch::Tensor global_norm(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> defined;
  bool any_double = false;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    defined.push_back(t);
    any_double = any_double || t.scalar_type() == torch::kDouble;
  }
  const auto dtype = any_double ? torch::kDouble : torch::kFloat;
  if (defined.empty()) return torch::zeros({}, torch::TensorOptions().dtype(dtype));
  torch::NoGradGuard no_grad;
  // One fused kernel per device/dtype bucket; the norm of the per-tensor norms is the
  // global norm and avoids squaring large values.
  std::vector<torch::Tensor> norms = at::_foreach_norm(defined, 2, dtype);
  return torch::linalg_vector_norm(torch::stack(norms), 2);
}

torch::Tensor clip_grad_global_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  }
  torch::Tensor norm = global_norm(grads);
  if (grads.empty()) return norm;
  torch::NoGradGuard no_grad;
  // jnp.where(norm < max_norm, g, g * (max_norm / norm)), computed on the device.
  const torch::Tensor scale =
      torch::where(norm < max_norm, torch::ones_like(norm), max_norm / norm);
  at::_foreach_mul_(grads, scale);
  return norm;
}

}  // namespace scenic::train
