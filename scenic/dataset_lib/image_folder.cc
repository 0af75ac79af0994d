#include "scenic/dataset_lib/image_folder.h"

#include <dirent.h>
#include <sys/stat.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/index_stream.h"
#include "scenic/dataset_lib/pipeline.h"

namespace scenic::dataset {
namespace {

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Sorted names of the entries of `dir` (no dot-files) that are directories (dirs true)
// or regular-file image names (dirs false).
std::vector<std::string> list(const std::string& dir, bool dirs) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw Error(dir + ": cannot list directory");
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    const std::string path = dir + "/" + name;
    if (dirs) {
      if (is_dir(path)) out.push_back(name);
      continue;
    }
    if (is_dir(path)) continue;
    std::string ext = name.substr(name.find_last_of('.') == std::string::npos ? name.size()
                                                                             : name.find_last_of('.'));
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp") out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Files of every class folder of `dir`; classes must be among `classes`.
std::vector<ImageFile> scan_split(const std::string& dir, const std::vector<std::string>& classes) {
  std::vector<ImageFile> files;
  for (const std::string& cls : list(dir, true)) {
    auto it = std::find(classes.begin(), classes.end(), cls);
    if (it == classes.end()) {
      std::string known;
      for (const auto& c : classes) known += (known.empty() ? "" : ", ") + c;
      throw Error(dir + "/" + cls + ": class '" + cls + "' is not among the training classes (" +
                  known + ")");
    }
    for (const std::string& f : list(dir + "/" + cls, false)) {
      files.push_back({dir + "/" + cls + "/" + f, it - classes.begin()});
    }
  }
  return files;
}

// Moves round(fraction * n_c) files of each class c from `train` into the returned list.
std::vector<ImageFile> carve(std::vector<ImageFile>& train, int64_t num_classes, double fraction,
                             uint64_t seed) {
  std::vector<std::vector<ImageFile>> by_class(num_classes);
  for (auto& f : train) by_class[f.label].push_back(std::move(f));
  std::vector<ImageFile> kept, held;
  for (int64_t c = 0; c < num_classes; ++c) {
    auto& files = by_class[c];
    const int64_t n = static_cast<int64_t>(files.size());
    const int64_t n_valid = static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
    std::vector<bool> is_valid(n, false);
    const std::vector<int64_t> perm = epoch_permutation(seed, c, n);
    for (int64_t i = 0; i < n_valid; ++i) is_valid[perm[i]] = true;
    for (int64_t i = 0; i < n; ++i) (is_valid[i] ? held : kept).push_back(std::move(files[i]));
  }
  train = std::move(kept);
  return held;
}

std::string chain_size(double s) {
  return std::to_string(static_cast<int64_t>(std::llround(s)));
}

}  // namespace

cv::Mat read_image_file(const std::string& path, int channels) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open image file (missing or unreadable)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  if (bytes.empty()) throw DataError(path + ": empty image file");
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(bytes, channels == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw DataError(path + ": cannot decode image: " + e.what());
  }
  if (decoded.empty()) throw DataError(path + ": cannot decode image (corrupt or not JPEG/PNG)");
  if (channels == 1) return decoded;
  cv::Mat rgb;
  cv::cvtColor(decoded, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

Example ImageFileSource::load(int64_t index) const {
  if (index < 0 || index >= size()) {
    throw Error("image_folder: index " + std::to_string(index) + " out of range [0, " +
                std::to_string(size()) + ")");
  }
  const ImageFile& f = files_[index];
  Example ex;
  ex.image = read_image_file(f.path);
  ex.label = f.label;
  ex.orig_size = {ex.image.rows, ex.image.cols};
  ex.image_id = index;
  ex.source = f.path;
  return ex;
}

std::string ImageFileSource::describe(int64_t index) const {
  if (index < 0 || index >= size()) return "image_folder example " + std::to_string(index);
  return files_[index].path;
}

ImageFolderSplits scan_image_folder(const std::string& dir, double valid_fraction,
                                    uint64_t split_seed) {
  if (!is_dir(dir)) {
    throw Error(dir + ": image folder does not exist (set dataset_configs.data_dir)");
  }
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    throw Error("image_folder: dataset_configs.valid_fraction must be in [0, 1), got " +
                std::to_string(valid_fraction));
  }
  ImageFolderSplits s;
  const bool split_folders = is_dir(dir + "/train");
  const std::string train_dir = split_folders ? dir + "/train" : dir;
  s.classes = list(train_dir, true);
  if (s.classes.empty()) {
    throw Error(train_dir + ": no class subfolders (expected <class>/<image> files)");
  }
  s.train = scan_split(train_dir, s.classes);
  if (split_folders) {
    for (const char* name : {"valid", "val", "validation"}) {
      if (is_dir(dir + "/" + name)) {
        s.valid = scan_split(dir + "/" + name, s.classes);
        break;
      }
    }
    if (is_dir(dir + "/test")) s.test = scan_split(dir + "/test", s.classes);
  }
  if (s.valid.empty() && s.test.empty()) {
    s.valid = carve(s.train, static_cast<int64_t>(s.classes.size()), valid_fraction, split_seed);
  }
  if (s.valid.empty()) s.valid = s.test;
  if (s.test.empty()) s.test = s.valid;
  if (s.train.empty()) throw Error(train_dir + ": no training images (.jpg, .jpeg, .png, .bmp)");
  return s;
}

std::unique_ptr<Dataset> build_image_folder(const DatasetOptions& options) {
  const common::ConfigDict& dc = options.dataset_configs;
  const std::string dir = dc.get<std::string>("data_dir");
  const double fraction = dc.get<double>("valid_fraction", 0.1);
  const uint64_t split_seed = static_cast<uint64_t>(dc.get<int64_t>("split_seed", 0));
  const int64_t size = dc.get<int64_t>("image_size", 224);
  if (size <= 0) {
    throw Error("image_folder: dataset_configs.image_size must be > 0, got " + std::to_string(size));
  }
  ImageFolderSplits splits = scan_image_folder(dir, fraction, split_seed);
  const std::string s = std::to_string(size);
  PipelineConfig cfg = PipelineConfig::from_options(
      "image_folder", Task::kClassification, options,
      "decode|inception_crop(" + s + ")|flip_lr|value_range(0, 1)",
      "decode|resize_small(" + chain_size(size * 8.0 / 7.0) + ")|central_crop(" + s +
          ")|value_range(0, 1)");
  MetaData meta;
  meta.num_classes = static_cast<int64_t>(splits.classes.size());
  const bool same = std::equal(splits.valid.begin(), splits.valid.end(), splits.test.begin(),
                               splits.test.end(),
                               [](const ImageFile& a, const ImageFile& b) { return a.path == b.path; });
  SourcePtr valid = std::make_shared<ImageFileSource>(std::move(splits.valid));
  SourcePtr test = same ? valid : std::make_shared<ImageFileSource>(std::move(splits.test));
  return make_pipeline_dataset(std::move(cfg), std::make_shared<ImageFileSource>(std::move(splits.train)),
                               {{"valid", valid}, {"test", test}}, meta);
}

}  // namespace scenic::dataset
