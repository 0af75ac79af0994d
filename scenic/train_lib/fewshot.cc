#include "scenic/train_lib/fewshot.h"

#include <torch/torch.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {

Whitening whitening_of(const torch::Tensor& x, double stddev_constant) {
  if (x.dim() != 2 || x.size(0) == 0) throw Error("few-shot features must be [N > 0, D], got " + c10::str(x.sizes()));
  auto x64 = x.to(torch::kFloat64);
  // jnp.std: the population std (ddof 0).
  return {x64.mean(0, /*keepdim=*/true), x64.std(0, /*unbiased=*/false, /*keepdim=*/true) + stddev_constant};
}

torch::Tensor whiten_with_bias(const torch::Tensor& x, const Whitening& w) {
  auto z = (x.to(torch::kFloat64) - w.mean) / w.std;                           // [N, D]
  return torch::cat({z, torch::full({z.size(0), 1}, kFewShotBiasConstant, z.options())}, 1);  // [N, D + 1]
}

torch::Tensor ridge_regression(const torch::Tensor& x_whitened, const torch::Tensor& labels, int64_t num_classes,
                               double l2_reg) {
  auto x = x_whitened.to(torch::kFloat64);
  auto classes = torch::arange(num_classes, torch::kLong);
  auto y = 2.0 * (labels.to(torch::kLong).unsqueeze(1) == classes).to(torch::kFloat64) - 1.0;  // [N, K]
  auto xt = x.t();
  auto a = xt.mm(x) + l2_reg * torch::eye(x.size(1), x.options());  // [D + 1, D + 1]
  return torch::linalg_solve(a, xt.mm(y));                          // [D + 1, K]
}

double fewshot_accuracy(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& x_test,
                        const torch::Tensor& labels_test, double l2_reg, int64_t num_classes) {
  if (x_test.size(0) == 0) throw Error("few-shot evaluation has no test examples");
  const auto w = whitening_of(x);
  auto weights = ridge_regression(whiten_with_bias(x, w), labels, num_classes, l2_reg);
  auto preds = whiten_with_bias(x_test, w).mm(weights).argmax(1);  // [M]
  return preds.eq(labels_test.to(torch::kLong)).to(torch::kFloat64).mean().item<double>();
}

torch::Tensor fewshot_indices(const torch::Tensor& labels, int64_t num_classes, int64_t shots) {
  auto l = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* p = l.data_ptr<int64_t>();
  std::vector<int64_t> out;
  for (int64_t c = 0; c < num_classes; ++c) {
    int64_t taken = 0;
    for (int64_t i = 0; i < l.numel() && taken < shots; ++i)
      if (p[i] == c) {
        out.push_back(i);
        ++taken;
      }
  }
  return torch::tensor(out, torch::kLong);
}

