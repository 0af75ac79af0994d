// Mixup and CutMix: batch-level augmentations the trainer calls on a train Batch.
//
// Mirrors Scenic's dataset_utils.mixup (`mixup(batch, alpha, image_format, input_key,
// label_key, rng)`): ONE weight lambda ~ Beta(alpha, alpha) per call, and every example
// is mixed with the batch in reverse order,
//   inputs[i] = lambda * inputs[i] + (1 - lambda) * inputs[B - 1 - i]
//   label[i]  = lambda * label[i]  + (1 - lambda) * label[B - 1 - i]
// so labels must be one-hot / multi-hot float [B, K] (Scenic raises otherwise; use
// target_to_one_hot first). CutMix (Yun et al. 2019) pairs examples the same way: a box
// of area (1 - lambda) * H * W at a uniform centre (clipped to the image) is pasted from
// the reversed batch, and the labels are mixed with the box's actual area fraction.
// Images are NCHW float [B, C, H, W]. Randomness comes only from the generator passed
// in, so a seeded run is reproducible.
#pragma once

#include <cstdint>
#include <string>

#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/preprocess.h"

namespace scenic::dataset {

// A draw from Beta(alpha, alpha) (alpha > 0) as X / (X + Y), X, Y ~ Gamma(alpha, 1).
double sample_beta(double alpha, Rng& rng);

// Mixes batch[input_key] and batch[label_key] in place; returns lambda.
double mixup(Batch& batch, double alpha, Rng& rng, const std::string& input_key = "inputs",
             const std::string& label_key = "label");

struct CutMixBox {
  double lambda = 1;          // label weight of the original example: 1 - box area / (H W)
  int64_t y0 = 0, x0 = 0;     // pasted rows [y0, y1), columns [x0, x1)
  int64_t y1 = 0, x1 = 0;
};

// Pastes a box from the reversed batch into every image and mixes the labels.
CutMixBox cutmix(Batch& batch, double alpha, Rng& rng, const std::string& input_key = "inputs",
                 const std::string& label_key = "label");

// Scenic's target_to_one_hot: int64 label [B] -> float32 one-hot [B, num_classes]
// (other keys, batch_mask included, are kept).
void target_to_one_hot(Batch& batch, int64_t num_classes, const std::string& label_key = "label");

}  // namespace scenic::dataset
