// register_builtin_datasets (declared in dataset.h): the datasets dataset_lib ships.
// One line per dataset; keep it a plain list.
#include "scenic/dataset_lib/cifar.h"
#include "scenic/dataset_lib/coco_detection.h"
#include "scenic/dataset_lib/dataset.h"
#include "scenic/dataset_lib/image_folder.h"
#include "scenic/dataset_lib/mnist.h"
#include "scenic/dataset_lib/segmentation_folder.h"
#include "scenic/dataset_lib/shapes.h"
#include "scenic/dataset_lib/tfds.h"

namespace scenic::dataset {

void register_builtin_datasets(DatasetRegistry& registry) {
  registry.add("mnist", build_mnist);
  registry.add("fashion_mnist", build_fashion_mnist);
  registry.add("cifar10", build_cifar10);
  registry.add("cifar100", build_cifar100);
  registry.add("image_folder", build_image_folder);
  registry.add("shapes", build_shapes);
  registry.add("coco_detection", build_coco_detection);
  registry.add("segmentation_folder", build_segmentation_folder);
  registry.add("tfds", build_tfds);
}

}  // namespace scenic::dataset
