// detr_trainer: the detection training loop, forked from the classification trainer as
// Scenic forks it (projects/baselines/detr/trainer.py + train_utils.DetrGlobalEvaluator).
//
// Per step: forward with the batch's padding_mask (DETR::forward_packed), the DETR set
// loss (detr_base_model.h; matching on the CPU), backward, global-norm clipping
// (`max_grad_norm`, default 0.1 as Scenic's detr_config), the optimizer update (use
// `optimizer_configs.optimizer: adamw` and, for the backbone's lower learning rate,
// `optimizer_configs.param_groups: [{regex: '^backbone\.', lr_multiplier: 0.1}]`), and
// an optional EMA of the weights (`ema.decay`). Kept from the classification trainer:
// Chrono timing, train summaries every `log_summary_steps` (the loss terms, accuracies,
// cardinality error, learning_rate, l2_grads, l2_params), checkpoints every
// `checkpoint_steps` with exact resume, SIGTERM/SIGINT preemption, NaN detection, the
// best checkpoint by `checkpoint_best_metric` (e.g. AP_50).
// Evaluation (`valid` every `log_eval_steps`, at most `steps_per_eval` batches; `test`
// at the end): the loss metrics plus COCO box AP through CocoEvaluator: AP, AP_50,
// AP_75, AP_small, AP_medium, AP_large, AR_max_1/10/100, AR_small/medium/large, over
// the images seen (as DetrGlobalEvaluator). Ground truth: the COCO JSON of
// `dataset_configs.eval_annotations` when the dataset is coco_detection (exact areas and
// crowd flags), otherwise built from the eval batches (box area, category id = label).
// The final test evaluation also writes `<workdir>/detections_test.json` (COCO results
// format: image_id, category_id, bbox xywh in original pixels, score).
// Not supported here (unlike the classification trainer): mixup, accum_steps, bf16.
#pragma once

#include "scenic/train_lib/trainers.h"

namespace scenic::baselines::detr {

train::TrainResult detr_train(train::TrainerContext& ctx);

// Adds `detr_trainer` to `registry` unless it is there (the registry lives in
// train_lib, which cannot depend on a project; baselines.cc calls this).
void register_detr_trainer(train::TrainerRegistry& registry);

}  // namespace scenic::baselines::detr
