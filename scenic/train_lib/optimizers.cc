#include "scenic/train_lib/optimizers.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>

#include <algorithm>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "scenic/common_lib/errors.h"
#include "scenic/train_lib/extra_optimizers.h"
#include "scenic/train_lib/fused_adamw.h"
#include "scenic/train_lib/grad_clipping.h"

namespace scenic::train {
namespace {

using common::ConfigDict;

const char* const kOc = "optimizer_configs.";

std::string oc(const std::string& key) { return kOc + key; }

// Optax optimizers Scenic configs may name that we do not implement yet; naming
// them gets a "not supported yet" error rather than "unknown".
const std::vector<std::string>& known_optax_optimizers() {
  static const std::vector<std::string> names = {
      "adabelief", "adagrad", "adadelta", "adamax",    "adamaxw", "fromage", "lars",
      "lion",      "momentum_hp", "noisy_sgd", "novograd", "radam", "sm3", "yogi"};
  return names;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The lr multiplier rides on a group's options: `GroupOptions<torch::optim::AdamOptions>`
// is AdamOptions (what the optimizer's step casts to) plus the multiplier. clone() keeps
// the type, and torch's optimizer load assigns only the base part, so the multiplier
// set from the config survives a checkpoint restore.
class LrMultiplier {
 public:
  virtual ~LrMultiplier() = default;
  double multiplier = 1.0;
};

template <typename Options>
class GroupOptions : public Options, public LrMultiplier {
 public:
  GroupOptions(const Options& options, double m) : Options(options) { multiplier = m; }

 private:
  std::unique_ptr<torch::optim::OptimizerOptions> clone() const override {
    return std::make_unique<GroupOptions>(*this);
  }
};

// The optimizer after Scenic's get_optax_optimizer_config, with its arguments read.
struct Resolved {
  std::string name;                 // optax name, one of supported_optimizers()
  std::optional<double> momentum;   // sgd, rmsprop; none -> no momentum trace
  bool nesterov = false;            // sgd, rmsprop
  double b1 = 0.9, b2 = 0.999, eps = 1e-8;  // adam, adamw, lamb (eps also adafactor, rmsprop)
  double eps_root = 0;              // lamb
  double weight_decay = 0;          // sgd: coupled; adamw, lamb: decoupled; adafactor's rate
  bool mask_1d = false;             // 1-D params get no weight decay
  AdafactorOptions adafactor{0.0};
  RmsPropOptions rmsprop{0.0};
  std::optional<GradClip> grad_clip;
};

// torch::optim checks these ranges with TORCH_CHECK; say it with the config key instead.
double check_range(const std::string& path, double v, bool below_one) {
  if (v >= 0 && (!below_one || v < 1)) return v;
  std::ostringstream ss;
  ss << "config key '" << path << "' must be " << (below_one ? "in [0, 1)" : ">= 0") << ", got "
     << v;
  throw Error(ss.str());
}

// optax's Optional arguments: an absent key takes the default, an explicit `null` is None.
std::optional<double> optional_arg(const ConfigDict& config, const std::string& key,
                                   std::optional<double> def) {
  if (config.has(oc(key))) return config.get<double>(oc(key));
  if (config.has("optimizer_configs")) {
    const auto keys = config.sub("optimizer_configs").keys();
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      config.mark_used(oc(key));
      return std::nullopt;
    }
  }
  if (def) return config.get<double>(oc(key), *def);  // records the default
  return config.get_optional<double>(oc(key));
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

  // Scenic copies a top-level grad_clip_configs only in legacy style (over any
  // optimizer_configs.grad_clip); in new style it stays unread and check_all_used
  // reports it.
  r.grad_clip = read_grad_clip(
      config, legacy && config.has("grad_clip_configs") ? "grad_clip_configs" : oc("grad_clip"));

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
  auto unsupported = [&](const std::string& key) {
    if (config.has(oc(key)))
      throw Error("config key '" + oc(key) + "' is not supported by our " + r.name);
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
  } else if (r.name == "adam" || r.name == "adamw" || r.name == "lamb") {
    const bool lamb = r.name == "lamb";
    r.b1 = check_range(oc("b1"), arg("b1", "beta1", 0.9), true);
    r.b2 = check_range(oc("b2"), arg("b2", "beta2", 0.999), true);
    r.eps = check_range(oc("eps"), arg("eps", "epsilon", lamb ? 1e-6 : 1e-8), false);
    if (lamb) r.eps_root = check_range(oc("eps_root"), config.get<double>(oc("eps_root"), 0.0), false);
    if (r.name != "adam") {
      // Scenic builds the decay mask only when weight_decay is given and non-zero; with
      // adamw's default (1e-4) every parameter is decayed, skip flag or not.
      const bool given_wd = config.has(oc("weight_decay"));
      r.weight_decay = config.get<double>(oc("weight_decay"), lamb ? 0.0 : 1e-4);
      r.mask_1d = skip && given_wd && r.weight_decay != 0;
    }
  } else if (r.name == "adafactor") {
    unsupported("decay_offset");
    unsupported("dtype_momentum");
    auto& a = r.adafactor;
    a.min_dim_size_to_factor(config.get<int64_t>(oc("min_dim_size_to_factor"), 128));
    a.decay_rate(check_range(oc("decay_rate"), config.get<double>(oc("decay_rate"), 0.8), false));
    a.multiply_by_parameter_scale(config.get<bool>(oc("multiply_by_parameter_scale"), true));
    a.clipping_threshold(optional_arg(config, "clipping_threshold", 1.0));
    a.momentum(optional_arg(config, "momentum", std::nullopt));
    a.weight_decay_rate(optional_arg(config, "weight_decay_rate", std::nullopt));
    a.eps(check_range(oc("eps"), arg("eps", "epsilon", 1e-30), false));
    a.factored(config.get<bool>(oc("factored"), true));
    if (a.momentum()) check_range(oc("momentum"), *a.momentum(), false);
    if (a.clipping_threshold()) check_range(oc("clipping_threshold"), *a.clipping_threshold(), false);
    r.weight_decay = check_range(oc("weight_decay_rate"), a.weight_decay_rate().value_or(0.0), false);
    r.mask_1d = skip && r.weight_decay != 0;
  } else {  // rmsprop
    auto& o = r.rmsprop;
    o.decay(check_range(oc("decay"), config.get<double>(oc("decay"), 0.9), true));
    o.eps(check_range(oc("eps"), arg("eps", "epsilon", 1e-8), false));
    o.initial_scale(check_range(oc("initial_scale"), config.get<double>(oc("initial_scale"), 0.0), false));
    o.eps_in_sqrt(config.get<bool>(oc("eps_in_sqrt"), true));
    o.centered(config.get<bool>(oc("centered"), false));
    o.momentum(optional_arg(config, "momentum", std::nullopt));
    if (o.momentum()) check_range(oc("momentum"), *o.momentum(), false);
    o.nesterov(config.get<bool>(oc("nesterov"), false));
    o.bias_correction(config.get<bool>(oc("bias_correction"), false));
  }
  check_range(oc("weight_decay"), r.weight_decay, false);
  return r;
}

// Options for one param group: `wd` is the group's weight decay, `m` its lr multiplier.
std::unique_ptr<torch::optim::OptimizerOptions> options_for(const Resolved& r, double wd,
                                                            double m) {
  namespace optim = torch::optim;
  if (r.name == "sgd") {
    const double mom = r.momentum.value_or(0.0);
    // optax's nesterov without a momentum trace is plain sgd; torch rejects that combo.
    return std::make_unique<GroupOptions<optim::SGDOptions>>(
        optim::SGDOptions(0.0).momentum(mom).nesterov(r.nesterov && mom > 0).weight_decay(wd), m);
  }
  if (r.name == "adam") {
    return std::make_unique<GroupOptions<optim::AdamOptions>>(
        optim::AdamOptions(0.0).betas({r.b1, r.b2}).eps(r.eps).weight_decay(0), m);
  }
  if (r.name == "adamw") {
    return std::make_unique<GroupOptions<optim::AdamWOptions>>(
        optim::AdamWOptions(0.0).betas({r.b1, r.b2}).eps(r.eps).weight_decay(wd), m);
  }
  if (r.name == "lamb") {
    return std::make_unique<GroupOptions<LambOptions>>(
        LambOptions(0.0).b1(r.b1).b2(r.b2).eps(r.eps).eps_root(r.eps_root).weight_decay(wd), m);
  }
  if (r.name == "adafactor") {
    AdafactorOptions a = r.adafactor;
    a.weight_decay_rate(wd != 0 ? std::optional<double>(wd) : std::nullopt);
    return std::make_unique<GroupOptions<AdafactorOptions>>(a, m);
  }
  return std::make_unique<GroupOptions<RmsPropOptions>>(r.rmsprop, m);
}

template <typename Base, typename Options>
std::unique_ptr<torch::optim::Optimizer> build(
    const std::vector<torch::optim::OptimizerParamGroup>& groups, const Options& defaults,
    const std::optional<GradClip>& clip, CoupledDecay decay) {
  if (clip) return std::make_unique<WithGradClip<Base>>(*clip, std::move(decay), groups, defaults);
  return std::make_unique<Base>(groups, defaults);
}

// Our parameter names are `a.b.c`; Scenic's regexes are written for `a/b/c`.
bool name_matches(const std::regex& re, const std::string& name) {
  std::string slashed = name;
  std::replace(slashed.begin(), slashed.end(), '.', '/');
  return std::regex_search(name, re) || std::regex_search(slashed, re);
}

std::regex compile(const std::string& key, const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw Error("config key '" + key + "': invalid regular expression '" + pattern + "': " + e.what());
  }
}

struct LrGroup {
  std::regex re;
  double multiplier;
};

// `optimizer_configs.param_groups`, checked by hand (ConfigDict has no list-of-mapping access).
std::vector<LrGroup> read_lr_groups(const ConfigDict& config) {
  const std::string key = oc("param_groups");
  if (!config.has(key)) return {};
  const auto& list = config.json(key);
  if (!list.is_array()) throw Error("config key '" + key + "' must be a list of {regex, lr_multiplier}");
  std::vector<LrGroup> groups;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = key + "[" + std::to_string(i) + "]";
    const auto& item = list[i];
    if (!item.is_object()) throw Error("config key '" + at + "' must be a mapping {regex, lr_multiplier}");
    for (const auto& [k, v] : item.items()) {
      if (k != "regex" && k != "lr_multiplier")
        throw Error("config key '" + at + "." + k + "' is unknown; entries take 'regex' and 'lr_multiplier'");
    }
    if (!item.contains("regex") || !item["regex"].is_string())
      throw Error("config key '" + at + ".regex' is required and must be a string");
    if (!item.contains("lr_multiplier") || !item["lr_multiplier"].is_number())
      throw Error("config key '" + at + ".lr_multiplier' is required and must be a number");
    const double m = item["lr_multiplier"].get<double>();
    check_range(at + ".lr_multiplier", m, false);
    groups.push_back({compile(at + ".regex", item["regex"].get<std::string>()), m});
  }
  return groups;
}

}  // namespace

