// Registers the baseline models under Scenic's names (model_lib/models.py), plus
// single-label `vit_classification`. main() calls this once.
#pragma once

#include "scenic/model_lib/models.h"

namespace scenic::baselines {

void register_baseline_models(model::ModelRegistry& registry);

}  // namespace scenic::baselines
