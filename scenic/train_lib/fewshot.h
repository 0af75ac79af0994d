// Few-shot evaluation of frozen representations by closed-form ridge regression
// (Scenic's train_lib/transfer/fewshot_utils.py, FewShotEvaluator, itself from
// big_vision's fewshot_lsr evaluator).
//
// For each dataset and each `shots` count: the first `shots` training examples of every
// class (in the order the split yields them) are embedded with the network's
// representation (`pre_logits`), features are whitened with those examples' mean and
// population std (+ 1e-5), a constant bias column of 100 is appended (large, so the bias
// is almost unregularized), targets are 2 * one_hot - 1, and for each `l2_reg`
//   W = solve(X^T X + l2_reg * I, X^T Y)                       // [D + 1, K]
// is fitted; the accuracy of argmax(X_test W) on the whole test split is reported. The
// best l2_reg per shot is the one with the best mean rank across datasets (one
// hyper-parameter for all tasks, as Scenic). Metric names (Scenic's):
//   zz/{ds}_{shots}shot_l2={l2}     every (shots, l2) result
//   z/best_l2_for_{shots}shot_image_eval, z/{ds}_{shots}shot    with the best l2
//   a/{ds}_{shots}shot              the `walk_first` highlight, when configured
// ({l2} is written as Python writes a float: 0.0009765625, 1.0, 1024.0, 1e-05.)
// The solve runs on the CPU in float64 (Scenic: jax on CPU in float32).
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/model_lib/base_models/base_model.h"

namespace scenic::train {

constexpr double kFewShotBiasConstant = 100.0;

// Mean and population std (+ stddev_constant) over the examples of x [N, D]: [1, D] each.
struct Whitening {
  torch::Tensor mean, std;
};
Whitening whitening_of(const torch::Tensor& x, double stddev_constant = 1e-5);
// (x - mean) / std with the bias column appended: [N, D] -> [N, D + 1].
torch::Tensor whiten_with_bias(const torch::Tensor& x, const Whitening& w);

// W [D + 1, K] solving (X^T X + l2_reg I) W = X^T (2 one_hot(labels) - 1), X [N, D + 1].
torch::Tensor ridge_regression(const torch::Tensor& x_whitened, const torch::Tensor& labels, int64_t num_classes,
                               double l2_reg);

// Scenic's _fewshot_acc_fn: fits on (x [N, D], labels [N]) and returns the accuracy on
// (x_test [M, D], labels_test [M]). float64 throughout.
double fewshot_accuracy(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& x_test,
                        const torch::Tensor& labels_test, double l2_reg, int64_t num_classes);

// Positions of the first `shots` examples of each class, class 0's first: [<= K * shots].
torch::Tensor fewshot_indices(const torch::Tensor& labels, int64_t num_classes, int64_t shots);

// results[dataset][{shots, l2_reg}] = accuracy.
using FewShotResults = std::map<std::string, std::map<std::pair<int64_t, double>, double>>;

// Per shot: the l2_reg with the highest mean rank (0 = worst) across datasets; the
// first such l2_reg (in l2_regs order) on ties.
std::map<int64_t, double> best_l2_by_mean_rank(const FewShotResults& results, const std::vector<int64_t>& shots,
                                               const std::vector<double>& l2_regs);

// Scenic's log_fewshot_summary scalars (names in the header comment).
std::map<std::string, double> fewshot_summary(const FewShotResults& results, const std::vector<int64_t>& shots,
                                              const std::vector<double>& l2_regs,
                                              const std::optional<std::pair<std::string, int64_t>>& walk_first);

// Python's repr() of a float: shortest round-trip digits, "1.0" for integral values,
// exponent form (1e-05, 1e+16) outside [1e-4, 1e16).
std::string python_float_repr(double v);

// ---- Representations of a dataset split (shared with the linear probe). ----

// Features [N, D] (float64, CPU) and int64 labels [N] of real examples (batch_mask != 0).
struct Representations {
  torch::Tensor features, labels;
};

// `network.representation()` in eval mode, without gradients, over batches from `it`
// until it ends, or `max_examples` real examples were taken (> 0), or `stop` (called
// with the labels so far) says enough. One-hot labels [B, K] are taken by argmax.
Representations compute_representations(model::Network& network, dataset::BatchIterator& it,
                                        const torch::Device& device, int64_t max_examples = 0,
                                        const std::function<bool(const std::vector<int64_t>&)>& stop = {});

// Where a transfer evaluation reads its data: `name: {dataset_name, dataset_configs,
// train_split, test_split}` (all optional). The default dataset is the run's own; a
// split is `train` (one pass of the shuffled training stream, as the run's training
// pipeline makes it) or an eval split (`valid`, `test`).
struct TransferDataset {
  std::string name, train_split = "train", test_split = "test";
  std::shared_ptr<dataset::Dataset> dataset;
};
// Reads `<section>.datasets` (default: one entry named after the run's dataset_name
// using `run_dataset`). Other datasets are built from the registry with
// `<section>.batch_size` (default eval_batch_size).
std::vector<TransferDataset> read_transfer_datasets(const common::ConfigDict& config, const std::string& section,
                                                    const std::shared_ptr<dataset::Dataset>& run_dataset);
// A pass over `split`: the training stream for "train" (limited to one epoch, or to
// `max_examples` / `stop`), else the eval split.
Representations split_representations(model::Network& network, const TransferDataset& ds, const std::string& split,
                                      const torch::Device& device, int64_t max_examples = 0,
                                      const std::function<bool(const std::vector<int64_t>&)>& stop = {});

// Reads `fewshot.*`: representation_layer (pre_logits), shots, l2_regs (default
// 2^-10 .. 2^19, Scenic's configs), log_eval_steps, walk_first [dataset, shots],
// datasets, batch_size.
class FewShotEvaluator {
 public:
  FewShotEvaluator(const common::ConfigDict& config, const std::shared_ptr<dataset::Dataset>& run_dataset,
                   int64_t default_log_eval_steps);
  int64_t log_eval_steps() const { return log_eval_steps_; }
  FewShotResults run_all(model::Network& network, const torch::Device& device) const;
  std::map<std::string, double> summary(const FewShotResults& results) const {
    return fewshot_summary(results, shots_, l2_regs_, walk_first_);
  }

 private:
  std::vector<int64_t> shots_;
  std::vector<double> l2_regs_;
  int64_t log_eval_steps_ = 0;
  std::optional<std::pair<std::string, int64_t>> walk_first_;
  std::vector<TransferDataset> datasets_;
};

}  // namespace scenic::train
