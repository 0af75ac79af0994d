#include "scenic/dataset_lib/cifar.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/pipeline.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;
using testing::TempDir;
using testing::write_raw;

// Fake CIFAR pixels: file f, record r, channel c, row y, column x.
uint8_t pixel(int f, int r, int c, int y, int x) {
  return static_cast<uint8_t>((f * 7 + r * 13 + c * 31 + y * 3 + x) % 256);
}
int64_t fine_label(int f, int r) { return (f * 11 + r * 3) % 100; }
int64_t coarse_label(int f, int r) { return (f + r) % 20; }
int64_t label10(int f, int r) { return (f + r) % 10; }

// Records as the binary format stores them: label byte(s), then the R, G, B planes.
std::vector<uint8_t> records(int f, int n, bool cifar100) {
  std::vector<uint8_t> out;
  for (int r = 0; r < n; ++r) {
    if (cifar100) {
      out.push_back(static_cast<uint8_t>(coarse_label(f, r)));
      out.push_back(static_cast<uint8_t>(fine_label(f, r)));
    } else {
      out.push_back(static_cast<uint8_t>(label10(f, r)));
    }
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) out.push_back(pixel(f, r, c, y, x));
  }
  return out;
}

// cifar10: data_batch_1..5 with 2 records each (files 1..5), test_batch with 3 (file 0).
void write_cifar10(const std::string& dir) {
  for (int f = 1; f <= 5; ++f) write_raw(dir + "/data_batch_" + std::to_string(f) + ".bin", records(f, 2, false));
  write_raw(dir + "/test_batch.bin", records(0, 3, false));
}

DatasetOptions options(const std::string& dir, int64_t bs) {
  DatasetOptions o;
  o.batch_size = bs;
  o.prefetch = 0;
  o.dataset_configs.set<std::string>("data_dir", dir);
  return o;
}

TEST(Cifar, ReadsRecordsAsHwcRgb) {
  TempDir tmp;
  write_cifar10(tmp.path());
  CifarArrays a = read_cifar_files({tmp.file("data_batch_1.bin"), tmp.file("data_batch_2.bin")}, 1, 0, 10);
  ASSERT_EQ(a.images.sizes(), (std::vector<int64_t>{4, 32, 32, 3}));
  // Example 3 = file 2, record 1; (row 5, column 9, blue): (14 + 13 + 62 + 15 + 9) % 256.
  EXPECT_EQ(a.images[3][5][9][2].item<uint8_t>(), pixel(2, 1, 2, 5, 9));
  EXPECT_EQ(pixel(2, 1, 2, 5, 9), 113);
  EXPECT_EQ(a.images[0][31][0][0].item<uint8_t>(), pixel(1, 0, 0, 31, 0));
  EXPECT_TRUE(torch::equal(a.labels, torch::tensor({label10(1, 0), label10(1, 1), label10(2, 0), label10(2, 1)})));
  ASSERT_EQ(a.files.size(), 2u);
  EXPECT_EQ(a.files[1].second, 2);
}

TEST(Cifar, Cifar10EvalBatchesAreTheTestFile) {
  TempDir tmp;
  write_cifar10(tmp.path());
  DatasetOptions o = options(tmp.path(), 2);
  o.dataset_configs.set<std::string>("pp_eval", "");  // raw pixels / 255
  auto ds = build_cifar10(o);
  EXPECT_EQ(ds->meta_data.num_classes, 10);
  EXPECT_EQ(ds->meta_data.num_train_examples, 10);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 3);
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 32, 32}));
  auto it = ds->eval_iter("test");
  auto b0 = it->next(), b1 = it->next();
  ASSERT_TRUE(b0 && b1);
  EXPECT_FALSE(it->next().has_value());
  // Test record 2 is batch 1 row 0; NCHW (green, row 4, column 30).
  EXPECT_EQ(b1->at("inputs")[0][1][4][30].item<float>(), pixel(0, 2, 1, 4, 30) / 255.0f);
  EXPECT_TRUE(torch::equal(b1->at("label"), torch::tensor({label10(0, 2), int64_t{0}})));
  EXPECT_TRUE(torch::equal(b1->at("batch_mask"), torch::tensor({1.0f, 0.0f})));
}