const std::vector<std::string>& supported_optimizers() {
  static const std::vector<std::string> names = {"sgd",  "adam",      "adamw",
                                                 "lamb", "adafactor", "rmsprop"};
  return names;
}

std::vector<std::string> frozen_parameters(const common::ConfigDict& config,
                                           const NamedParams& params) {
  const std::string key = oc("freeze_params_reg_exp");
  const auto pattern = config.get_optional<std::string>(key);
  if (!pattern) return {};
  const std::regex re = compile(key, *pattern);
  std::vector<std::string> frozen;
  for (const auto& [name, p] : params)
    if (name_matches(re, name)) frozen.push_back(name);
  if (!params.empty() && frozen.size() == params.size()) {
    throw Error("config key '" + key + "': '" + *pattern +
                "' matches every parameter, which prevents any training");
  }
  return frozen;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const common::ConfigDict& config,
                                                        const NamedParams& params) {
  const Resolved r = resolve(config);
  const std::vector<std::string> frozen_names = frozen_parameters(config, params);
  const std::set<std::string> frozen(frozen_names.begin(), frozen_names.end());
  const std::vector<LrGroup> lr_groups = read_lr_groups(config);

  // Scenic adds sgd's coupled decay before the clip; torch's SGD adds it after we clip,
  // so with a clip the decay moves into WithGradClip.
  const bool decay_before_clip = r.name == "sgd" && r.grad_clip && r.weight_decay != 0;

  // Bucket: 2 x (lr group index + 1) + (decayed ? 0 : 1).
  std::vector<std::vector<torch::Tensor>> buckets(2 * (lr_groups.size() + 1));
  std::vector<size_t> matches(lr_groups.size(), 0);
  CoupledDecay decay;
  for (const auto& [name, p] : params) {
    size_t g = 0;
    for (size_t i = 0; i < lr_groups.size(); ++i) {
      if (name_matches(lr_groups[i].re, name)) {
        ++matches[i];
        g = i + 1;
        break;
      }
    }
    if (frozen.count(name)) {
      p.requires_grad_(false);
      continue;
    }
    const bool decayed = !(r.mask_1d && p.dim() == 1);
    buckets[2 * g + (decayed ? 0 : 1)].push_back(p);
    if (decay_before_clip && decayed) decay.emplace_back(p, r.weight_decay);
  }
  for (size_t i = 0; i < lr_groups.size(); ++i) {
    if (matches[i] == 0)
      throw Error("config key '" + oc("param_groups") + "[" + std::to_string(i) +
                  "].regex' matches no parameter (names look like '" +
                  (params.empty() ? std::string() : params.front().first) + "')");
  }

  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t b = 0; b < buckets.size(); ++b) {
    if (buckets[b].empty()) continue;
    const double m = b < 2 ? 1.0 : lr_groups[b / 2 - 1].multiplier;
    const double wd = (b % 2 == 1 || decay_before_clip) ? 0.0 : r.weight_decay;
    groups.emplace_back(buckets[b], options_for(r, wd, m));
  }

  auto defaults = options_for(r, r.weight_decay, 1.0);
  namespace optim = torch::optim;
  if (r.name == "sgd")
    return build<optim::SGD>(groups, static_cast<optim::SGDOptions&>(*defaults), r.grad_clip,
                             std::move(decay));
  if (r.name == "adam")
    return build<optim::Adam>(groups, static_cast<optim::AdamOptions&>(*defaults), r.grad_clip, {});
  if (r.name == "adamw")
    return build<FusedAdamW>(groups, static_cast<optim::AdamWOptions&>(*defaults), r.grad_clip, {});
  if (r.name == "lamb")
    return build<Lamb>(groups, static_cast<LambOptions&>(*defaults), r.grad_clip, {});
  if (r.name == "adafactor")
    return build<Adafactor>(groups, static_cast<AdafactorOptions&>(*defaults), r.grad_clip, {});
  return build<RmsProp>(groups, static_cast<RmsPropOptions&>(*defaults), r.grad_clip, {});
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(
    const common::ConfigDict& config,
    const torch::OrderedDict<std::string, torch::Tensor>& params) {
  NamedParams named;
  named.reserve(params.size());
  for (const auto& item : params) named.emplace_back(item.key(), item.value());
  return make_optimizer(config, named);
}

double lr_multiplier(const torch::optim::OptimizerOptions& options) {
  const auto* m = dynamic_cast<const LrMultiplier*>(&options);
  return m ? m->multiplier : 1.0;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double learning_rate) {
  for (auto& group : optimizer.param_groups())
    group.options().set_lr(learning_rate * lr_multiplier(group.options()));
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

std::vector<torch::Tensor> grads_of(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

torch::Tensor clip_grad_global_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  const auto grads = grads_of(params);
  torch::Tensor norm = global_norm(grads);
  if (grads.empty()) return norm;
  torch::NoGradGuard no_grad;
  // jnp.where(norm < max_norm, g, g * (max_norm / norm)), computed on the device.
  const torch::Tensor scale =
      torch::where(norm < max_norm, torch::ones_like(norm), max_norm / norm);
  at::_foreach_mul_(grads, scale);
  return norm;
}

torch::Tensor clip_or_measure_grads(const std::vector<torch::Tensor>& params, const std::optional<double>& max_norm) {
  return max_norm ? clip_grad_global_norm(params, *max_norm) : global_norm(grads_of(params));
}

}  // namespace scenic::train
