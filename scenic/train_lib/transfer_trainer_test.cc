// init_from (transfer_trainer.h): parameters copied by name from a checkpoint of ours,
// the head re-initialized when its shape differs, clear errors otherwise.
#include "scenic/train_lib/transfer_trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"
#include "scenic/train_lib/checkpoints.h"

namespace scenic::train {
namespace {

struct Net : torch::nn::Module {
  Net(int64_t hidden, int64_t classes, bool extra = false) {
    dense = register_module("Dense_0", torch::nn::Linear(4, hidden));
    bn = register_module("bn", torch::nn::BatchNorm1d(hidden));
    head = register_module("output_projection", torch::nn::Linear(hidden, classes));
    if (extra) pre_logits = register_module("pre_logits", torch::nn::Linear(hidden, hidden));
  }
  torch::nn::Linear dense{nullptr}, head{nullptr}, pre_logits{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

std::string save(Net& net, const std::string& dir, int64_t step) {
  TrainStateRef state{&net, nullptr, step, "{}"};
  return save_checkpoint(dir, state, 1);
}

TEST(InitFrom, CopiesEverythingButAHeadOfAnotherShape) {
  testing::TempDir tmp;
  torch::manual_seed(0);
  Net source(3, 5, /*extra=*/true);
  {
    torch::NoGradGuard g;
    source.bn->running_mean.fill_(0.25);
  }
  save(source, tmp.file("checkpoints"), 7);
  torch::manual_seed(1);
  Net target(3, 2);
  auto fresh_head = target.head->weight.clone();
  ASSERT_FALSE(torch::equal(target.dense->weight, source.dense->weight));
  // A workdir resolves to its latest checkpoint.
  auto report = init_from_checkpoint(tmp.path(), target);
  EXPECT_EQ(report.step, 7);
  EXPECT_EQ(report.path, tmp.file("checkpoints") + "/checkpoint_7");
  EXPECT_TRUE(torch::equal(target.dense->weight, source.dense->weight));
  EXPECT_TRUE(torch::equal(target.dense->bias, source.dense->bias));
  EXPECT_TRUE(torch::equal(target.bn->weight, source.bn->weight));
  EXPECT_TRUE(torch::equal(target.bn->running_mean, source.bn->running_mean));
  EXPECT_TRUE(torch::equal(target.head->weight, fresh_head));  // [2, 3] vs the checkpoint's [5, 3]
  // Loaded: Dense_0.{weight,bias}, bn.{weight,bias}; buffers bn.{running_mean,running_var,num_batches_tracked}.
  EXPECT_EQ(report.loaded.size(), 7u);
  ASSERT_EQ(report.reinitialized.size(), 2u);
  EXPECT_CONTAINS(report.reinitialized[0], "output_projection.weight [2, 3] (checkpoint [5, 3])");
  EXPECT_EQ(report.unused, (std::vector<std::string>{"pre_logits.weight", "pre_logits.bias"}));
  EXPECT_CONTAINS(report.describe(), "loaded 7 tensors");
}

TEST(InitFrom, SameShapeHeadIsLoadedUnlessSkipped) {
  testing::TempDir tmp;
  torch::manual_seed(0);
  Net source(3, 2);
  const auto path = save(source, tmp.path(), 1);
  torch::manual_seed(1);
  Net a(3, 2);
  init_from_checkpoint(path, a);
  EXPECT_TRUE(torch::equal(a.head->weight, source.head->weight));
  torch::manual_seed(1);
  Net b(3, 2);
  auto fresh = b.head->weight.clone();
  auto report = init_from_checkpoint(path, b, "^output_projection");
  EXPECT_TRUE(torch::equal(b.head->weight, fresh));
  EXPECT_TRUE(torch::equal(b.dense->weight, source.dense->weight));
  EXPECT_EQ(report.reinitialized.size(), 2u);
}

TEST(InitFrom, ErrorsNameTheParameterAndShapes) {
  testing::TempDir tmp;
  Net source(3, 2);
  const auto path = save(source, tmp.path(), 1);
  Net wider(4, 2);
  auto e = testing::error_of([&] { init_from_checkpoint(path, wider); });
  EXPECT_CONTAINS(e, "'Dense_0.weight' has shape [3, 4]");
  EXPECT_CONTAINS(e, "expects [4, 4]");
  Net extra(3, 2, /*extra=*/true);
  e = testing::error_of([&] { init_from_checkpoint(path, extra); });
  EXPECT_CONTAINS(e, "has no parameter 'pre_logits.weight'");
  // ... unless skipped.
  init_from_checkpoint(path, extra, "^pre_logits\\.");
  e = testing::error_of([&] { init_from_checkpoint(tmp.file("nothing"), extra); });
  EXPECT_CONTAINS(e, "does not exist");
  e = testing::error_of([&] { resolve_checkpoint_path(tmp.path() + "/.."); });
  EXPECT_CONTAINS(e, "no checkpoint_<step>");
}

}  // namespace
}  // namespace scenic::train
