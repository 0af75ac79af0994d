#include "scenic/dataset_lib/tfds.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <fstream>
#include <iterator>
#include <thread>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "scenic/common_lib/testing.h"
#include "scenic/common_lib/tf_example.h"
#include "scenic/dataset_lib/test_util.h"
#include "scenic/dataset_lib/tfds_info.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::read_raw;
using testing::TempDir;
using testing::write_raw;

// Prepared by real TFDS (tools/fixtures/make_tfrecord_fixtures.py): scenic_tiny 1.0.0,
// 5x6 RGB PNGs, ClassLabel(circle, square, triangle), train 8 = 4 + 4, test 5 = 2 + 3.
const std::string kDataDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/dataset_lib/testdata/tfds";
const std::string kVersionDir = kDataDir + "/scenic_tiny/1.0.0";
const std::string kShardPrefix = kVersionDir + "/scenic_tiny-";

const nlohmann::json& expected() {
  static const nlohmann::json j = [] {
    std::ifstream in(std::string(SCENIC_SOURCE_DIR) + "/scenic/dataset_lib/testdata/tfds_expected.json");
    return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  }();
  return j;
}

std::vector<int64_t> expected_labels(const std::string& split) {
  return expected()["splits"][split]["labels"].get<std::vector<int64_t>>();
}

std::vector<int64_t> labels_of(const ExampleSource& src) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < src.size(); ++i) out.push_back(src.load(i).label);
  return out;
}

// The message of the DataError `f` throws.
template <typename F>
std::string data_error_of(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

// A copy of the fixture dataset under `tmp` (data_dir = tmp), to damage.
std::string copy_fixture(const TempDir& tmp) {
  const std::string dir = tmp.file("scenic_tiny/1.0.0");
  ::mkdir(tmp.file("scenic_tiny").c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  for (const char* f : {"dataset_info.json", "features.json", "label.labels.txt",
                        "scenic_tiny-train.tfrecord-00000-of-00002",
                        "scenic_tiny-train.tfrecord-00001-of-00002",
                        "scenic_tiny-test.tfrecord-00000-of-00002",
                        "scenic_tiny-test.tfrecord-00001-of-00002"}) {
    write_raw(dir + "/" + f, read_raw(kVersionDir + "/" + f));
  }
  return dir;
}

TEST(TfdsInfo, ReadsTheDirectoryTfdsPrepared) {
  EXPECT_EQ(resolve_tfds_dir(kDataDir, "scenic_tiny", ""), kVersionDir);
  EXPECT_EQ(resolve_tfds_dir(kDataDir, "scenic_tiny:1.*.*", ""), kVersionDir);
  const TfdsInfo info = load_tfds_info(kVersionDir);
  EXPECT_EQ(info.name, "scenic_tiny");
  EXPECT_EQ(info.version, "1.0.0");
  ASSERT_EQ(info.splits.size(), 2u);
  for (const std::string split : {"train", "test"}) {
    const TfdsSplitInfo& s = info.split(split);
    EXPECT_EQ(s.shard_lengths, expected()["splits"][split]["shard_lengths"].get<std::vector<int64_t>>());
    ASSERT_EQ(s.shard_paths.size(), 2u);
    EXPECT_EQ(s.shard_paths[1], kVersionDir + "/" + expected()["splits"][split]["shards"][1].get<std::string>());
  }
  EXPECT_EQ(info.split("train").num_examples(), 8);
  EXPECT_EQ(info.split("test").num_examples(), 5);
  const TfdsFeatureInfo& image = info.feature("image");
  EXPECT_EQ(image.type, "Image");
  EXPECT_EQ(image.shape, (std::vector<int64_t>{5, 6, 3}));
  EXPECT_EQ(image.encoding_format, "png");
  const TfdsFeatureInfo& label = info.feature("label");
  EXPECT_EQ(label.type, "ClassLabel");
  EXPECT_EQ(label.num_classes, 3);
  EXPECT_EQ(label.class_names, expected()["class_names"].get<std::vector<std::string>>());
  EXPECT_CONTAINS(error_of([&] { info.split("validation"); }),
                  "dataset 'scenic_tiny' has no split 'validation' (splits: train, test)");
  EXPECT_CONTAINS(error_of([&] { info.feature("img"); }), "no feature 'img' (features: image, label)");
}

TEST(TfdsInfo, SplitSlicingMatchesTfds) {
  const TfdsInfo info = load_tfds_info(kVersionDir);
  // Every spec the fixture script read through TFDS itself (labels in TFDS's order).
  ASSERT_GE(expected()["split_specs"].size(), 10u);
  for (const auto& [spec, labels] : expected()["split_specs"].items()) {
    TfdsSource src(info, spec);
    EXPECT_EQ(labels_of(src), labels.get<std::vector<int64_t>>()) << spec;
  }
  // By hand, test has 5 examples: 50% -> round(2.5) = 2, 30% -> round(1.5) = 2 (halves to
  // even, as Python's round); -50% -> round(-2.5) = -2 -> [3, 5).
  const auto r = resolve_split_spec(info, "test[:50%] + test[:30%]+test[-50%:]");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].end, 2);
  EXPECT_EQ(r[1].end, 2);
  EXPECT_EQ(r[2].begin, 3);
  EXPECT_EQ(r[2].end, 5);
}

