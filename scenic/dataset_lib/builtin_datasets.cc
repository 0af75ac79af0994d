// register_builtin_datasets (declared in dataset.h): the datasets dataset_lib ships.
#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/mnist.h"

namespace scenic::dataset {

void register_builtin_datasets(DatasetRegistry& registry) {
  registry.add("mnist", build_mnist);
  registry.add("fashion_mnist", build_fashion_mnist);
}

}  // namespace scenic::dataset
