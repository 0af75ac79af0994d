#include "scenic/dataset_lib/mnist.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"
#include "scenic/dataset_lib/test_util.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

using testing::fake_label;
using testing::fake_pixel;
using testing::kSide;
using testing::TempDir;

constexpr int kTrain = 10, kTest = 7;

DatasetOptions options(const std::string& dir, int64_t batch_size, int64_t eval_batch_size,
                       uint64_t seed = 0, int64_t prefetch = 2) {
  DatasetOptions o;
  o.batch_size = batch_size;
  o.eval_batch_size = eval_batch_size;
  o.shuffle_seed = seed;
  o.prefetch = prefetch;
  o.dataset_configs.set<std::string>("data_dir", dir);
  return o;
}

// float32 [1, 28, 28]: the fake example's pixels / 255.
torch::Tensor expected_inputs(int split, int i) {
  torch::Tensor t = torch::empty({1, kSide, kSide}, torch::kFloat32);
  auto a = t.accessor<float, 3>();
  for (int r = 0; r < kSide; ++r)
    for (int c = 0; c < kSide; ++c) a[0][r][c] = fake_pixel(split, i, r, c) / 255.0f;
  return t;
}

std::vector<Batch> take(BatchIterator& it, int k) {
  std::vector<Batch> out;
  for (int i = 0; i < k; ++i) {
    auto b = it.next();
    EXPECT_TRUE(b.has_value());
    if (!b) break;
    out.push_back(std::move(*b));
  }
  return out;
}

std::vector<Batch> drain(BatchIterator& it) {
  std::vector<Batch> out;
  while (auto b = it.next()) out.push_back(std::move(*b));
  return out;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (const auto& [key, t] : a[i]) {
      ASSERT_TRUE(b[i].count(key)) << key;
      EXPECT_TRUE(torch::equal(t, b[i].at(key))) << "batch " << i << " key " << key;
    }
  }
}

std::vector<int64_t> labels_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) {
    auto l = b.at("label");
    for (int64_t j = 0; j < l.size(0); ++j) out.push_back(l[j].item<int64_t>());
  }
  return out;
}

class FakeMnist : public ::testing::Test {
 protected:
  void SetUp() override { testing::write_fake_mnist(dir_.path(), kTrain, kTest, /*gz=*/true); }
  std::unique_ptr<Dataset> build(int64_t bs, int64_t ebs, uint64_t seed = 0,
                                 int64_t prefetch = 2) {
    return build_fashion_mnist(options(dir_.path(), bs, ebs, seed, prefetch));
  }
  TempDir dir_;
};

TEST_F(FakeMnist, MetaData) {
  auto ds = build(4, 3);
  const MetaData& m = ds->meta_data;
  EXPECT_EQ(m.num_classes, 10);
  EXPECT_EQ(m.input_shape, (std::vector<int64_t>{-1, 1, 28, 28}));
  EXPECT_EQ(m.num_train_examples, kTrain);
  EXPECT_EQ(m.num_eval_examples, kTest);
  EXPECT_FALSE(m.target_is_onehot);
  EXPECT_EQ(m.input_dtype, torch::kFloat32);
}

TEST_F(FakeMnist, RegisteredUnderScenicNames) {
  DatasetRegistry registry;
  register_builtin_datasets(registry);
  EXPECT_EQ(registry.names(),
            (std::vector<std::string>{"cifar10", "cifar100", "coco_detection", "fashion_mnist", "image_folder",
                                      "mnist", "segmentation_folder", "shapes", "tfds"}));
  auto ds = registry.build("mnist", options(dir_.path(), 2, 2));
  EXPECT_EQ(ds->meta_data.num_train_examples, kTrain);
}

