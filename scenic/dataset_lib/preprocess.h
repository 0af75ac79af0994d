// Preprocessing chains built from a string, like Scenic's big_transfer / big_vision `pp`
// DSL: "decode|inception_crop(224)|flip_lr|value_range(-1, 1)".
//
// A chain is a list of ops applied in order to one Example (example.h). Each op gets the
// per-example random generator, so a chain's randomness depends only on the seed the
// pipeline derives for that example (never on threads or timing). Ops are looked up by
// name in a registry; transforms.cc registers the built-in ones and projects may add
// theirs. Grammar: ops separated by '|'; an op is `name` or `name(args)`; args are
// comma-separated numbers, quoted strings ('bicubic' or "bicubic"), tuples of numbers in
// parentheses or brackets, or `key=value` pairs. Unknown ops and bad arguments throw
// scenic::Error naming the op and its position in the spec.
#pragma once

#include <functional>
#include <map>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "scenic/common_lib/registry.h"
#include "scenic/dataset_lib/example.h"

namespace scenic::dataset {

using Rng = std::mt19937_64;

// One parsed argument: a number, a string, or a tuple of numbers.
using PpValue = std::variant<double, std::string, std::vector<double>>;

// The arguments of one op occurrence, with typed getters whose errors name the op.
class PpArgs {
 public:
  std::string op;                          // op name, for messages
  std::string where;                       // "op 2 of 'decode|...'", for messages
  std::vector<PpValue> positional;
  std::map<std::string, PpValue> named;

  size_t size() const { return positional.size(); }
  // Positional argument i, or the named one `key` when given by name; `fallback` when
  // absent (the getters without a fallback throw if the argument is missing).
  double number(size_t i, const std::string& key) const;
  double number(size_t i, const std::string& key, double fallback) const;
  std::string string(size_t i, const std::string& key, const std::string& fallback) const;
  std::vector<double> numbers(size_t i, const std::string& key) const;  // tuple or one number
  // Throws if more than `max_positional` positional args or a named arg not in `allowed`.
  void check(size_t max_positional, const std::vector<std::string>& allowed) const;
};

using PreprocessOp = std::function<void(Example&, Rng&)>;
using PreprocessOpBuilder = std::function<PreprocessOp(const PpArgs&)>;

class PreprocessRegistry : public common::Registry<PreprocessOpBuilder> {
 public:
  PreprocessRegistry() : Registry("preprocessing op") {}
  // With the built-in ops of transforms.cc registered on first use.
  static PreprocessRegistry& global();
};

// Registers the built-in ops (transforms.cc).
void register_builtin_preprocess_ops(PreprocessRegistry& registry);

class PreprocessChain {
 public:
  PreprocessChain() = default;
  // Parses `spec` against `registry`; an empty spec is the identity.
  static PreprocessChain parse(const std::string& spec,
                               const PreprocessRegistry& registry = PreprocessRegistry::global());
  void operator()(Example& example, Rng& rng) const {
    for (const auto& op : ops_) op(example, rng);
  }
  bool empty() const { return ops_.empty(); }
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::vector<PreprocessOp> ops_;
};

}  // namespace scenic::dataset