TEST(TfdsInfo, BadSplitSpecs) {
  const TfdsInfo info = load_tfds_info(kVersionDir);
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "train[6:100]"); }),
                  "bound 100 is outside a split of 8 examples");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "train[x:]"); }), "bad slice bound 'x'");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "train[3]"); }), "expected name[from:to]");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "train[:150%]"); }), "outside [-100%, 100%]");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "train+"); }), "empty part");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "test[:10%]"); }), "selects no examples");
  EXPECT_CONTAINS(error_of([&] { resolve_split_spec(info, "valid"); }), "no split 'valid'");
}

TEST(TfdsInfo, VersionSelectionAndMissingDirectories) {
  TempDir tmp;
  ::mkdir(tmp.file("ds").c_str(), 0755);
  // Prepared: 0.5.0, 1.9.0, 1.10.0. Not prepared: 2.0.0 (no dataset_info.json) and TFDS's
  // temporary "incomplete.*" directory.
  for (const char* v : {"0.5.0", "1.9.0", "1.10.0", "2.0.0", "incomplete.AB12_3.0.0"}) {
    ::mkdir(tmp.file(std::string("ds/") + v).c_str(), 0755);
    if (std::string(v) != "2.0.0") write_raw(tmp.file(std::string("ds/") + v + "/dataset_info.json"), {'{', '}'});
  }
  EXPECT_EQ(resolve_tfds_dir(tmp.path(), "ds", ""), tmp.file("ds/1.10.0"));  // numeric, not lexical
  EXPECT_EQ(resolve_tfds_dir(tmp.path(), "ds", "1.9.*"), tmp.file("ds/1.9.0"));
  EXPECT_EQ(resolve_tfds_dir(tmp.path(), "ds", "*.*.*"), tmp.file("ds/1.10.0"));
  EXPECT_EQ(resolve_tfds_dir(tmp.path(), "ds:0.5.0", ""), tmp.file("ds/0.5.0"));
  EXPECT_CONTAINS(error_of([&] { resolve_tfds_dir(tmp.path(), "ds", "2.0.0"); }),
                  "version 2.0.0 is not prepared (available: 0.5.0, 1.10.0, 1.9.0)");
  EXPECT_CONTAINS(error_of([&] { resolve_tfds_dir(tmp.path(), "ds:1.9.0", "0.5.0"); }),
                  "asks for version 1.9.0 but dataset_configs.version is 0.5.0");
  EXPECT_CONTAINS(error_of([&] { resolve_tfds_dir(tmp.path(), "mnist", ""); }),
                  tmp.file("mnist") + ": no such directory: dataset 'mnist' is not prepared");
  EXPECT_CONTAINS(error_of([&] { resolve_tfds_dir(tmp.file("nowhere"), "mnist", ""); }),
                  "data_dir " + tmp.file("nowhere") + ": no such directory");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(tmp.file("ds/2.0.0")); }),
                  tmp.file("ds/2.0.0") + "/dataset_info.json: no such file");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(tmp.file("ds/1.9.0")); }), "has no dataset name");
  auto write_info = [&](const std::string& text) {
    write_raw(tmp.file("ds/0.5.0/dataset_info.json"), std::vector<uint8_t>(text.begin(), text.end()));
  };
  write_info(R"({"name": 5})");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(tmp.file("ds/0.5.0")); }),
                  tmp.file("ds/0.5.0") + "/dataset_info.json: unexpected layout");
  write_info(R"({"name": "ds", "fileFormat": "array_record", "splits": []})");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(tmp.file("ds/0.5.0")); }),
                  "file format 'array_record' is not supported (only tfrecord)");
  write_info(R"({"name": "ds", "splits": [)");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(tmp.file("ds/0.5.0")); }), "invalid JSON");
}

