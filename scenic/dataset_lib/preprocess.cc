// The pp-string parser (preprocess.h): "decode|resize(224, method='bicubic')|flip_lr".
//
// Mirrors big_transfer's builder.get_preprocess_fn, which splits on '|' and parses each
// op as a Python call with `ast`. We accept the subset real specs use: numbers (with
// sign and exponent), quoted strings, tuples/lists of numbers, True/False, and
// key=value pairs. Every error names the op, its position and the whole spec.
#include "scenic/dataset_lib/preprocess.h"

#include <cctype>
#include <cstdlib>
#include <set>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {

namespace {

std::string kind_of(const PpValue& v) {
  if (std::holds_alternative<double>(v)) return "a number";
  if (std::holds_alternative<std::string>(v)) return "a string";
  return "a tuple";
}

// Recursive-descent scanner over one op's text, e.g. "resize(224, method='bilinear')".
class OpParser {
 public:
  OpParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  PpArgs parse() {
    PpArgs args;
    args.where = where_;
    skip_ws();
    size_t start = pos_;
    while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) ||
                                s_[pos_] == '_' || s_[pos_] == '.')) {
      ++pos_;
    }
    args.op = s_.substr(start, pos_ - start);
    if (args.op.empty()) fail("expected an op name");
    skip_ws();
    if (pos_ == s_.size()) return args;
    expect('(');
    skip_ws();
    if (peek() != ')') {
      while (true) {
        parse_arg(args);
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          skip_ws();
          if (peek() == ')') break;  // trailing comma, as Python allows
          continue;
        }
        break;
      }
    }
    expect(')');
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after ')'");
    return args;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("bad preprocessing spec at " + where_ + ": " + what + " at character " +
                std::to_string(pos_) + " of '" + s_ + "'");
  }
  void expect(char c) {
    if (peek() != c) fail(c == '(' ? "expected '('" : "expected ')'");
    ++pos_;
  }

  void parse_arg(PpArgs& args) {
    // key=value?
    size_t save = pos_;
    if (std::isalpha(static_cast<unsigned char>(peek())) || peek() == '_') {
      size_t start = pos_;
      while (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_') ++pos_;
      std::string key = s_.substr(start, pos_ - start);
      skip_ws();
      if (peek() == '=') {
        ++pos_;
        skip_ws();
        if (args.named.count(key)) fail("argument '" + key + "' given twice");
        args.named.emplace(key, parse_value());
        return;
      }
      pos_ = save;
    }
    if (!args.named.empty()) fail("positional argument after a keyword argument");
    args.positional.push_back(parse_value());
  }

  PpValue parse_value() {
    char c = peek();
    if (c == '\'' || c == '"') return parse_string();
    if (c == '(' || c == '[') {
      char close = c == '(' ? ')' : ']';
      ++pos_;
      std::vector<double> out;
      skip_ws();
      while (peek() != close) {
        out.push_back(parse_number());
        skip_ws();
        if (peek() == ',') {
          ++pos_;
          skip_ws();
        } else if (peek() != close) {
          fail(close == ')' ? "expected ',' or ')' in a tuple" : "expected ',' or ']' in a list");
        }
      }
      ++pos_;
      return out;
    }
    return parse_number();
  }

  std::string parse_string() {
    char quote = s_[pos_++];
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != quote) ++pos_;
    if (pos_ == s_.size()) fail("unterminated string");
    return s_.substr(start, pos_++ - start);
  }

  double parse_number() {
    // Python's booleans, as in `value_range(-1, 1, clip_values=True)`.
    for (const auto& [word, value] : {std::pair{"True", 1.0}, std::pair{"False", 0.0}}) {
      size_t n = std::char_traits<char>::length(word);
      if (s_.compare(pos_, n, word) == 0 &&
          !(pos_ + n < s_.size() &&
            (std::isalnum(static_cast<unsigned char>(s_[pos_ + n])) || s_[pos_ + n] == '_'))) {
        pos_ += n;
        return value;
      }
    }
    const char* begin = s_.c_str() + pos_;
    char* end = nullptr;
    double v = std::strtod(begin, &end);
    if (end == begin) fail("expected a number, a quoted string or a tuple");
    // strtod accepts "inf"/"nan"/hex; reject anything that is not a plain decimal.
    for (const char* p = begin; p < end; ++p) {
      if (!(std::isdigit(static_cast<unsigned char>(*p)) || *p == '.' || *p == '-' ||
            *p == '+' || *p == 'e' || *p == 'E')) {
        fail("expected a number, a quoted string or a tuple");
      }
    }
    pos_ += static_cast<size_t>(end - begin);
    return v;
  }

  const std::string& s_;
  std::string where_;
  size_t pos_ = 0;
};

