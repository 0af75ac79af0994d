// Linear probe: a Dense head trained on frozen representations, evaluated with
// classification accuracy (Scenic's train_lib/transfer/linear_probe_utils.py,
// LinearEvaluator with its LinearProbe module).
//
// Scenic recomputes the representation of every training batch under stop_gradient;
// the network is frozen, so here the features are computed once (one pass of the
// training split) and the head is trained on minibatches drawn from them, which is the
// same optimisation problem without the repeated forward passes (Scenic's probe also
// sees each batch's data augmentation anew; ours sees one augmented pass).
//
// Config (`linear_probe.*`, like Scenic's per-dataset probe config):
//   num_training_steps (default 500), batch_size (default 128), label_smoothing (0),
//   max_grad_norm (none), optimizer_configs.* and lr_configs.* (as the top-level keys;
//   default adam with constant lr 1e-3), rng_seed (default the run's), log_eval_steps,
//   representation_layer (pre_logits), num_train_examples (cap on the training pass),
//   datasets (see fewshot.h: read_transfer_datasets).
// Metrics per dataset (Scenic's log_eval_summary prefix `linear_eval/{ds}`):
//   linear_eval/{ds}_accuracy, linear_eval/{ds}_loss (mean cross-entropy, no smoothing).
#pragma once

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

#include "scenic/common_lib/config.h"
#include "scenic/train_lib/fewshot.h"

namespace scenic::train {

// Trains Linear(D, K) on features [N, D] and labels [N] (int64 in [0, K)) for
// `probe_config.num_training_steps` minibatch steps of softmax cross-entropy, with the
// optimizer and schedule of `probe_config` (a view such as config.sub("linear_probe")).
// Batches are drawn without replacement per epoch from a generator seeded with `seed`.
torch::nn::Linear train_linear_probe(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes,
                                     const common::ConfigDict& probe_config, uint64_t seed);

// {"accuracy", "loss"} of `head` on (features [M, D], labels [M]).
std::map<std::string, double> evaluate_linear_probe(torch::nn::Linear& head, const torch::Tensor& features,
                                                    const torch::Tensor& labels);

class LinearProbeEvaluator {
 public:
  // Reads every `linear_probe.*` key (so finish_setup() sees them used).
  LinearProbeEvaluator(const common::ConfigDict& config, const std::shared_ptr<dataset::Dataset>& run_dataset,
                       int64_t default_log_eval_steps);
  int64_t log_eval_steps() const { return log_eval_steps_; }
  // Trains and evaluates one probe per dataset on `network`'s frozen representations.
  std::map<std::string, double> run_all(model::Network& network, const torch::Device& device) const;

 private:
  common::ConfigDict probe_config_;
  uint64_t seed_ = 0;
  int64_t log_eval_steps_ = 0, num_train_examples_ = 0;
  std::vector<TransferDataset> datasets_;
};

}  // namespace scenic::train
