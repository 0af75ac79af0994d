#include "scenic/train_lib/trainers.h"

#include "scenic/train_lib/classification_trainer.h"
#include "scenic/train_lib/segmentation_trainer.h"
#include "scenic/train_lib/transfer_trainer.h"

namespace scenic::train {

TrainerRegistry& TrainerRegistry::global() {
  static TrainerRegistry registry;
  return registry;
}

void register_builtin_trainers(TrainerRegistry& registry) {
  registry.add("classification_trainer", classification_train);
  registry.add("segmentation_trainer", segmentation_train);
  registry.add("transfer_trainer", transfer_train);
}

}  // namespace scenic::train
