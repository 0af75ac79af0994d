#include "scenic/dataset_lib/coco_detection.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <unordered_map>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/pipeline.h"

namespace scenic::dataset {

namespace {

using Json = nlohmann::json;

// Context for messages: "<file>: annotations[3] (id 17)".
struct Where {
  const std::string& file;
  std::string entry;
  std::string str() const { return "coco_detection: " + file + (entry.empty() ? "" : ": " + entry); }
};

const Json& require(const Json& obj, const char* key, const Where& where) {
  if (!obj.is_object()) throw Error(where.str() + ": expected a JSON object");
  auto it = obj.find(key);
  if (it == obj.end()) throw Error(where.str() + ": missing key '" + key + "'");
  return *it;
}

int64_t require_int(const Json& obj, const char* key, const Where& where) {
  const Json& v = require(obj, key, where);
  if (!v.is_number_integer())
    throw Error(where.str() + ": key '" + key + "' must be an integer, got " + v.dump());
  return v.get<int64_t>();
}

std::string require_string(const Json& obj, const char* key, const Where& where) {
  const Json& v = require(obj, key, where);
  if (!v.is_string()) throw Error(where.str() + ": key '" + key + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

int64_t optional_int(const Json& obj, const char* key, int64_t fallback, const Where& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number_integer())
    throw Error(where.str() + ": key '" + key + "' must be an integer, got " + it->dump());
  return it->get<int64_t>();
}

const Json& require_array(const Json& root, const char* key, const Where& where) {
  const Json& v = require(root, key, where);
  if (!v.is_array()) throw Error(where.str() + ": key '" + key + "' must be a list");
  return v;
}

std::string entry_name(const char* list, size_t i, const Json& obj) {
  std::string s = std::string(list) + "[" + std::to_string(i) + "]";
  if (obj.is_object()) {
    auto it = obj.find("id");
    if (it != obj.end() && it->is_number_integer()) s += " (id " + std::to_string(it->get<int64_t>()) + ")";
  }
  return s;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

// DETR (projects/baselines/detr/input_pipeline_detection.py): train RandomHorizontalFlip
// then RandomSelect(multi-scale resize 480..800 / max 1333, resize 400|500|600 ->
// RandomSizeCrop(384, 600) -> multi-scale resize); eval Resize(800, max 1333); both
// scaled to [0, 1] and ImageNet-standardized.
const char* const kCocoDefaultTrainPp = "flip_lr|detr_train_resize|vgg_value_range";
const char* const kCocoDefaultEvalPp =
    "random_resize_multiscale(800, max_size=1333)|vgg_value_range";

std::vector<int64_t> CocoAnnotations::category_ids() const {
  std::vector<int64_t> ids;
  for (const auto& c : categories) ids.push_back(c.id);
  return ids;
}

CocoAnnotations read_coco_annotations(const std::string& json_path) {
  CocoAnnotations out;
  out.path = json_path;
  const Where top{json_path, ""};
  std::ifstream in(json_path);
  if (!in) throw Error(top.str() + ": cannot open the annotation file");
  Json root;
  try {
    root = Json::parse(in);
  } catch (const Json::exception& e) {
    throw Error(top.str() + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(top.str() + ": expected a JSON object at the top level");

  // Categories, sorted by id: DETR's contiguous labels follow the id order.
  const Json& categories = require_array(root, "categories", top);
  for (size_t i = 0; i < categories.size(); ++i) {
    const Where w{json_path, entry_name("categories", i, categories[i])};
    CocoCategory c;
    c.id = require_int(categories[i], "id", w);
    auto name = categories[i].find("name");
    if (name != categories[i].end() && name->is_string()) c.name = name->get<std::string>();
    out.categories.push_back(std::move(c));
  }
  std::sort(out.categories.begin(), out.categories.end(),
            [](const CocoCategory& a, const CocoCategory& b) { return a.id < b.id; });
  for (size_t i = 0; i < out.categories.size(); ++i) {
    if (!out.category_index.emplace(out.categories[i].id, static_cast<int64_t>(i)).second)
      throw Error(top.str() + ": category id " + std::to_string(out.categories[i].id) +
                  " is listed twice in 'categories'");
  }

  const Json& images = require_array(root, "images", top);
  std::unordered_map<int64_t, size_t> image_index;
  for (size_t i = 0; i < images.size(); ++i) {
    const Where w{json_path, entry_name("images", i, images[i])};
    CocoImageRecord r;
    r.id = require_int(images[i], "id", w);
    r.file_name = require_string(images[i], "file_name", w);
    r.width = optional_int(images[i], "width", 0, w);
    r.height = optional_int(images[i], "height", 0, w);
    if (!image_index.emplace(r.id, out.images.size()).second)
      throw Error(w.str() + ": image id " + std::to_string(r.id) + " is listed twice in 'images'");
    out.images.push_back(std::move(r));
  }

  const Json& annotations = require_array(root, "annotations", top);
  for (size_t i = 0; i < annotations.size(); ++i) {
    const Json& a = annotations[i];
    const Where w{json_path, entry_name("annotations", i, a)};
    const int64_t image_id = require_int(a, "image_id", w);
    const int64_t category_id = require_int(a, "category_id", w);
    const Json& bbox = require(a, "bbox", w);
    auto img = image_index.find(image_id);
    if (img == image_index.end())
      throw Error(w.str() + ": image_id " + std::to_string(image_id) + " is not in 'images'");
    auto cat = out.category_index.find(category_id);
    if (cat == out.category_index.end())
      throw Error(w.str() + ": category_id " + std::to_string(category_id) +
                  " is not in 'categories'");
    if (!bbox.is_array() || bbox.size() != 4 ||
        !std::all_of(bbox.begin(), bbox.end(), [](const Json& v) { return v.is_number(); }))
      throw Error(w.str() + ": 'bbox' must be 4 numbers [x, y, width, height], got " + bbox.dump());
    const float x = bbox[0].get<float>(), y = bbox[1].get<float>();
    const float bw = bbox[2].get<float>(), bh = bbox[3].get<float>();
    if (bw < 0 || bh < 0)
      throw Error(w.str() + ": 'bbox' has a negative width or height: " + bbox.dump());
    const int64_t crowd = optional_int(a, "iscrowd", 0, w);
    if (crowd != 0 && crowd != 1)
      throw Error(w.str() + ": 'iscrowd' must be 0 or 1, got " + std::to_string(crowd));
    CocoImageRecord& r = out.images[img->second];
    r.boxes.insert(r.boxes.end(), {x, y, x + bw, y + bh});
    r.labels.push_back(cat->second);
    r.is_crowd.push_back(crowd);
    ++out.num_annotations;
  }
  return out;
}

CocoDetectionSource::CocoDetectionSource(CocoAnnotations annotations, std::string image_dir)
    : annotations_(std::move(annotations)), image_dir_(std::move(image_dir)) {}

std::string CocoDetectionSource::image_path(int64_t index) const {
  const std::string& name = annotations_.images.at(index).file_name;
  if (image_dir_.empty() || (!name.empty() && name.front() == '/')) return name;
  return image_dir_ + (image_dir_.back() == '/' ? "" : "/") + name;
}

std::string CocoDetectionSource::describe(int64_t index) const {
  if (index < 0 || index >= size()) return annotations_.path + " image index " + std::to_string(index);
  return image_path(index) + " (image id " + std::to_string(annotations_.images[index].id) +
         " in " + annotations_.path + ")";
}

Example CocoDetectionSource::load(int64_t index) const {
  if (index < 0 || index >= size())
    throw Error(describe(index) + ": index out of range [0, " + std::to_string(size()) + ")");
  const CocoImageRecord& rec = annotations_.images[index];
  const std::string path = image_path(index);
  if (!file_exists(path)) throw DataError(describe(index) + ": no such image file");
  // TFDS (and so Scenic's DETR) decodes without applying EXIF orientation; the boxes
  // refer to the stored pixel layout.
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  if (bgr.empty()) throw DataError(describe(index) + ": cannot decode the image");
  if ((rec.width > 0 && bgr.cols != rec.width) || (rec.height > 0 && bgr.rows != rec.height)) {
    throw DataError(describe(index) + ": decoded size " + std::to_string(bgr.rows) + "x" +
                    std::to_string(bgr.cols) + " (HxW) differs from the annotation's " +
                    std::to_string(rec.height) + "x" + std::to_string(rec.width));
  }
  Example ex;
  cv::cvtColor(bgr, ex.image, cv::COLOR_BGR2RGB);
  ex.orig_size = {ex.image.rows, ex.image.cols};
  ex.image_id = rec.id;
  ex.source = describe(index);

  // Clip to the image and drop boxes without area (DETR's ConvertCocoPolysToMask).
  const float W = static_cast<float>(ex.image.cols), H = static_cast<float>(ex.image.rows);
  std::vector<float> boxes;
  std::vector<int64_t> labels, crowd;
  for (size_t j = 0; j < rec.labels.size(); ++j) {
    const float x0 = std::clamp(rec.boxes[4 * j], 0.0f, W), y0 = std::clamp(rec.boxes[4 * j + 1], 0.0f, H);
    const float x1 = std::clamp(rec.boxes[4 * j + 2], 0.0f, W), y1 = std::clamp(rec.boxes[4 * j + 3], 0.0f, H);
    if (x1 <= x0 || y1 <= y0) continue;
    boxes.insert(boxes.end(), {x0, y0, x1, y1});
    labels.push_back(rec.labels[j]);
    crowd.push_back(rec.is_crowd[j]);
  }
  const auto n = static_cast<int64_t>(labels.size());
  if (n > 0) {
    ex.boxes = torch::from_blob(boxes.data(), {n, 4}, torch::kFloat32).clone();
    ex.box_labels = torch::from_blob(labels.data(), {n}, torch::kInt64).clone();
    ex.is_crowd = torch::from_blob(crowd.data(), {n}, torch::kInt64).clone();
  }
  return ex;
}

std::unique_ptr<Dataset> build_coco_detection(const DatasetOptions& options) {
  const auto& cfg = options.dataset_configs;
  CocoAnnotations train = read_coco_annotations(cfg.get<std::string>("train_annotations"));
  CocoAnnotations eval = read_coco_annotations(cfg.get<std::string>("eval_annotations"));
  if (train.category_ids() != eval.category_ids())
    throw Error("coco_detection: " + train.path + " and " + eval.path +
                " list different categories; labels would not match");
  PipelineConfig pc = PipelineConfig::from_options("coco_detection", Task::kDetection, options,
                                                   kCocoDefaultTrainPp, kCocoDefaultEvalPp);
  MetaData meta;
  meta.num_classes = static_cast<int64_t>(train.categories.size()) + 1;
  // The largest image the default chains make; batches are padded to their own
  // largest image (collate), not to this size.
  meta.input_shape = {-1, 3, 1333, 1333};
  meta.class_names.push_back("padding");
  for (const auto& c : train.categories) meta.class_names.push_back(c.name);
  auto train_source = std::make_shared<CocoDetectionSource>(std::move(train),
                                                            cfg.get<std::string>("train_images"));
  auto eval_source = std::make_shared<CocoDetectionSource>(std::move(eval),
                                                           cfg.get<std::string>("eval_images"));
  return make_pipeline_dataset(std::move(pc), train_source,
                               {{"valid", eval_source}, {"test", eval_source}}, std::move(meta));
}

}  // namespace scenic::dataset
