#include "scenic/train_lib/trainers.h"

#include "scenic/train_lib/classification_trainer.h"

namespace scenic::train {

TrainerRegistry& TrainerRegistry::global() {
  static TrainerRegistry registry;
  return registry;
}

void register_builtin_trainers(TrainerRegistry& registry) {
  registry.add("classification_trainer", classification_train);
}

}  // namespace scenic::train
