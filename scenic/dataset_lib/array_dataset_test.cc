#include "scenic/dataset_lib/array_dataset.h"

#include <gtest/gtest.h>

#include "scenic/common_lib/testing.h"
#include <torch/torch.h>

#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

// n RGB 2x2 images; every pixel of image i is i (so values are easy to check).
ArraySplit make_split(int64_t n, int64_t num_classes) {
  torch::Tensor values = torch::arange(n, torch::kInt64);
  return {values.to(torch::kUInt8).view({n, 1, 1, 1}).expand({n, 3, 2, 2}).contiguous(),
          values.remainder(num_classes)};
}

DatasetOptions opts(int64_t bs, int64_t ebs, int64_t prefetch = 0) {
  DatasetOptions o;
  o.batch_size = bs;
  o.eval_batch_size = ebs;
  o.prefetch = prefetch;
  return o;
}

TEST(ArrayDataset, MetaDataFromArrays) {
  ArrayDataset ds("toy", make_split(20, 4), {{"test", make_split(5, 4)}}, 4, opts(3, 2));
  EXPECT_EQ(ds.meta_data.input_shape, (std::vector<int64_t>{-1, 3, 2, 2}));
  EXPECT_EQ(ds.meta_data.num_train_examples, 20);
  EXPECT_EQ(ds.meta_data.num_eval_examples, 5);  // no "valid": the "test" split
  EXPECT_EQ(ds.meta_data.num_classes, 4);
}

TEST(ArrayDataset, ValidSplitCountsForMetaData) {
  ArrayDataset ds("toy", make_split(20, 4), {{"test", make_split(5, 4)}, {"valid", make_split(8, 4)}},
                  4, opts(3, 2));
  EXPECT_EQ(ds.meta_data.num_eval_examples, 8);
}

TEST(ArrayDataset, GatherBatchNormalizes) {
  ArraySplit s = make_split(300, 7);
  Batch b = gather_batch(s, torch::tensor({255, 3, 0}, torch::kInt64));
  EXPECT_EQ(b.at("inputs").sizes(), (std::vector<int64_t>{3, 3, 2, 2}));
  // uint8 255 -> 1.0; 3 -> 3/255 (exactly as float division rounds it).
  EXPECT_EQ(b.at("inputs")[0][2][1][1].item<float>(), 1.0f);
  EXPECT_EQ(b.at("inputs")[1][0][0][0].item<float>(), 3.0f / 255.0f);
  EXPECT_EQ(b.at("inputs")[2].abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(b.at("label"), torch::tensor({255 % 7, 3, 0}, torch::kInt64)));
}

TEST(ArrayDataset, EmptyEvalSplitHasNoBatches) {
  ArrayDataset ds("toy", make_split(4, 2), {{"test", make_split(0, 2)}}, 2, opts(2, 2, 2));
  EXPECT_FALSE(ds.eval_iter("test")->next().has_value());
}

TEST(ArrayDataset, RejectsBadArrays) {
  ArraySplit floats = make_split(4, 2);
  floats.images = floats.images.to(torch::kFloat32);
  std::string msg = error_of([&] { ArrayDataset("toy", floats, {}, 2, opts(2, 2)); });
  EXPECT_NE(msg.find("toy: train split: images must be uint8 [N, C, H, W], got Float [4, 3, 2, 2]"),
            std::string::npos)
      << msg;

  msg = error_of([&] { ArrayDataset("toy", make_split(4, 2), {{"test", make_split(5, 9)}}, 2, opts(2, 2)); });
  EXPECT_NE(msg.find("toy: test split: label 4 out of range [0, 2)"), std::string::npos) << msg;

  ArraySplit mismatched = make_split(4, 2);
  mismatched.labels = mismatched.labels.narrow(0, 0, 3);
  msg = error_of([&] { ArrayDataset("toy", mismatched, {}, 2, opts(2, 2)); });
  EXPECT_NE(msg.find("toy: train split: 4 images but 3 labels"), std::string::npos) << msg;

  ArraySplit other_shape = make_split(4, 2);
  other_shape.images = other_shape.images.narrow(2, 0, 1).contiguous();
  msg = error_of([&] { ArrayDataset("toy", make_split(4, 2), {{"valid", other_shape}}, 2, opts(2, 2)); });
  EXPECT_NE(msg.find("per-example shapes differ"), std::string::npos) << msg;

  msg = error_of([&] { ArrayDataset("toy", make_split(4, 2), {}, 2, opts(2, 2, -1)); });
  EXPECT_NE(msg.find("toy: prefetch must be >= 0, got -1"), std::string::npos) << msg;

  ArrayDataset ok("toy", make_split(4, 2), {}, 2, opts(2, 2));
  msg = error_of([&] { ok.train_iter(-3); });
  EXPECT_NE(msg.find("start_step must be >= 0, got -3"), std::string::npos) << msg;
  msg = error_of([&] { ok.eval_iter("test"); });
  EXPECT_NE(msg.find("valid splits: (none)"), std::string::npos) << msg;
}

}  // namespace
}  // namespace scenic::dataset