TEST(TfdsSource, DecodesImagesAndLabelsInShardOrder) {
  const TfdsInfo info = load_tfds_info(kVersionDir);
  for (const std::string split : {"train", "test"}) {
    TfdsSource src(info, split);
    const auto& want = expected()["splits"][split];
    ASSERT_EQ(src.size(), static_cast<int64_t>(want["labels"].size()));
    for (int64_t i = 0; i < src.size(); ++i) {
      const Example ex = src.load(i);
      EXPECT_EQ(ex.label, want["labels"][i].get<int64_t>());
      ASSERT_EQ(ex.image.rows, 5);
      ASSERT_EQ(ex.image.cols, 6);
      ASSERT_EQ(ex.image.type(), CV_8UC3);
      EXPECT_EQ(ex.orig_size, (std::array<int64_t, 2>{5, 6}));
      // tf.io.decode_png's pixels, RGB: [row][column][channel].
      const auto& px = want["pixels_hwc"][i];
      for (int y = 0; y < 5; ++y) {
        for (int x = 0; x < 6; ++x) {
          const cv::Vec3b& p = ex.image.at<cv::Vec3b>(y, x);
          for (int c = 0; c < 3; ++c) ASSERT_EQ(p[c], px[y][x][c].get<int>()) << split << i << y << x << c;
        }
      }
    }
  }
  // The generator's pixel formula, (seed*29 + y*31 + x*7 + c*101) % 256, pins the channel
  // order: whatever the shuffled position, R and G of pixel (0, 0) differ by 101.
  const Example ex = TfdsSource(info, "train").load(0);
  const cv::Vec3b p = ex.image.at<cv::Vec3b>(0, 0);
  EXPECT_EQ((p[1] - p[0] + 256) % 256, 101);
}

TEST(TfdsSource, DescribesShardAndRecord) {
  TfdsSource src(load_tfds_info(kVersionDir), "train[3:]");
  // Example 2 of train[3:] is train record 5 = shard 1 (4 records in shard 0), record 1.
  EXPECT_EQ(src.describe(2), kShardPrefix + "train.tfrecord-00001-of-00002: record 1");
  EXPECT_EQ(src.load(2).source, src.describe(2));
  EXPECT_EQ(src.describe(0), kShardPrefix + "train.tfrecord-00000-of-00002: record 3");
  EXPECT_CONTAINS(error_of([&] { src.load(5); }), "example index 5 out of range [0, 5)");
}

