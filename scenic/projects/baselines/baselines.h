// Registers the baseline models under Scenic's names (model_lib/models.py), plus
// single-label `vit_classification`, `mixer_classification` and
// `hybrid_vit_classification`. main() calls this once.
// ResNet and BiT-ResNet read their keys at the config's top level, as Scenic does (or
// under `model:`); see baselines.cc.
#pragma once

#include "scenic/model_lib/models.h"

namespace scenic::baselines {

void register_baseline_models(model::ModelRegistry& registry);

}  // namespace scenic::baselines
