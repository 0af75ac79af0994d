// transfer_trainer: fine-tuning from a checkpoint with transfer evaluations (Scenic's
// train_lib/transfer/transfer_trainer.py), forked from classification_trainer.
//
// Adds to the classification loop:
//   - `init_from: {checkpoint_path: P, skip_regex: R}`: when the run starts fresh (no
//     checkpoint in the workdir yet), parameters and buffers are copied by name from P
//     (a checkpoint file of ours, a checkpoints/ directory or a workdir: the latest
//     checkpoint). The head `output_projection.*` keeps its fresh initialisation when
//     its shape differs (another num_classes); names matching R (std::regex_search) are
//     never copied. What was loaded, re-initialised and left unused is logged.
//     Any other missing name or shape mismatch is an error naming it.
//   - `eval_sets`: several named eval sets, evaluated every `log_eval_steps` and at the
//     end, each written under its name: a list of splits (`[valid, test]`) or a mapping
//     name -> split (`{val: valid, holdout: test}`); default `[valid]`. As in Scenic, for
//     one-hot targets examples whose label is all zeros are masked out of evaluation.
//     The final `test` metrics (TrainResult, `scenic eval`) are always computed.
//   - `fewshot.*`: few-shot ridge-regression evaluation of the `pre_logits`
//     representation (fewshot.h), every `fewshot.log_eval_steps` and at the end,
//     written with split `fewshot` under Scenic's names (`z/{ds}_{shots}shot`, ...).
//   - `linear_probe.*`: a linear probe on the frozen representation (linear_probe.h),
//     every `linear_probe.log_eval_steps` (> 0) and at the end, split `linear_eval`.
// Kept: schedules, optimizers, `max_grad_norm`, `init_head_bias`, summaries (l2_grads,
// l2_params, learning_rate, Chrono), checkpoints, exact resume, preemption, NaN
// detection. Left out (use classification_trainer for them): mixup, EMA, gradient
// accumulation, bf16 autocast.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "scenic/train_lib/trainers.h"

namespace scenic::train {

TrainResult transfer_train(TrainerContext& ctx);

// What init_from_checkpoint did, by parameter / buffer name.
struct InitFromReport {
  std::string path;  // the checkpoint file read
  int64_t step = 0;  // its step
  std::vector<std::string> loaded;
  std::vector<std::string> reinitialized;  // kept their fresh values ("name [shape] (checkpoint [shape])")
  std::vector<std::string> unused;         // in the checkpoint, not in the network
  std::string describe() const;
};

// A checkpoint file, or the latest checkpoint in a directory (`<dir>/checkpoint_*`, or
// `<dir>/checkpoints/checkpoint_*` for a workdir). Throws naming the path when none.
std::string resolve_checkpoint_path(const std::string& path);

// Copies the checkpoint's parameters and buffers into `network` by name (Scenic's
// init_from_train_state). Names starting with `head_prefix` whose shape differs from the
// checkpoint's, or that the checkpoint lacks, are re-initialised (left as they are);
// names matching `skip_regex` (when not empty) too. Other missing names or shape
// mismatches throw scenic::Error naming the parameter and the shapes.
InitFromReport init_from_checkpoint(const std::string& path, torch::nn::Module& network,
                                    const std::string& skip_regex = "",
                                    const std::string& head_prefix = "output_projection.");

}  // namespace scenic::train
