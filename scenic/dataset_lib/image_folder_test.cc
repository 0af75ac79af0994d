#include "scenic/dataset_lib/image_folder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <set>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/pipeline.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::TempDir;

void mkdirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') ::mkdir(path.substr(0, i).c_str(), 0755);
  }
}

// A solid h x w image of colour (r, g, b) written with OpenCV (which takes BGR).
void write_image(const std::string& path, int r, int g, int b, int h = 12, int w = 10) {
  mkdirs(path.substr(0, path.find_last_of('/')));
  ASSERT_TRUE(cv::imwrite(path, cv::Mat(h, w, CV_8UC3, cv::Scalar(b, g, r)))) << path;
}

// Class c's colour: (40 * c + 10, 7, 200) — distinct red per class.
int red(int c) { return 40 * c + 10; }

DatasetOptions options(const std::string& dir, int64_t bs) {
  DatasetOptions o;
  o.batch_size = bs;
  o.prefetch = 0;
  o.dataset_configs.set<std::string>("data_dir", dir);
  o.dataset_configs.set<int64_t>("image_size", 8);
  return o;
}

std::set<std::string> paths(const std::vector<ImageFile>& files) {
  std::set<std::string> out;
  for (const auto& f : files) out.insert(f.path);
  return out;
}

TEST(ImageFolder, DecodesToRgb) {
  TempDir tmp;
  write_image(tmp.file("x.png"), 30, 20, 10, 3, 5);
  cv::Mat m = read_image_file(tmp.file("x.png"));
  ASSERT_EQ(m.type(), CV_8UC3);
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 5);
  EXPECT_EQ(m.at<cv::Vec3b>(2, 4), cv::Vec3b(30, 20, 10));  // R, G, B
  // JPEG is lossy: a solid colour comes back within a few levels.
  write_image(tmp.file("x.jpg"), 200, 100, 50, 16, 16);
  cv::Vec3b j = read_image_file(tmp.file("x.jpg")).at<cv::Vec3b>(8, 8);
  EXPECT_NEAR(j[0], 200, 4);
  EXPECT_NEAR(j[1], 100, 4);
  EXPECT_NEAR(j[2], 50, 4);
  // A grey PNG becomes 3 equal channels.
  ASSERT_TRUE(cv::imwrite(tmp.file("g.png"), cv::Mat(2, 2, CV_8UC1, cv::Scalar(77))));
  EXPECT_EQ(read_image_file(tmp.file("g.png")).at<cv::Vec3b>(1, 1), cv::Vec3b(77, 77, 77));
}

TEST(ImageFolder, SplitFoldersAndSortedClasses) {
  TempDir tmp;
  const std::string d = tmp.path();
  // Classes created out of order; label = rank of the name: cat 0, dog 1, emu 2.
  write_image(d + "/train/emu/b.png", red(2), 7, 200);
  write_image(d + "/train/emu/a.jpg", red(2), 7, 200);
  write_image(d + "/train/cat/z.PNG", red(0), 7, 200);
  write_image(d + "/train/dog/1.png", red(1), 7, 200);
  mkdirs(d + "/train/dog/.hidden");
  testing::write_raw(d + "/train/dog/notes.txt", {'h', 'i'});
  write_image(d + "/val/dog/v.png", red(1), 7, 200);
  write_image(d + "/test/cat/t.png", red(0), 7, 200);
  write_image(d + "/test/emu/t.png", red(2), 7, 200);
  ImageFolderSplits s = scan_image_folder(d, 0.5, 0);
  EXPECT_EQ(s.classes, (std::vector<std::string>{"cat", "dog", "emu"}));
  ASSERT_EQ(s.train.size(), 4u);
  EXPECT_EQ(s.train[0].path, d + "/train/cat/z.PNG");
  EXPECT_EQ(s.train[0].label, 0);
  EXPECT_EQ(s.train[2].path, d + "/train/emu/a.jpg");  // sorted by name within a class
  EXPECT_EQ(s.train[3].label, 2);
  ASSERT_EQ(s.valid.size(), 1u);
  EXPECT_EQ(s.valid[0].label, 1);
  EXPECT_EQ(paths(s.test), (std::set<std::string>{d + "/test/cat/t.png", d + "/test/emu/t.png"}));

  write_image(d + "/val/fox/f.png", 1, 2, 3);
  EXPECT_CONTAINS(error_of([&] { scan_image_folder(d, 0.5, 0); }),
                  d + "/val/fox: class 'fox' is not among the training classes (cat, dog, emu)");
}