TEST(Cifar, DefaultChainsStandardizeAndAugment) {
  TempDir tmp;
  write_cifar10(tmp.path());
  auto ds = build_cifar10(options(tmp.path(), 4));
  auto b = ds->eval_iter("valid")->next();
  ASSERT_TRUE(b);
  // (x - 255 * mean) / (255 * std) with Scenic's CIFAR-10 statistics; record 0 of the
  // test file, red, (row 0, column 0): pixel 0.
  const float want = (pixel(0, 0, 0, 0, 0) - 0.4914f * 255) / (0.2470f * 255);
  EXPECT_NEAR(b->at("inputs")[0][0][0][0].item<float>(), want, 1e-4);
  auto train = ds->train_iter(0)->next();
  ASSERT_TRUE(train);
  EXPECT_EQ(train->at("inputs").sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
}

TEST(Cifar, Cifar100FineAndCoarse) {
  TempDir tmp;
  write_raw(tmp.file("train.bin"), records(1, 5, true));
  write_raw(tmp.file("test.bin"), records(2, 4, true));
  DatasetOptions o = options(tmp.path(), 5);
  o.dataset_configs.set<std::string>("pp_train", "");
  auto fine = build_cifar100(o);
  EXPECT_EQ(fine->meta_data.num_classes, 100);
  auto b = fine->train_iter(0)->next();  // one batch = the whole epoch, shuffled
  std::vector<int64_t> got(b->at("label").data_ptr<int64_t>(), b->at("label").data_ptr<int64_t>() + 5);
  std::sort(got.begin(), got.end());
  std::vector<int64_t> want;
  for (int r = 0; r < 5; ++r) want.push_back(fine_label(1, r));
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);

  o.dataset_configs.set<std::string>("label_mode", "coarse");
  CifarArrays coarse = read_cifar_files({tmp.file("test.bin")}, 2, 0, 20);
  EXPECT_TRUE(torch::equal(coarse.labels, torch::tensor({coarse_label(2, 0), coarse_label(2, 1),
                                                          coarse_label(2, 2), coarse_label(2, 3)})));
  EXPECT_EQ(build_cifar100(o)->meta_data.num_classes, 20);
  o.dataset_configs.set<std::string>("label_mode", "medium");
  EXPECT_CONTAINS(error_of([&] { build_cifar100(o); }),
                  "cifar100: dataset_configs.label_mode must be 'fine' or 'coarse', got 'medium'");
}

TEST(Cifar, TarballFolderIsFound) {
  TempDir tmp;
  ASSERT_EQ(::mkdir(tmp.file("cifar-10-batches-bin").c_str(), 0755), 0);
  write_cifar10(tmp.file("cifar-10-batches-bin"));
  EXPECT_EQ(build_cifar10(options(tmp.path(), 2))->meta_data.num_train_examples, 10);
}

TEST(Cifar, BadFilesNameTheFile) {
  TempDir tmp;
  write_cifar10(tmp.path());
  std::vector<uint8_t> bytes = records(3, 2, false);
  bytes.resize(3073 + 100);
  write_raw(tmp.file("data_batch_3.bin"), bytes);
  EXPECT_CONTAINS(error_of([&] { build_cifar10(options(tmp.path(), 2)); }),
                  tmp.file("data_batch_3.bin") +
                      ": truncated: 3173 bytes is not a whole number of 3073-byte records (record 1 is incomplete)");

  write_cifar10(tmp.path());
  bytes = records(0, 3, false);
  bytes[2 * 3073] = 12;  // record 2's label
  write_raw(tmp.file("test_batch.bin"), bytes);
  EXPECT_CONTAINS(error_of([&] { build_cifar10(options(tmp.path(), 2)); }),
                  tmp.file("test_batch.bin") + ": record 2: label 12 out of range [0, 10)");

  testing::remove_file(tmp.file("data_batch_5.bin"));
  EXPECT_CONTAINS(error_of([&] { build_cifar10(options(tmp.path(), 2)); }),
                  tmp.file("data_batch_5.bin") + ": cannot open");
  EXPECT_CONTAINS(error_of([&] { build_cifar10(options(tmp.file("nope"), 2)); }),
                  tmp.file("nope") + ": data directory does not exist");
}

}  // namespace
}  // namespace scenic::dataset