// Splits on '|' outside quotes and brackets.
std::vector<std::string> split_ops(const std::string& spec) {
  std::vector<std::string> out;
  std::string cur;
  int depth = 0;
  char quote = 0;
  for (char c : spec) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '(' || c == '[') {
      ++depth;
    } else if (c == ')' || c == ']') {
      --depth;
    } else if (c == '|' && depth == 0) {
      out.push_back(cur);
      cur.clear();
      continue;
    }
    cur += c;
  }
  out.push_back(cur);
  return out;
}

bool blank(const std::string& s) {
  for (char c : s) {
    if (!std::isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

// ---- PpArgs ----------------------------------------------------------------------------

namespace {

const PpValue* find_arg(const PpArgs& a, size_t i, const std::string& key) {
  auto it = a.named.find(key);
  if (i < a.positional.size()) {
    if (it != a.named.end()) {
      throw Error(a.where + ": argument '" + key + "' given both by position and by name");
    }
    return &a.positional[i];
  }
  return it == a.named.end() ? nullptr : &it->second;
}

[[noreturn]] void wrong_type(const PpArgs& a, const std::string& key, const std::string& want,
                             const PpValue& got) {
  throw Error(a.where + ": argument '" + key + "' must be " + want + ", got " + kind_of(got));
}

}  // namespace

double PpArgs::number(size_t i, const std::string& key) const {
  const PpValue* v = find_arg(*this, i, key);
  if (!v) throw Error(where + ": missing argument '" + key + "'");
  if (!std::holds_alternative<double>(*v)) wrong_type(*this, key, "a number", *v);
  return std::get<double>(*v);
}

double PpArgs::number(size_t i, const std::string& key, double fallback) const {
  const PpValue* v = find_arg(*this, i, key);
  if (!v) return fallback;
  if (!std::holds_alternative<double>(*v)) wrong_type(*this, key, "a number", *v);
  return std::get<double>(*v);
}

std::string PpArgs::string(size_t i, const std::string& key, const std::string& fallback) const {
  const PpValue* v = find_arg(*this, i, key);
  if (!v) return fallback;
  if (!std::holds_alternative<std::string>(*v)) wrong_type(*this, key, "a quoted string", *v);
  return std::get<std::string>(*v);
}

std::vector<double> PpArgs::numbers(size_t i, const std::string& key) const {
  const PpValue* v = find_arg(*this, i, key);
  if (!v) throw Error(where + ": missing argument '" + key + "'");
  if (std::holds_alternative<double>(*v)) return {std::get<double>(*v)};
  if (std::holds_alternative<std::string>(*v)) wrong_type(*this, key, "a number or a tuple", *v);
  return std::get<std::vector<double>>(*v);
}

void PpArgs::check(size_t max_positional, const std::vector<std::string>& allowed) const {
  if (positional.size() > max_positional) {
    throw Error(where + ": takes at most " + std::to_string(max_positional) +
                " positional argument(s), got " + std::to_string(positional.size()));
  }
  std::set<std::string> ok(allowed.begin(), allowed.end());
  for (const auto& [key, _] : named) {
    if (!ok.count(key)) {
      std::string hint = common::closest_match(key, allowed);
      throw Error(where + ": unknown argument '" + key + "'" +
                  (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
  }
}

// ---- registry and chain ------------------------------------------------------------------

PreprocessRegistry& PreprocessRegistry::global() {
  static PreprocessRegistry* registry = [] {
    auto* r = new PreprocessRegistry();
    register_builtin_preprocess_ops(*r);
    return r;
  }();
  return *registry;
}

PreprocessChain PreprocessChain::parse(const std::string& spec,
                                       const PreprocessRegistry& registry) {
  PreprocessChain chain;
  chain.spec_ = spec;
  if (blank(spec)) return chain;
  std::vector<std::string> parts = split_ops(spec);
  for (size_t k = 0; k < parts.size(); ++k) {
    std::string where = "op " + std::to_string(k + 1) + " of '" + spec + "'";
    if (blank(parts[k])) throw Error("bad preprocessing spec: empty " + where);
    PpArgs args = OpParser(parts[k], where).parse();
    args.where = "preprocessing op '" + args.op + "' (" + where + ")";
    const PreprocessOpBuilder* builder = nullptr;
    try {
      builder = &registry.get(args.op);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " [" + where + "]");
    }
    chain.ops_.push_back((*builder)(args));
  }
  return chain;
}

}  // namespace scenic::dataset