TEST(ImageFolder, FractionSplitIsStratifiedAndSeeded) {
  TempDir tmp;
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 10; ++i)
      write_image(tmp.file(std::string(1, static_cast<char>('a' + c)) + "/" + std::to_string(i) + ".png"), red(c), 7, 200, 2, 2);
  ImageFolderSplits s = scan_image_folder(tmp.path(), 0.3, 5);
  ASSERT_EQ(s.train.size(), 14u);  // 7 + 7
  ASSERT_EQ(s.valid.size(), 6u);   // round(0.3 * 10) = 3 per class
  EXPECT_EQ(std::count_if(s.valid.begin(), s.valid.end(), [](const ImageFile& f) { return f.label == 1; }), 3);
  EXPECT_EQ(paths(s.test), paths(s.valid));  // no test folder: test is valid
  std::set<std::string> all = paths(s.train);
  for (const auto& p : paths(s.valid)) EXPECT_TRUE(all.insert(p).second) << p << " in both splits";
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(paths(scan_image_folder(tmp.path(), 0.3, 5).valid), paths(s.valid));
  EXPECT_NE(paths(scan_image_folder(tmp.path(), 0.3, 6).valid), paths(s.valid));
  EXPECT_CONTAINS(error_of([&] { scan_image_folder(tmp.path(), 1.0, 0); }),
                  "image_folder: dataset_configs.valid_fraction must be in [0, 1), got 1.0");
}

TEST(ImageFolder, DatasetBatchesWithDefaultChains) {
  TempDir tmp;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 2; ++i)
      write_image(tmp.file("train/c" + std::to_string(c) + "/" + std::to_string(i) + ".png"), red(c), 7, 200);
  write_image(tmp.file("valid/c2/v.png"), red(2), 7, 200);
  write_image(tmp.file("valid/c0/v.png"), red(0), 7, 200);
  auto ds = build_image_folder(options(tmp.path(), 2));
  EXPECT_EQ(ds->meta_data.num_classes, 3);
  EXPECT_EQ(ds->meta_data.num_train_examples, 6);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 2);
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 8, 8}));  // image_size 8
  auto b = ds->eval_iter("test")->next();  // no test folder: test = valid
  ASSERT_TRUE(b);
  EXPECT_EQ(b->at("inputs").sizes(), (std::vector<int64_t>{2, 3, 8, 8}));
  EXPECT_TRUE(torch::equal(b->at("label"), torch::tensor({0, 2}, torch::kInt64)));
  // Solid colours survive resize and crop; value_range(0, 1) gives pixel / 255.
  EXPECT_NEAR(b->at("inputs")[1][0][3][3].item<float>(), red(2) / 255.0f, 1e-6);
  EXPECT_NEAR(b->at("inputs")[1][2][7][0].item<float>(), 200 / 255.0f, 1e-6);
  auto t = ds->train_iter(0)->next();
  ASSERT_TRUE(t);
  for (int64_t i = 0; i < 2; ++i) {
    const int64_t label = t->at("label")[i].item<int64_t>();
    EXPECT_NEAR(t->at("inputs")[i][0].mean().item<float>(), red(static_cast<int>(label)) / 255.0f, 1e-5);
  }
}

TEST(ImageFolder, CorruptImageRaisesOrIsSkipped) {
  TempDir tmp;
  for (int i = 0; i < 3; ++i) write_image(tmp.file("train/a/" + std::to_string(i) + ".png"), 1, 2, 3);
  write_image(tmp.file("test/a/0.png"), 1, 2, 3);
  testing::write_raw(tmp.file("test/a/1.jpg"), {0xff, 0xd8, 0xff, 0x00, 0x01, 0x02});
  write_image(tmp.file("test/a/2.png"), 1, 2, 3);
  ImageFileSource src(scan_image_folder(tmp.path(), 0, 0).test);
  EXPECT_THROW(src.load(1), DataError);
  EXPECT_CONTAINS(error_of([&] { src.load(1); }), tmp.file("test/a/1.jpg") + ": cannot decode image");

  DatasetOptions o = options(tmp.path(), 2);
  auto ds = build_image_folder(o);
  auto it = ds->eval_iter("test");
  EXPECT_CONTAINS(error_of([&] { while (it->next()) {} }), "image_folder: " + tmp.file("test/a/1.jpg") + ": cannot decode");

  o.dataset_configs.set<std::string>("on_error", "skip");
  auto skipping = build_image_folder(o);
  int64_t real = 0, batches = 0;
  for (auto e = skipping->eval_iter("test"); auto b = e->next();) {
    real += static_cast<int64_t>(b->at("batch_mask").sum().item<float>());
    ++batches;
  }
  EXPECT_EQ(batches, 2);  // ceil(3 / 2), the second all padding
  EXPECT_EQ(real, 2);
  EXPECT_EQ(dynamic_cast<PipelineDataset&>(*skipping).num_skipped(), 1);
}

TEST(ImageFolder, MissingDirectory) {
  TempDir tmp;
  EXPECT_CONTAINS(error_of([&] { build_image_folder(options(tmp.file("nope"), 2)); }),
                  tmp.file("nope") + ": image folder does not exist (set dataset_configs.data_dir)");
  mkdirs(tmp.file("empty"));
  EXPECT_CONTAINS(error_of([&] { scan_image_folder(tmp.file("empty"), 0.1, 0); }),
                  tmp.file("empty") + ": no class subfolders");
}

}  // namespace
}  // namespace scenic::dataset
