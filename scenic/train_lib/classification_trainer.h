// classification_trainer: the standard supervised training loop (Scenic's
// train_lib/classification_trainer.py), also used by the multi-label models.
//
// Per step: forward, loss (the model's loss_function), backward, optional global-norm
// clipping (`max_grad_norm`), optimizer update with the scheduled learning rate.
// Train summaries every `log_summary_steps` (the model's metrics plus learning_rate,
// l2_grads, l2_params, examples/s), evaluation on `valid` every `log_eval_steps`,
// checkpoints every `checkpoint_steps` (keeping `max_checkpoint_keep`), and at the end
// a checkpoint and an evaluation on `test`. A workdir with a checkpoint resumes from it.
// Frequencies default as in Scenic: log_eval_steps to one epoch, the others to it.
// Unlike Scenic (which fires at step % N == 1), periodic actions fire at step % N == 0.
#pragma once

#include "scenic/train_lib/trainers.h"

namespace scenic::train {

TrainResult classification_train(TrainerContext& ctx);

}  // namespace scenic::train
