// classification_trainer: the standard supervised training loop (Scenic's
// train_lib/classification_trainer.py), also used by the multi-label models.
//
// Per step: optional mixup / CutMix (`mixup.alpha`, `mixup.cutmix_alpha`), forward
// (under bf16 autocast with `autocast_dtype: bfloat16`), the model's loss, backward
// (over `accum_steps` micro-batches, equal to one big batch), optional global-norm
// clipping (`max_grad_norm`; more clipping methods in optimizer_configs.grad_clip), the
// optimizer update with the scheduled learning rate, and an EMA of the weights
// (`ema.decay`, `ema.warmup`) that evaluation then uses. On CUDA, `cuda_graph: true`
// captures that step (forward to update, with adamw) once and replays it
// (cuda_graph_step.h).
// Train summaries every `log_summary_steps`: the model's metrics plus learning_rate,
// l2_grads, l2_params, l2_updates and Chrono's timing (examples/s, per core,
// core-hours, kept across resumes). Evaluation on `valid` every `log_eval_steps` (with
// parameter histograms in TensorBoard), checkpoints every `checkpoint_steps` (keeping
// `max_checkpoint_keep`, plus the best by `checkpoint_best_metric` in checkpoints/best),
// and at the end a checkpoint and an evaluation on `test`. A workdir with a checkpoint
// resumes from it exactly (weights, optimizer, EMA, RNG, data position). SIGTERM /
// SIGINT save a checkpoint and stop (PreemptedError); a NaN loss stops with
// TrainingDivergedError, keeping the last good checkpoint.
// Frequencies default as in Scenic: log_eval_steps to one epoch, the others to it.
// Unlike Scenic (which fires at step % N == 1), periodic actions fire at step % N == 0.
#pragma once

#include "scenic/train_lib/trainers.h"

namespace scenic::train {

TrainResult classification_train(TrainerContext& ctx);

}  // namespace scenic::train