TEST(TfdsSource, CorruptShardsGiveDataErrorsNamingFileAndRecord) {
  TempDir tmp;
  const std::string dir = copy_fixture(tmp);
  const std::string shard0 = dir + "/scenic_tiny-train.tfrecord-00000-of-00002";
  const std::string shard1 = dir + "/scenic_tiny-train.tfrecord-00001-of-00002";
  // Shard 1: flip a byte inside record 0's data (after its 12-byte header).
  auto bytes = read_raw(shard1);
  bytes[40] ^= 0x10;
  write_raw(shard1, bytes);
  // Shard 0: cut 10 bytes before the end of record 2 (each record: 16 + data bytes).
  bytes = read_raw(shard0);
  const auto r0 = common::TFRecordReader(kShardPrefix + "train.tfrecord-00000-of-00002");
  const size_t record2_end = 16 * 3 + r0.read(0).size() + r0.read(1).size() + r0.read(2).size();
  bytes.resize(record2_end - 10);
  write_raw(shard0, bytes);

  TfdsSource src(load_tfds_info(dir), "train");
  EXPECT_EQ(src.size(), 8);  // from dataset_info.json
  EXPECT_EQ(src.load(1).label, expected_labels("train")[1]);
  EXPECT_EQ(src.load(5).label, expected_labels("train")[5]);
  EXPECT_CONTAINS(data_error_of([&] { src.load(2); }), shard0 + ": record 2: truncated record");
  EXPECT_CONTAINS(data_error_of([&] { src.load(3); }),
                  shard0 + ": record 3: missing: the shard holds 2 intact records but "
                           "dataset_info.json lists 4 (the file is truncated or corrupt)");
  EXPECT_CONTAINS(data_error_of([&] { src.load(4); }), shard1 + ": record 0: bad data CRC");
}

TEST(TfdsSource, MalformedExamplesBadImagesAndLabels) {
  TempDir tmp;
  const std::string dir = copy_fixture(tmp);
  const std::string shard = dir + "/scenic_tiny-test.tfrecord-00000-of-00002";
  common::TfExample bad_image, bad_label, no_image, gray;
  bad_image.features["image"] = common::TfFeature::bytes({"not a png"});
  bad_image.features["label"] = common::TfFeature::int64s({1});
  bad_label = bad_image;
  std::vector<uchar> png;
  cv::Mat g(5, 6, CV_8UC1);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 6; ++x) g.at<uchar>(y, x) = static_cast<uchar>(10 * y + x);
  ASSERT_TRUE(cv::imencode(".png", g, png));
  bad_label.features["image"] = common::TfFeature::bytes({std::string(png.begin(), png.end())});
  bad_label.features["label"] = common::TfFeature::int64s({3});  // 3 classes: 0..2
  no_image.features["label"] = common::TfFeature::int64s({0});
  gray = bad_label;
  gray.features["label"] = common::TfFeature::int64s({2});
  // The test split lists 2 records in shard 0; write 2 bad ones, then damage shard 1.
  {
    common::TFRecordWriter w(shard);
    w.write(std::string("\x0a\x05\x00", 3));  // framing fine, Example truncated
    w.write(common::serialize_tf_example(bad_image));
    w.close();
  }
  const std::string shard1 = dir + "/scenic_tiny-test.tfrecord-00001-of-00002";
  {
    common::TFRecordWriter w(shard1);
    w.write(common::serialize_tf_example(bad_label));
    w.write(common::serialize_tf_example(no_image));
    w.write(common::serialize_tf_example(gray));
    w.close();
  }
  TfdsSourceOptions opts;
  opts.num_classes = 3;
  TfdsSource src(load_tfds_info(dir), "test", opts);
  EXPECT_CONTAINS(data_error_of([&] { src.load(0); }),
                  shard + ": record 0: malformed tf.train.Example: length 5 runs past the end");
  EXPECT_CONTAINS(data_error_of([&] { src.load(1); }), shard + ": record 1: cannot decode image (9 bytes");
  EXPECT_CONTAINS(data_error_of([&] { src.load(2); }), shard1 + ": record 0: label 3 out of range [0, 3)");
  EXPECT_CONTAINS(data_error_of([&] { src.load(3); }), shard1 + ": record 1: tf.train.Example has no feature 'image'");
  // A grayscale PNG in an RGB dataset (the feature's shape says 3 channels) is expanded
  // to R = G = B, as TFDS decodes with channels = 3.
  const Example ex = src.load(4);
  ASSERT_EQ(ex.image.type(), CV_8UC3);
  EXPECT_EQ(ex.image.at<cv::Vec3b>(4, 5), cv::Vec3b(45, 45, 45));  // 10 * 4 + 5
  EXPECT_EQ(ex.label, 2);
}

