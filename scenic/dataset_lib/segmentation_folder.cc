#include "scenic/dataset_lib/segmentation_folder.h"

// POSIX directory calls, not std::filesystem: the torch wheel's libtorch exports its own
// incompatible std::filesystem (pytorch/pytorch#133437).
#include <dirent.h>
#include <sys/stat.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/pipeline.h"

namespace scenic::dataset {

namespace {

constexpr int64_t kMaxRawLabel = 65535;  // 16-bit PNGs

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_image_name(const std::string& name) {
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  const std::string ext = lower(name.substr(dot));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// Relative paths (from `root`) of the image files under `root/rel`, recursively.
void list_images(const std::string& root, const std::string& rel, std::vector<std::string>& out) {
  const std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw Error("segmentation_folder: cannot list directory " + dir);
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string child = rel.empty() ? name : rel + "/" + name;
    if (is_dir(root + "/" + child)) {
      list_images(root, child, out);
    } else if (is_image_name(name)) {
      out.push_back(child);
    }
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

SegmentationFolderSource::SegmentationFolderSource(SegmentationFolderOptions options,
                                                   std::string split)
    : options_(std::move(options)) {
  const std::string where = "segmentation_folder: ";
  if (options_.num_classes <= 0)
    throw Error(where + "num_classes must be positive, got " + std::to_string(options_.num_classes));
  // Raw id -> train id table.
  lut_.assign(kMaxRawLabel + 1, kOutOfRange);
  if (options_.label_map) {
    std::fill(lut_.begin(), lut_.end(), kIgnoreLabel);  // unmapped ids are void
    for (const auto& [raw, target] : *options_.label_map) {
      if (raw < 0 || raw > kMaxRawLabel)
        throw Error(where + "dataset_configs.label_map: raw id " + std::to_string(raw) +
                    " outside [0, 65535]");
      const bool is_void = target < 0 || std::count(options_.void_labels.begin(),
                                                    options_.void_labels.end(), target) > 0;
      if (!is_void && target >= options_.num_classes)
        throw Error(where + "dataset_configs.label_map: " + std::to_string(raw) + " -> " +
                    std::to_string(target) + " is neither a class in [0, " +
                    std::to_string(options_.num_classes) + ") nor a void label");
      lut_[raw] = is_void ? kIgnoreLabel : static_cast<int32_t>(target);
    }
  } else {
    for (int64_t v = 0; v < std::min<int64_t>(options_.num_classes, kMaxRawLabel + 1); ++v)
      lut_[v] = static_cast<int32_t>(v);
    for (int64_t v : options_.void_labels)
      if (v >= 0 && v <= kMaxRawLabel) lut_[v] = kIgnoreLabel;
  }

  const std::string image_root = options_.data_dir + "/" + options_.images_dir + "/" + split;
  const std::string label_root = options_.data_dir + "/" + options_.labels_dir + "/" + split;
  if (!is_dir(image_root)) throw Error(where + "no image directory " + image_root);
  std::vector<std::string> rel;
  list_images(image_root, "", rel);
  if (rel.empty()) throw Error(where + "no .png/.jpg images under " + image_root);
  for (const auto& r : rel) {
    std::string stem = r.substr(0, r.rfind('.'));
    if (!options_.image_suffix.empty() && ends_with(stem, options_.image_suffix))
      stem.resize(stem.size() - options_.image_suffix.size());
    images_.push_back(image_root + "/" + r);
    labels_.push_back(label_root + "/" + stem + options_.label_suffix + ".png");
  }
}

Example SegmentationFolderSource::load(int64_t index) const {
  if (index < 0 || index >= size())
    throw Error("segmentation_folder: index " + std::to_string(index) + " out of range [0, " +
                std::to_string(size()) + ")");
  const std::string& image_path = images_[index];
  const std::string& label_path = labels_[index];
  cv::Mat bgr = cv::imread(image_path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) throw DataError(image_path + ": cannot read or decode the image");
  if (!is_file(label_path))
    throw DataError(label_path + ": missing label file for image " + image_path);
  cv::Mat raw = cv::imread(label_path, cv::IMREAD_UNCHANGED);
  if (raw.empty()) throw DataError(label_path + ": cannot decode the label image");
  if (raw.channels() != 1 || (raw.depth() != CV_8U && raw.depth() != CV_16U))
    throw DataError(label_path + ": expected a single-channel 8- or 16-bit label PNG, got " +
                    std::to_string(raw.channels()) + " channels");
  if (raw.rows != bgr.rows || raw.cols != bgr.cols)
    throw DataError(label_path + ": label size " + std::to_string(raw.rows) + "x" +
                    std::to_string(raw.cols) + " differs from image " + image_path + " (" +
                    std::to_string(bgr.rows) + "x" + std::to_string(bgr.cols) + ")");
  Example ex;
  cv::cvtColor(bgr, ex.image, cv::COLOR_BGR2RGB);
  cv::Mat ids;
  raw.convertTo(ids, CV_32S);
  ex.mask.create(ids.rows, ids.cols, CV_32S);
  for (int r = 0; r < ids.rows; ++r) {
    const auto* in = ids.ptr<int32_t>(r);
    auto* out = ex.mask.ptr<int32_t>(r);
    for (int c = 0; c < ids.cols; ++c) {
      const int32_t v = lut_[in[c]];
      if (v == kOutOfRange)
        throw DataError(label_path + ": label " + std::to_string(in[c]) + " at (row " +
                        std::to_string(r) + ", col " + std::to_string(c) +
                        ") is neither a class in [0, " + std::to_string(options_.num_classes) +
                        ") nor a void label; set dataset_configs.label_map or void_labels");
      out[c] = v;
    }
  }
  ex.orig_size = {ex.image.rows, ex.image.cols};
  ex.image_id = index;
  ex.source = image_path;
  return ex;
}

namespace {

std::map<int64_t, int64_t> parse_label_map(const nlohmann::ordered_json& j, const std::string& key) {
  std::map<int64_t, int64_t> out;
  auto target_of = [&](const nlohmann::ordered_json& v, const std::string& raw) -> int64_t {
    if (v.is_null()) return kIgnoreLabel;
    if (!v.is_number_integer())
      throw Error(key + ": the target of raw id " + raw + " must be an integer, got " + v.dump());
    return v.get<int64_t>();
  };
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) out[static_cast<int64_t>(i)] = target_of(j[i], std::to_string(i));
  } else if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      size_t used = 0;
      int64_t raw = -1;
      try {
        raw = std::stoll(k, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != k.size() || k.empty())
        throw Error(key + ": key '" + k + "' is not an integer raw label id");
      out[raw] = target_of(v, k);
    }
  } else {
    throw Error(key + ": expected a mapping {raw_id: train_id} or a list indexed by raw id");
  }
  return out;
}

}  // namespace

std::unique_ptr<Dataset> build_segmentation_folder(const DatasetOptions& options) {
  const auto& cfg = options.dataset_configs;
  SegmentationFolderOptions o;
  o.data_dir = cfg.get<std::string>("data_dir");
  o.images_dir = cfg.get<std::string>("images_dir", o.images_dir);
  o.labels_dir = cfg.get<std::string>("labels_dir", o.labels_dir);
  o.image_suffix = cfg.get<std::string>("image_suffix", "");
  o.label_suffix = cfg.get<std::string>("label_suffix", "");
  o.void_labels = cfg.get<std::vector<int64_t>>("void_labels", o.void_labels);
  MetaData meta;
  if (cfg.has("classes")) {
    meta.class_names = cfg.get<std::vector<std::string>>("classes");
    o.num_classes = static_cast<int64_t>(meta.class_names.size());
    if (cfg.has("num_classes") && cfg.get<int64_t>("num_classes") != o.num_classes)
      throw Error("segmentation_folder: dataset_configs.num_classes (" +
                  std::to_string(cfg.get<int64_t>("num_classes")) + ") differs from the " +
                  std::to_string(o.num_classes) + " names in dataset_configs.classes");
  } else if (cfg.has("num_classes")) {
    o.num_classes = cfg.get<int64_t>("num_classes");
  } else {
    throw Error("segmentation_folder: set dataset_configs.classes (a list of names) or "
                "dataset_configs.num_classes");
  }
  if (cfg.has("label_map"))
    o.label_map = parse_label_map(cfg.json("label_map"), cfg.prefix().empty()
                                                             ? "label_map"
                                                             : cfg.prefix() + ".label_map");
  const auto input_size = cfg.get<std::vector<int64_t>>("input_size", {512, 512});
  if (input_size.size() != 2 || input_size[0] < 1 || input_size[1] < 1)
    throw Error("segmentation_folder: dataset_configs.input_size must be [height, width]");
  const std::string size =
      "(" + std::to_string(input_size[0]) + ", " + std::to_string(input_size[1]) + ")";
  // Scenic's cityscapes: train inception crop (30-100% of the area) resized to the target
  // size with the mask, paired flip; eval a plain resize (nearest for the mask).
  PipelineConfig pc = PipelineConfig::from_options(
      "segmentation_folder", Task::kSegmentation, options,
      "inception_crop(" + size + ", 30, 100)|flip_lr", "resize(" + size + ")");
  meta.num_classes = o.num_classes;
  meta.input_shape = {-1, 3, input_size[0], input_size[1]};
  auto train = std::make_shared<SegmentationFolderSource>(o, cfg.get<std::string>("train_split", "train"));
  auto eval = std::make_shared<SegmentationFolderSource>(o, cfg.get<std::string>("eval_split", "val"));
  return make_pipeline_dataset(std::move(pc), train, {{"valid", eval}, {"test", eval}},
                               std::move(meta));
}

}  // namespace scenic::dataset
