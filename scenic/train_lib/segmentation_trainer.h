// segmentation_trainer: the training loop for semantic segmentation (Scenic's
// train_lib/segmentation_trainer.py), forked from classification_trainer.
//
// The model must be a SegmentationModel (`simple_cnn_segmentation`, `unet_segmentation`):
// logits [B, K, H, W], `label` [B, H, W], pixel `batch_mask` [B, H, W]. Per step: the
// model's per-pixel loss, backward, optional global-norm clipping (`max_grad_norm`), the
// optimizer update with the scheduled learning rate. Train summaries every
// `log_summary_steps`: the model's metrics (`accuracy` is pixel accuracy: correct real
// pixels / real pixels; `loss`), learning_rate, l2_grads, l2_params and Chrono's timing.
//
// Evaluation (every `log_eval_steps` on `valid`, at the end on `test`): the per-batch
// metrics plus the global ones that need the whole eval set: each batch's [K, K]
// confusion matrix is summed over the pass and turned into `mean_iou` and
// `iou_per_class/NN_<name>` once (Scenic's get_global_metrics_fn). TensorBoard gets one
// eval batch drawn as input | true mask | predicted mask (Scenic's `val/example_i`).
//
// Kept from the classification trainer: checkpoints every `checkpoint_steps` (keeping
// `max_checkpoint_keep`, and the best by `checkpoint_best_metric`, e.g. mean_iou),
// exact resume, SIGTERM/SIGINT preemption, NaN detection. Left out (as in Scenic's
// segmentation trainer): mixup, EMA, gradient accumulation, bf16 autocast.
#pragma once

#include <map>
#include <string>

#include "scenic/model_lib/base_models/segmentation_model.h"
#include "scenic/train_lib/device_prefetch.h"
#include "scenic/train_lib/trainers.h"

namespace scenic::train {

TrainResult segmentation_train(TrainerContext& ctx);

// One pass over `split` in eval mode (at most `max_steps` batches when > 0): the
// normalized per-batch metrics merged with model.global_metrics(confusion matrix summed
// over the pass). When `example` is given it receives the first batch drawn as a
// [3, rows * H, cols * 3W] image in [0, 1] (input | true | predicted). With several
// processes (`dist`), each evaluates its shard and the metric sums and the confusion
// matrix are summed over processes, so mean IoU is that of the whole split. `prefetch`:
// as evaluate's (train_utils.h). Leaves the network in eval mode.
std::map<std::string, double> evaluate_segmentation(model::Network& network, const model::SegmentationModel& model,
                                                    dataset::Dataset& dataset, const std::string& split,
                                                    const torch::Device& device, int64_t max_steps = 0,
                                                    torch::Tensor* example = nullptr,
                                                    const DistributedContext* dist = nullptr,
                                                    const DevicePrefetchOptions& prefetch = DevicePrefetchOptions{});

// Colours a label map [B, H, W] (int) with a fixed palette: [B, 3, H, W] float in
// [0, 1]; class 0 black, labels outside [0, 256) grey.
torch::Tensor colorize_labels(const torch::Tensor& labels);

}  // namespace scenic::train