TEST(TfdsSource, OldTfdsLayoutWithoutShardLengths) {
  // dataset_info.json of old TFDS versions may lack shardLengths (the files are counted
  // and indexed), and features.json had a {"type", "content"} layout.
  TempDir tmp;
  const std::string dir = copy_fixture(tmp);
  const std::string info = R"({"name": "scenic_tiny", "version": "1.0.0",
      "splits": [{"name": "train"}, {"name": "test"}]})";
  const std::string features = R"({"type": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
      "content": {"image": {"type": "tensorflow_datasets.core.features.image_feature.Image",
                            "content": {"shape": [null, null, 3], "dtype": "uint8", "encoding_format": "png"}},
                  "label": {"type": "tensorflow_datasets.core.features.class_label_feature.ClassLabel",
                            "content": {"num_classes": 3}}}})";
  write_raw(dir + "/dataset_info.json", std::vector<uint8_t>(info.begin(), info.end()));
  write_raw(dir + "/features.json", std::vector<uint8_t>(features.begin(), features.end()));
  const TfdsInfo parsed = load_tfds_info(dir);
  EXPECT_EQ(parsed.split("train").shard_lengths, (std::vector<int64_t>{-1, -1}));
  EXPECT_EQ(parsed.feature("image").shape, (std::vector<int64_t>{-1, -1, 3}));
  EXPECT_EQ(parsed.feature("label").num_classes, 3);
  TfdsSource src(parsed, "train[-3:]");
  EXPECT_EQ(src.info().split("train").shard_lengths, (std::vector<int64_t>{4, 4}));
  const auto all = expected_labels("train");
  EXPECT_EQ(labels_of(src), std::vector<int64_t>(all.end() - 3, all.end()));
}

TEST(TfdsSource, MissingShardFileIsAnErrorOfTheInfo) {
  TempDir tmp;
  const std::string dir = copy_fixture(tmp);
  testing::remove_file(dir + "/scenic_tiny-test.tfrecord-00001-of-00002");
  EXPECT_CONTAINS(error_of([&] { load_tfds_info(dir); }),
                  dir + "/scenic_tiny-test.tfrecord-00001-of-00002: missing shard 1 of 2 of split 'test'");
}

DatasetOptions options(const std::string& data_dir, int64_t batch_size) {
  DatasetOptions o;
  o.batch_size = batch_size;
  o.prefetch = 0;
  o.dataset_configs.set<std::string>("name", "scenic_tiny");
  o.dataset_configs.set<std::string>("data_dir", data_dir);
  return o;
}

TEST(TfdsDataset, BuildsTheTfdsDatasetThroughTheRegistry) {
  DatasetRegistry registry;
  register_builtin_datasets(registry);
  auto ds = registry.build("tfds", options(kDataDir, 3));
  EXPECT_EQ(ds->meta_data.num_classes, 3);
  EXPECT_EQ(ds->meta_data.num_train_examples, 8);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 5);
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 5, 6}));
  // One eval pass over "test" in record order: batches of 3, the last padded.
  auto it = ds->eval_iter("test");
  std::vector<int64_t> labels;
  std::vector<float> mask;
  int64_t k = 0;
  const auto& px = expected()["splits"]["test"]["pixels_hwc"];
  while (auto b = it->next()) {
    ASSERT_EQ(b->at("inputs").sizes(), (std::vector<int64_t>{3, 3, 5, 6}));
    for (int64_t j = 0; j < 3; ++j, ++k) {
      mask.push_back(b->at("batch_mask")[j].item<float>());
      if (k >= 5) continue;
      labels.push_back(b->at("label")[j].item<int64_t>());
      // NCHW, uint8 / 255: (channel 2, row 4, column 1) of example k.
      EXPECT_FLOAT_EQ(b->at("inputs")[j][2][4][1].item<float>(), px[k][4][1][2].get<int>() / 255.0f);
    }
  }
  EXPECT_EQ(labels, expected_labels("test"));
  EXPECT_EQ(mask, (std::vector<float>{1, 1, 1, 1, 1, 0}));
  auto train = ds->train_iter(0)->next();
  ASSERT_TRUE(train);
  EXPECT_EQ(train->at("label").sizes(), (std::vector<int64_t>{3}));
}

