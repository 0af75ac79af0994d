// Input-pipeline throughput: decoded-and-augmented examples/s for 224x224 JPEGs through
// `image_folder` with the ImageNet-style train chain, and Fashion-MNIST batches/s.
//
// The counterpart of bench/reference/dataset_torch.py (torch DataLoader + torchvision on
// the same files); bench/run_dataset_bench.sh runs both and prints the ratios. Prints one
// `RESULT key=value ...` line per measurement. Not a test: nothing is asserted.
//
//   scenic_dataset_bench --jpeg_dir /tmp/scenic_bench/jpeg [--workers 1,2]
//       [--batches 24] [--batch_size 32] [--fashion_mnist_dir DIR] [--fmnist_batches 300]
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/image_folder.h"
#include "scenic/dataset_lib/mnist.h"

namespace {

using Clock = std::chrono::steady_clock;
using scenic::dataset::DatasetOptions;

// The same chain as the torchvision reference: RandomResizedCrop(224) (scale 0.08-1,
// ratio 3/4-4/3, bilinear), RandomHorizontalFlip, ToTensor + Normalize(ImageNet).
constexpr const char* kChain =
    "decode|inception_crop(224, area_min=8)|flip_lr|value_range(0, 1)|"
    "standardize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))";

double seconds_for(scenic::dataset::BatchIterator& it, int batches) {
  for (int i = 0; i < 2; ++i) it.next();  // warm-up: threads started, queue filled
  const auto t0 = Clock::now();
  for (int i = 0; i < batches; ++i) {
    if (!it.next()) throw scenic::Error("iterator ended early");
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string jpeg_dir = "/tmp/scenic_bench/jpeg", fmnist_dir = scenic::dataset::kDefaultFashionMnistDir;
  std::string workers = "1,2";
  int batches = 24, batch_size = 32, fmnist_batches = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--jpeg_dir") jpeg_dir = v;
    else if (k == "--workers") workers = v;
    else if (k == "--batches") batches = std::stoi(v);
    else if (k == "--batch_size") batch_size = std::stoi(v);
    else if (k == "--fashion_mnist_dir") fmnist_dir = v;
    else if (k == "--fmnist_batches") fmnist_batches = std::stoi(v);
    else {
      std::cerr << "unknown flag " << k << "\n";
      return 2;
    }
  }
  try {
    for (int w : parse_list(workers)) {
      DatasetOptions o;
      o.batch_size = batch_size;
      o.prefetch = 2;
      o.dataset_configs.set<std::string>("data_dir", jpeg_dir);
      o.dataset_configs.set<double>("valid_fraction", 0.0);
      o.dataset_configs.set<std::string>("pp_train", kChain);
      o.dataset_configs.set<int64_t>("num_workers", w);
      auto ds = scenic::dataset::build_image_folder(o);
      auto it = ds->train_iter(0);
      const double s = seconds_for(*it, batches);
      const double eps = batches * batch_size / s;
      std::cout << "RESULT impl=scenic bench=jpeg224 workers=" << w << " examples_per_s=" << eps
                << " per_worker=" << eps / w << std::endl;
    }
    DatasetOptions o;
    o.batch_size = 128;
    o.prefetch = 2;
    o.dataset_configs.set<std::string>("data_dir", fmnist_dir);
    auto ds = scenic::dataset::build_fashion_mnist(o);
    auto it = ds->train_iter(0);
    const double s = seconds_for(*it, fmnist_batches);
    std::cout << "RESULT impl=scenic bench=fashion_mnist batch_size=128 batches_per_s="
              << fmnist_batches / s << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