TEST_F(FakeMnist, TrainBatchesHaveKeysShapesAndExactValues) {
  auto ds = build(4, 3);
  auto it = ds->train_iter(0);
  for (const Batch& b : take(*it, 3)) {
    ASSERT_EQ(b.size(), 3u);
    const auto& inputs = b.at("inputs");
    EXPECT_EQ(inputs.scalar_type(), torch::kFloat32);
    EXPECT_EQ(inputs.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
    EXPECT_EQ(b.at("label").scalar_type(), torch::kInt64);
    EXPECT_EQ(b.at("label").sizes(), (std::vector<int64_t>{4}));
    EXPECT_TRUE(torch::equal(b.at("batch_mask"), torch::ones({4}, torch::kFloat32)));
    for (int64_t j = 0; j < 4; ++j) {
      // Train labels are i % 10 for 10 examples, so the label names the example.
      const int i = static_cast<int>(b.at("label")[j].item<int64_t>());
      EXPECT_TRUE(torch::equal(inputs[j], expected_inputs(0, i))) << "example " << i;
    }
  }
}

TEST_F(FakeMnist, EveryExampleOncePerEpoch) {
  auto ds = build(4, 3, /*seed=*/17);
  auto it = ds->train_iter(0);
  std::vector<int64_t> stream = labels_of(take(*it, 10));  // 40 positions = 4 epochs
  for (int e = 0; e < 4; ++e) {
    std::vector<int64_t> epoch(stream.begin() + e * kTrain, stream.begin() + (e + 1) * kTrain);
    std::sort(epoch.begin(), epoch.end());
    EXPECT_EQ(epoch, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "epoch " << e;
  }
  // Shuffled, and differently per epoch.
  std::vector<int64_t> e0(stream.begin(), stream.begin() + 10), e1(stream.begin() + 10,
                                                                   stream.begin() + 20);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST_F(FakeMnist, SameSeedSameBatchesOtherSeedOtherOrder) {
  auto a = build(4, 3, 5), b = build(4, 3, 5), c = build(4, 3, 6);
  auto ia = a->train_iter(0), ib = b->train_iter(0), ic = c->train_iter(0);
  auto ba = take(*ia, 6), bb = take(*ib, 6), bc = take(*ic, 6);
  expect_same_batches(ba, bb);
  EXPECT_NE(labels_of(ba), labels_of(bc));
}

TEST_F(FakeMnist, ResumeAtStepEqualsKthBatch) {
  auto ds = build(4, 3, 11);
  auto fresh = ds->train_iter(0);
  auto all = take(*fresh, 9);
  // Batch 2 covers stream positions 8..11, across the first epoch boundary.
  for (int k : {1, 2, 3, 5, 7}) {
    auto resumed = ds->train_iter(k);
    auto got = take(*resumed, 2);
    expect_same_batches(got, std::vector<Batch>(all.begin() + k, all.begin() + k + 2));
  }
}

TEST_F(FakeMnist, EvalIsOnePassInOrderWithPadding) {
  auto ds = build(4, 3);
  for (const std::string split : {"valid", "test"}) {
    auto it = ds->eval_iter(split);
    auto batches = drain(*it);
    ASSERT_EQ(batches.size(), 3u) << split;  // ceil(7 / 3)
    for (size_t k = 0; k < 3; ++k) {
      const Batch& b = batches[k];
      EXPECT_EQ(b.at("inputs").sizes(), (std::vector<int64_t>{3, 1, 28, 28}));
      for (int j = 0; j < 3; ++j) {
        const int i = static_cast<int>(k) * 3 + j;
        if (i < kTest) {
          EXPECT_EQ(b.at("label")[j].item<int64_t>(), fake_label(1, i));
          EXPECT_TRUE(torch::equal(b.at("inputs")[j], expected_inputs(1, i))) << i;
          EXPECT_EQ(b.at("batch_mask")[j].item<float>(), 1.0f);
        } else {
          EXPECT_EQ(b.at("label")[j].item<int64_t>(), 0);
          EXPECT_EQ(b.at("inputs")[j].abs().sum().item<float>(), 0.0f);
          EXPECT_EQ(b.at("batch_mask")[j].item<float>(), 0.0f);
        }
      }
    }
    EXPECT_TRUE(torch::equal(batches[2].at("batch_mask"), torch::tensor({1.0f, 0.0f, 0.0f})));
    EXPECT_FALSE(it->next().has_value());
  }
}

// Two processes with batch 2 each see, concatenated, the batches of one process with
// batch 4 (train, across epoch boundaries); eval splits every global batch of 2 x 2 in
// order, padded, with the same number of batches on both (7 examples: 2 each).
TEST_F(FakeMnist, TwoProcessesSliceTheGlobalBatch) {
  auto whole = build(4, 4, 3);
  auto all = take(*whole->train_iter(0), 6);
  std::vector<std::vector<Batch>> parts, evals;
  for (int64_t p = 0; p < 2; ++p) {
    DatasetOptions o = options(dir_.path(), 2, 2, 3, 2);
    o.process_index = p;
    o.process_count = 2;
    auto ds = build_fashion_mnist(o);
    parts.push_back(take(*ds->train_iter(0), 6));
    evals.push_back(drain(*ds->eval_iter("test")));
  }
  for (size_t k = 0; k < all.size(); ++k)
    for (const std::string key : {"inputs", "label"})
      EXPECT_TRUE(torch::equal(torch::cat({parts[0][k].at(key), parts[1][k].at(key)}), all[k].at(key)))
          << "step " << k << " " << key;
  // Global eval batches [0..3], [4..7]: process 0 gets {0,1}, {4,5}; process 1 {2,3}, {6, pad}.
  ASSERT_EQ(evals[0].size(), 2u);
  ASSERT_EQ(evals[1].size(), 2u);
  EXPECT_EQ(labels_of(evals[0]), (std::vector<int64_t>{fake_label(1, 0), fake_label(1, 1), fake_label(1, 4),
                                                        fake_label(1, 5)}));
  EXPECT_EQ(labels_of(evals[1]), (std::vector<int64_t>{fake_label(1, 2), fake_label(1, 3), fake_label(1, 6), 0}));
  EXPECT_TRUE(torch::equal(evals[1][1].at("batch_mask"), torch::tensor({1.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(evals[1][1].at("inputs")[0], expected_inputs(1, 6)));
  DatasetOptions bad = options(dir_.path(), 6, 2);
  bad.process_count = 2;
  EXPECT_NE(error_of([&] { build_fashion_mnist(bad); }).find("batch_size 12 is larger than the 10"), std::string::npos);
}

// With a pp string the examples go through the pipeline: with no ops the batches equal
// the array path's (same stream order, same /255 normalization); flip_lr mirrors some.
TEST_F(FakeMnist, PpStringsUseThePipelineWithTheSameBatches) {
  auto arrays = build(4, 3, 9);
  DatasetOptions o = options(dir_.path(), 4, 3, 9);
  o.dataset_configs.set<std::string>("pp_train", "");
  o.dataset_configs.set<std::string>("pp_eval", "");
  auto piped = build_fashion_mnist(o);
  EXPECT_EQ(piped->meta_data.input_shape, arrays->meta_data.input_shape);
  EXPECT_EQ(piped->meta_data.num_train_examples, kTrain);
  auto a = take(*arrays->train_iter(0), 5), b = take(*piped->train_iter(0), 5);
  for (size_t k = 0; k < a.size(); ++k)
    for (const std::string key : {"inputs", "label", "batch_mask"})
      EXPECT_TRUE(torch::equal(a[k].at(key), b[k].at(key))) << "step " << k << " " << key;
  expect_same_batches(drain(*arrays->eval_iter("test")), drain(*piped->eval_iter("test")));

  o.dataset_configs.set<std::string>("pp_train", "flip_lr");
  auto flipped = take(*build_fashion_mnist(o)->train_iter(0), 5);
  // The input shape is what the pp chain makes.
  o.dataset_configs.set<std::string>("pp_train", "resize(40)");
  EXPECT_EQ(build_fashion_mnist(o)->meta_data.input_shape, (std::vector<int64_t>{-1, 1, 40, 40}));
  int mirrored = 0;
  for (size_t k = 0; k < a.size(); ++k)
    for (int64_t j = 0; j < 4; ++j) {
      const auto x = a[k].at("inputs")[j], y = flipped[k].at("inputs")[j];
      const bool same = torch::equal(x, y), mirror = torch::equal(x.flip({2}), y);
      EXPECT_TRUE(same || mirror) << "step " << k << " slot " << j;
      mirrored += !same && mirror;
    }
  EXPECT_GT(mirrored, 0);  // 20 draws of p = 0.5 (and the fake images are not symmetric)
  EXPECT_LT(mirrored, 20);
}

TEST_F(FakeMnist, EvalBatchSizeDefaultsToBatchSizeAndMayExceedSplit) {
  auto ds = build(4, 0);
  auto batches = drain(*ds->eval_iter("test"));
  ASSERT_EQ(batches.size(), 2u);  // 4 + 3 real, one padded
  EXPECT_TRUE(torch::equal(batches[1].at("batch_mask"), torch::tensor({1.0f, 1.0f, 1.0f, 0.0f})));

  auto big = build(4, 16);
  auto one = drain(*big->eval_iter("valid"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].at("batch_mask").sum().item<float>(), 7.0f);
}

TEST_F(FakeMnist, UnknownEvalSplitListsValidOnes) {
  auto ds = build(4, 3);
  std::string msg = error_of([&] { ds->eval_iter("validation"); });
  EXPECT_NE(msg.find("fashion_mnist: unknown eval split 'validation'; valid splits: test, valid"),
            std::string::npos)
      << msg;
}

TEST_F(FakeMnist, PrefetchOnAndOffGiveIdenticalBatches) {
  auto sync = build(3, 3, 8, /*prefetch=*/0);
  auto async = build(3, 3, 8, /*prefetch=*/4);
  expect_same_batches(take(*sync->train_iter(2), 8), take(*async->train_iter(2), 8));
  expect_same_batches(drain(*sync->eval_iter("test")), drain(*async->eval_iter("test")));
}

TEST_F(FakeMnist, DestroyMidStreamIsPromptAndIteratorsOutliveDataset) {
  auto ds = build(2, 3, 0, /*prefetch=*/8);
  auto t0 = std::chrono::steady_clock::now();
  {
    auto it = ds->train_iter(0);
    it->next();
  }
  {
    auto it = ds->eval_iter("test");
    it->next();
  }
  // A hang would be minutes; this only guards against one.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));

  auto it = ds->train_iter(0);
  auto eval = ds->eval_iter("test");
  ds.reset();
  EXPECT_EQ(take(*it, 7).size(), 7u);
  EXPECT_EQ(drain(*eval).size(), 3u);
}

TEST_F(FakeMnist, BatchSizeErrors) {
  std::string msg = error_of([&] { build(0, 3); });
  EXPECT_NE(msg.find("batch_size must be > 0, got 0"), std::string::npos) << msg;
  msg = error_of([&] { build(11, 3); });
  EXPECT_NE(msg.find("batch_size 11 is larger than the 10 training examples"), std::string::npos)
      << msg;
  msg = error_of([&] { build(4, -1); });
  EXPECT_NE(msg.find("eval_batch_size must be > 0, got -1"), std::string::npos) << msg;
}

TEST(MnistFiles, RawFilesAndGzMixed) {
  TempDir dir;
  testing::write_fake_mnist(dir.path(), kTrain, kTest, /*gz=*/false);
  // Replace the test labels by a gzipped copy: `name` and `name.gz` are both accepted.
  auto labels = testing::read_raw(dir.file("t10k-labels-idx1-ubyte"));
  testing::remove_file(dir.file("t10k-labels-idx1-ubyte"));
  testing::write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), labels);
  MnistArrays a = load_mnist_arrays(dir.path());
  EXPECT_EQ(a.train.images.sizes(), (std::vector<int64_t>{kTrain, 1, 28, 28}));
  EXPECT_EQ(a.test.labels.sizes(), (std::vector<int64_t>{kTest}));
  for (int i = 0; i < kTest; ++i) EXPECT_EQ(a.test.labels[i].item<int64_t>(), fake_label(1, i));
  EXPECT_EQ(a.test.images[6][0][27][1].item<int>(), fake_pixel(1, 6, 27, 1));
}

TEST(MnistFiles, CountMismatchNamesBothFiles) {
  TempDir dir;
  testing::write_fake_mnist(dir.path(), kTrain, kTest, /*gz=*/true);
  std::vector<uint8_t> nine(9, 1);
  testing::write_gz(dir.file("train-labels-idx1-ubyte.gz"), testing::idx_bytes(0x08, {9}, nine));
  std::string msg = error_of([&] { load_mnist_arrays(dir.path()); });
  EXPECT_NE(msg.find(dir.file("train-images-idx3-ubyte.gz") + ": has 10 images but " +
                     dir.file("train-labels-idx1-ubyte.gz") + " has 9 labels"),
            std::string::npos)
      << msg;
}

TEST(MnistFiles, LabelOutOfRangeNamesFile) {
  TempDir dir;
  testing::write_fake_mnist(dir.path(), kTrain, kTest, /*gz=*/false);
  std::vector<uint8_t> labels(kTest, 3);
  labels[4] = 10;
  testing::write_raw(dir.file("t10k-labels-idx1-ubyte"), testing::idx_bytes(0x08, {kTest}, labels));
  std::string msg = error_of([&] { load_mnist_arrays(dir.path()); });
  EXPECT_NE(msg.find(dir.file("t10k-labels-idx1-ubyte") + ": label 10 out of range [0, 10)"),
            std::string::npos)
      << msg;
}

TEST(MnistFiles, MissingFileAndMissingDir) {
  TempDir dir;
  testing::write_fake_mnist(dir.path(), kTrain, kTest, /*gz=*/true);
  testing::remove_file(dir.file("t10k-images-idx3-ubyte.gz"));
  std::string msg = error_of([&] { build_mnist(options(dir.path(), 2, 2)); });
  EXPECT_NE(msg.find(dir.file("t10k-images-idx3-ubyte") + ": not found"), std::string::npos)
      << msg;
  msg = error_of([&] { build_mnist(options(dir.file("absent"), 2, 2)); });
  EXPECT_NE(msg.find(dir.file("absent") + ": data directory does not exist"), std::string::npos)
      << msg;
}

TEST(MnistFiles, DataDirDefaultIsReadThroughConfig) {
  DatasetOptions o;
  o.batch_size = 2;
  o.eval_batch_size = 2;
  // Whether or not MNIST is installed here, the default directory is the one used.
  try {
    build_mnist(o);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(kDefaultMnistDir), std::string::npos) << e.what();
  }
  EXPECT_EQ(o.dataset_configs.unused_keys(), std::vector<std::string>{});
  EXPECT_EQ(o.dataset_configs.get<std::string>("data_dir"), kDefaultMnistDir);  // recorded
}

// The real Debian `dataset-fashion-mnist` files, through the default data_dir.
TEST(RealFashionMnist, CountsHistogramAndRange) {
  if (!testing::is_directory(kDefaultFashionMnistDir)) {
    FAIL() << kDefaultFashionMnistDir << " is missing: scripts/setup.sh installs dataset-fashion-mnist";
  }
  DatasetOptions o;
  o.batch_size = 128;
  o.eval_batch_size = 1000;
  auto ds = build_fashion_mnist(o);
  EXPECT_EQ(ds->meta_data.num_train_examples, 60000);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 10000);
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 1, 28, 28}));
  auto& arrays = dynamic_cast<ArrayDataset&>(*ds);
  EXPECT_TRUE(torch::equal(torch::bincount(arrays.eval_split("test").labels),
                           torch::full({10}, 1000, torch::kInt64)));
  EXPECT_TRUE(torch::equal(torch::bincount(arrays.train_split().labels),
                           torch::full({10}, 6000, torch::kInt64)));

  auto train = take(*ds->train_iter(0), 3);
  for (const auto& b : train) {
    EXPECT_GE(b.at("inputs").min().item<float>(), 0.0f);
    EXPECT_LE(b.at("inputs").max().item<float>(), 1.0f);
    EXPECT_GT(b.at("inputs").max().item<float>(), 0.5f);
  }
  auto eval = drain(*ds->eval_iter("test"));
  ASSERT_EQ(eval.size(), 10u);
  torch::Tensor hist = torch::zeros({10}, torch::kInt64);
  for (const auto& b : eval) {
    EXPECT_EQ(b.at("batch_mask").sum().item<float>(), 1000.0f);
    EXPECT_GE(b.at("inputs").min().item<float>(), 0.0f);
    EXPECT_LE(b.at("inputs").max().item<float>(), 1.0f);
    hist += torch::bincount(b.at("label"), {}, 10);
  }
  EXPECT_TRUE(torch::equal(hist, torch::full({10}, 1000, torch::kInt64)));
}

}  // namespace
}  // namespace scenic::dataset