TEST(TfdsDataset, SplitsAndConfigErrors) {
  DatasetOptions o = options(kDataDir, 2);
  o.dataset_configs.set<std::string>("train_split", "train[:75%]");
  o.dataset_configs.set<std::string>("eval_split", "train[75%:]");
  auto ds = build_tfds(o);
  EXPECT_EQ(ds->meta_data.num_train_examples, 6);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 2);

  DatasetOptions unknown = options(kDataDir, 2);
  unknown.dataset_configs.set<std::string>("eval_split", "validation");
  EXPECT_CONTAINS(error_of([&] { build_tfds(unknown); }), "has no split 'validation' (splits: train, test)");
  DatasetOptions missing = options(kDataDir + "/nope", 2);
  EXPECT_CONTAINS(error_of([&] { build_tfds(missing); }), kDataDir + "/nope: no such directory");
  DatasetOptions no_name;
  no_name.batch_size = 2;
  EXPECT_CONTAINS(error_of([&] { build_tfds(no_name); }), "name");
  DatasetOptions bad_key = options(kDataDir, 2);
  bad_key.dataset_configs.set<std::string>("image_key", "picture");
  EXPECT_CONTAINS(error_of([&] { build_tfds(bad_key); }), "no feature 'picture' (features: image, label)");
}

TEST(TfdsDataset, OnErrorSkipDropsTheCorruptRecord) {
  TempDir tmp;
  const std::string dir = copy_fixture(tmp);
  const std::string shard1 = dir + "/scenic_tiny-train.tfrecord-00001-of-00002";
  auto bytes = read_raw(shard1);
  bytes[40] ^= 0x10;  // record 0 of shard 1 = train example 4: bad data CRC
  write_raw(shard1, bytes);
  DatasetOptions o = options(tmp.path(), 4);
  o.dataset_configs.set<std::string>("eval_split", "train");
  EXPECT_CONTAINS(error_of([&] {
                    auto it = build_tfds(o)->eval_iter("test");
                    while (it->next()) {
                    }
                  }),
                  "tfds(scenic_tiny): " + shard1 + ": record 0: bad data CRC");
  o.dataset_configs.set<std::string>("on_error", "skip");
  auto it = build_tfds(o)->eval_iter("test");
  std::vector<int64_t> labels;
  while (auto b = it->next()) {
    for (int64_t j = 0; j < b->at("label").size(0); ++j) {
      if (b->at("batch_mask")[j].item<float>() > 0) labels.push_back(b->at("label")[j].item<int64_t>());
    }
  }
  std::vector<int64_t> want = expected_labels("train");
  want.erase(want.begin() + 4);
  EXPECT_EQ(labels, want);
}

TEST(TfdsSource, ConcurrentFirstLoadsIndexEachShardOnce) {
  const TfdsInfo info = load_tfds_info(kVersionDir);
  for (int round = 0; round < 5; ++round) {
    TfdsSource src(info, "train+test");  // fresh: no shard indexed yet
    std::vector<int64_t> labels(static_cast<size_t>(src.size()), -2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int64_t i = t; i < src.size(); i += 4) labels[static_cast<size_t>(i)] = src.load(i).label;
      });
    }
    for (auto& th : threads) th.join();
    std::vector<int64_t> want = expected_labels("train");
    for (int64_t l : expected_labels("test")) want.push_back(l);
    ASSERT_EQ(labels, want);
  }
}

}  // namespace
}  // namespace scenic::dataset
