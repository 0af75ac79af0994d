#include "scenic/train_lib/linear_probe.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"
#include "scenic/model_lib/base_models/model_utils.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::train {
namespace {

torch::Tensor one_hot_targets(const torch::Tensor& labels, int64_t num_classes) {
  return (labels.to(torch::kLong).unsqueeze(1) == torch::arange(num_classes, torch::kLong)).to(torch::kFloat32);
}

// Default optimizer (adam) and learning rate (1e-3, constant) when the probe config
// names none; recorded in the resolved config.
void set_probe_defaults(const common::ConfigDict& probe_config) {
  auto& c = const_cast<common::ConfigDict&>(probe_config);  // a view: set() writes the shared tree
  if (!c.has("optimizer_configs") && !c.has("optimizer")) c.set("optimizer_configs.optimizer", std::string("adam"));
  if (!c.has("lr_configs.base_learning_rate")) c.set("lr_configs.base_learning_rate", 1e-3);
}

}  // namespace

torch::nn::Linear train_linear_probe(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes,
                                     const common::ConfigDict& probe_config, uint64_t seed) {
  if (features.dim() != 2 || labels.dim() != 1 || features.size(0) != labels.size(0) || features.size(0) == 0)
    throw Error("linear probe: features [N, D] and labels [N] expected, got " + c10::str(features.sizes()) + " and " +
                c10::str(labels.sizes()));
  const int64_t num_steps = probe_config.get<int64_t>("num_training_steps", 500);
  const int64_t batch_size = std::min<int64_t>(probe_config.get<int64_t>("batch_size", 128), features.size(0));
  const double label_smoothing = probe_config.get<double>("label_smoothing", 0.0);
  const auto max_grad_norm = probe_config.get_optional<double>("max_grad_norm");
  set_probe_defaults(probe_config);

  // torch's Linear initialisation (uniform in +-1/sqrt(D)) drawn from the probe's own
  // generator: reproducible, and the global generator (the run's dropout stream, saved
  // in checkpoints) is left alone.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::nn::Linear head{nullptr};
  {
    // Constructing the module draws its default init from the global generator: put
    // the global state back afterwards.
    auto global = at::detail::getDefaultCPUGenerator();
    torch::Tensor saved;
    {
      std::lock_guard<std::mutex> lock(global.mutex());
      saved = global.get_state();
    }
    head = torch::nn::Linear(features.size(1), num_classes);
    std::lock_guard<std::mutex> lock(global.mutex());
    global.set_state(saved);
  }
  {
    torch::NoGradGuard no_grad;
    const double bound = 1.0 / std::sqrt(static_cast<double>(features.size(1)));
    head->weight.copy_(torch::rand(head->weight.sizes(), gen) * (2 * bound) - bound);
    head->bias.copy_(torch::rand(head->bias.sizes(), gen) * (2 * bound) - bound);
  }
  auto optimizer = make_optimizer(probe_config, head->named_parameters());
  const LrFn lr_fn = get_learning_rate_fn(probe_config);
  auto x = features.to(torch::kFloat32);
  auto y = one_hot_targets(labels, num_classes);
  torch::Tensor order;
  int64_t pos = features.size(0);
  head->train();
  for (int64_t step = 0; step < num_steps; ++step) {
    if (pos + batch_size > features.size(0)) {  // a new epoch: a new permutation
      order = torch::randperm(features.size(0), gen, torch::kLong);
      pos = 0;
    }
    auto idx = order.slice(0, pos, pos + batch_size);
    pos += batch_size;
    set_learning_rate(*optimizer, lr_fn(step));
    optimizer->zero_grad();
    auto logits = head(x.index_select(0, idx));  // [b, K]
    auto loss = model::weighted_softmax_cross_entropy(logits, y.index_select(0, idx), {}, label_smoothing);
    loss.backward();
    if (max_grad_norm) clip_grad_global_norm(head->parameters(), *max_grad_norm);
    optimizer->step();
  }
  head->eval();
  return head;
}

std::map<std::string, double> evaluate_linear_probe(torch::nn::Linear& head, const torch::Tensor& features,
                                                    const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  auto logits = head(features.to(torch::kFloat32));  // [M, K]
  auto l = labels.to(torch::kLong);
  const double accuracy = logits.argmax(1).eq(l).to(torch::kFloat64).mean().item<double>();
  const double loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat64), l).item<double>();
  return {{"accuracy", accuracy}, {"loss", loss}};
}

LinearProbeEvaluator::LinearProbeEvaluator(const common::ConfigDict& config,
                                           const std::shared_ptr<dataset::Dataset>& run_dataset,
                                           int64_t default_log_eval_steps)
    : probe_config_(config.sub("linear_probe")) {
  const auto layer = probe_config_.get<std::string>("representation_layer", "pre_logits");
  if (layer != "pre_logits")
    throw Error("config key 'linear_probe.representation_layer': only 'pre_logits' (Network::representation) is "
                "supported, got '" + layer + "'");
  seed_ = static_cast<uint64_t>(probe_config_.get<int64_t>("rng_seed", config.get<int64_t>("rng_seed", 0)));
  log_eval_steps_ = probe_config_.get<int64_t>("log_eval_steps", default_log_eval_steps);
  num_train_examples_ = probe_config_.get<int64_t>("num_train_examples", 0);
  datasets_ = read_transfer_datasets(config, "linear_probe", run_dataset);
  // Read the training keys now (a dry build of the optimizer and schedule), so an
  // unknown or mistyped key fails before training starts.
  set_probe_defaults(probe_config_);
  if (probe_config_.get<int64_t>("num_training_steps", 500) < 0)
    throw Error("config key 'linear_probe.num_training_steps' must be >= 0");
  probe_config_.get<int64_t>("batch_size", 128);
  probe_config_.get<double>("label_smoothing", 0.0);
  probe_config_.get_optional<double>("max_grad_norm");
  make_optimizer(probe_config_, NamedParams{{"kernel", torch::zeros({1, 1})}, {"bias", torch::zeros({1})}});
  get_learning_rate_fn(probe_config_);
}

std::map<std::string, double> LinearProbeEvaluator::run_all(model::Network& network, const torch::Device& device) const {
  std::map<std::string, double> out;
  for (const auto& ds : datasets_) {
    const int64_t k = ds.dataset->meta_data.num_classes;
    auto train = split_representations(network, ds, ds.train_split, device, num_train_examples_);
    auto test = split_representations(network, ds, ds.test_split, device);
    auto head = train_linear_probe(train.features, train.labels, k, probe_config_, seed_);
    for (const auto& [name, v] : evaluate_linear_probe(head, test.features, test.labels))
      out["linear_eval/" + ds.name + "_" + name] = v;
    SCENIC_LOG_INFO << "linear probe '" << ds.name << "': trained on " << train.labels.numel()
                    << " representations, test accuracy " << out["linear_eval/" + ds.name + "_accuracy"];
  }
  return out;
}

}  // namespace scenic::train