std::map<int64_t, double> best_l2_by_mean_rank(const FewShotResults& results, const std::vector<int64_t>& shots,
                                               const std::vector<double>& l2_regs) {
  std::map<int64_t, double> best;
  const size_t n = l2_regs.size();
  for (int64_t s : shots) {
    std::vector<double> rank_sum(n, 0.0);
    for (const auto& [name, res] : results) {
      // np.argsort(np.argsort(accs)): each l2's rank among this dataset's accuracies.
      std::vector<size_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return res.at({s, l2_regs[a]}) < res.at({s, l2_regs[b]}); });
      for (size_t r = 0; r < n; ++r) rank_sum[order[r]] += static_cast<double>(r);
    }
    best[s] = l2_regs[std::max_element(rank_sum.begin(), rank_sum.end()) - rank_sum.begin()];
  }
  return best;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits and the decimal exponent, from the scientific form.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  const bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  const auto e_pos = sci.find('e');
  const int exp = std::stoi(sci.substr(e_pos + 1));
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    char e[16];
    std::snprintf(e, sizeof(e), "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  } else if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    const size_t int_len = static_cast<size_t>(exp) + 1;
    if (digits.size() <= int_len) {
      out = digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return negative ? "-" + out : out;
}

std::map<std::string, double> fewshot_summary(const FewShotResults& results, const std::vector<int64_t>& shots,
                                              const std::vector<double>& l2_regs,
                                              const std::optional<std::pair<std::string, int64_t>>& walk_first) {
  std::map<std::string, double> scalars;
  for (const auto& [name, res] : results)
    for (const auto& [key, acc] : res)
      scalars["zz/" + name + "_" + std::to_string(key.first) + "shot_l2=" + python_float_repr(key.second)] = acc;
  const auto best = best_l2_by_mean_rank(results, shots, l2_regs);
  for (const auto& [s, l2] : best) {
    scalars["z/best_l2_for_" + std::to_string(s) + "shot_image_eval"] = l2;
    for (const auto& [name, res] : results) scalars["z/" + name + "_" + std::to_string(s) + "shot"] = res.at({s, l2});
  }
  if (walk_first) {
    const auto& [name, s] = *walk_first;
    auto ds = results.find(name);
    if (ds == results.end() || !best.count(s))
      throw Error("config key 'fewshot.walk_first': no few-shot result for dataset '" + name + "' with " +
                  std::to_string(s) + " shots");
    scalars["a/" + name + "_" + std::to_string(s) + "shot"] = ds->second.at({s, best.at(s)});
  }
  return scalars;
}

// ---- Representations. ----

Representations compute_representations(model::Network& network, dataset::BatchIterator& it,
                                        const torch::Device& device, int64_t max_examples,
                                        const std::function<bool(const std::vector<int64_t>&)>& stop) {
  torch::NoGradGuard no_grad;
  network.eval();
  std::vector<torch::Tensor> features;
  std::vector<int64_t> labels;
  while (auto batch = it.next()) {
    const auto& b = *batch;
    auto label = b.at("label");
    if (label.dim() == 2) label = label.argmax(1);  // one-hot single-label targets
    if (label.dim() != 1)
      throw Error("few-shot / linear-probe evaluation needs class labels [B] (or one-hot [B, K]), got " +
                  c10::str(b.at("label").sizes()));
    auto mask = b.count("batch_mask") ? b.at("batch_mask").to(torch::kCPU) : torch::ones({label.size(0)});
    if (mask.dim() != 1) throw Error("few-shot / linear-probe evaluation needs an example mask [B]");
    auto keep = mask.gt(0).nonzero().flatten();
    auto f = network.representation(b.at("inputs").to(device));  // [B, D]
    if (f.dim() != 2) throw Error("representation() must return [B, D], got " + c10::str(f.sizes()));
    f = f.to(torch::kCPU, torch::kFloat64).index_select(0, keep);
    auto l = label.to(torch::kCPU, torch::kLong).index_select(0, keep).contiguous();
    int64_t take = l.numel();
    if (max_examples > 0) take = std::min<int64_t>(take, max_examples - static_cast<int64_t>(labels.size()));
    features.push_back(f.slice(0, 0, take));
    labels.insert(labels.end(), l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + take);
    if (max_examples > 0 && static_cast<int64_t>(labels.size()) >= max_examples) break;
    if (stop && stop(labels)) break;
  }
  if (features.empty()) throw Error("few-shot / linear-probe evaluation: the split yielded no examples");
  return {torch::cat(features), torch::tensor(labels, torch::kLong)};
}

std::vector<TransferDataset> read_transfer_datasets(const common::ConfigDict& config, const std::string& section,
                                                    const std::shared_ptr<dataset::Dataset>& run_dataset) {
  const std::string run_name = config.get<std::string>("dataset_name");
  std::vector<TransferDataset> out;
  if (!config.has(section + ".datasets")) {
    out.push_back({run_name, "train", "test", run_dataset});
    return out;
  }
  const auto datasets = config.sub(section + ".datasets");
  for (const auto& name : datasets.keys()) {
    const auto entry = datasets.sub(name);
    TransferDataset ds;
    ds.name = name;
    ds.train_split = entry.get<std::string>("train_split", "train");
    ds.test_split = entry.get<std::string>("test_split", "test");
    const auto dataset_name = entry.get<std::string>("dataset_name", run_name);
    if (dataset_name == run_name && !entry.has("dataset_configs")) {
      ds.dataset = run_dataset;
    } else {
      dataset::DatasetOptions opts;
      const int64_t bs = config.get<int64_t>(
          section + ".batch_size", config.get<int64_t>("eval_batch_size", config.get<int64_t>("batch_size")));
      opts.batch_size = opts.eval_batch_size = bs;
      opts.shuffle_seed = static_cast<uint64_t>(config.get<int64_t>("rng_seed", 0));
      opts.dataset_configs = entry.sub("dataset_configs");
      ds.dataset = dataset::DatasetRegistry::global().build(dataset_name, opts);
    }
    out.push_back(std::move(ds));
  }
  if (out.empty()) throw Error("config key '" + section + ".datasets' is empty");
  return out;
}

Representations split_representations(model::Network& network, const TransferDataset& ds, const std::string& split,
                                      const torch::Device& device, int64_t max_examples,
                                      const std::function<bool(const std::vector<int64_t>&)>& stop) {
  if (split != "train") {
    auto it = ds.dataset->eval_iter(split);
    return compute_representations(network, *it, device, max_examples, stop);
  }
  // The training stream is infinite: one epoch at most.
  const int64_t epoch = ds.dataset->meta_data.num_train_examples;
  if (epoch <= 0 && max_examples <= 0 && !stop)
    throw Error("transfer dataset '" + ds.name + "': the train split's size is unknown; use another split");
  const int64_t cap = max_examples > 0 && epoch > 0 ? std::min(max_examples, epoch) : std::max(max_examples, epoch);
  auto it = ds.dataset->train_iter(0);
  return compute_representations(network, *it, device, cap, stop);
}

// ---- FewShotEvaluator. ----

FewShotEvaluator::FewShotEvaluator(const common::ConfigDict& config,
                                   const std::shared_ptr<dataset::Dataset>& run_dataset,
                                   int64_t default_log_eval_steps) {
  const auto layer = config.get<std::string>("fewshot.representation_layer", "pre_logits");
  if (layer != "pre_logits")
    throw Error("config key 'fewshot.representation_layer': only 'pre_logits' (Network::representation) is "
                "supported, got '" + layer + "'");
  shots_ = config.get<std::vector<int64_t>>("fewshot.shots", {1, 5, 10, 25});
  std::vector<double> default_l2;
  for (int i = -10; i < 20; ++i) default_l2.push_back(std::ldexp(1.0, i));  // Scenic's 2^i, i in [-10, 20)
  l2_regs_ = config.get<std::vector<double>>("fewshot.l2_regs", default_l2);
  if (shots_.empty() || l2_regs_.empty()) throw Error("config keys 'fewshot.shots' and 'fewshot.l2_regs' must not be empty");
  for (auto s : shots_)
    if (s <= 0) throw Error("config key 'fewshot.shots': shots must be > 0, got " + std::to_string(s));
  log_eval_steps_ = config.get<int64_t>("fewshot.log_eval_steps", default_log_eval_steps);
  if (config.has("fewshot.walk_first")) {
    const auto& w = config.json("fewshot.walk_first");
    if (!w.is_array() || w.size() != 2 || !w[0].is_string() || !w[1].is_number_integer())
      throw Error("config key 'fewshot.walk_first' must be [dataset_name, shots], got " + w.dump());
    walk_first_ = std::make_pair(w[0].get<std::string>(), w[1].get<int64_t>());
    if (std::find(shots_.begin(), shots_.end(), walk_first_->second) == shots_.end())
      throw Error("config key 'fewshot.walk_first': " + std::to_string(walk_first_->second) +
                  " shots is not one of fewshot.shots");
  }
  datasets_ = read_transfer_datasets(config, "fewshot", run_dataset);
  if (walk_first_ && std::none_of(datasets_.begin(), datasets_.end(),
                                  [&](const TransferDataset& d) { return d.name == walk_first_->first; }))
    throw Error("config key 'fewshot.walk_first': no few-shot dataset named '" + walk_first_->first + "'");
}

FewShotResults FewShotEvaluator::run_all(model::Network& network, const torch::Device& device) const {
  FewShotResults results;
  const int64_t max_shots = *std::max_element(shots_.begin(), shots_.end());
  for (const auto& ds : datasets_) {
    const int64_t k = ds.dataset->meta_data.num_classes;
    // Only the first max_shots examples of each class are used, so the pass stops once
    // every class has them (same examples as embedding the whole split, as Scenic does).
    auto enough = [&](const std::vector<int64_t>& labels) {
      std::vector<int64_t> count(static_cast<size_t>(k), 0);
      for (auto l : labels)
        if (l >= 0 && l < k) ++count[static_cast<size_t>(l)];
      return std::all_of(count.begin(), count.end(), [&](int64_t c) { return c >= max_shots; });
    };
    auto train = split_representations(network, ds, ds.train_split, device, 0, enough);
    auto test = split_representations(network, ds, ds.test_split, device);
    for (int64_t s : shots_) {
      auto idx = fewshot_indices(train.labels, k, s);
      auto x = train.features.index_select(0, idx);
      auto y = train.labels.index_select(0, idx);
      for (double l2 : l2_regs_) results[ds.name][{s, l2}] = fewshot_accuracy(x, y, test.features, test.labels, l2, k);
    }
    SCENIC_LOG_INFO << "few-shot '" << ds.name << "': " << train.labels.numel() << " train and "
                    << test.labels.numel() << " test representations of size " << train.features.size(1);
  }
  return results;
}

}  // namespace scenic::train
