#include "scenic/dataset_lib/pipeline.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <atomic>
#include <set>

#include "scenic/common_lib/testing.h"
#include "scenic/dataset_lib/index_stream.h"

namespace scenic::dataset {
namespace {

using scenic::testing::error_of;

// Example i: a 2 x 2 RGB image with every pixel (i % 200, 1, 2) and label i, so a batch
// shows which examples it holds. Indices in `bad` throw DataError naming "fake/<i>.png".
class FakeSource : public ExampleSource {
 public:
  explicit FakeSource(int64_t n, std::set<int64_t> bad = {}) : n_(n), bad_(std::move(bad)) {}
  int64_t size() const override { return n_; }
  Example load(int64_t i) const override {
    ++loads;
    if (bad_.count(i)) throw DataError(describe(i) + ": corrupt image");
    Example ex;
    ex.image = cv::Mat(2, 2, CV_8UC3, cv::Scalar(static_cast<double>(i % 200), 1, 2));
    ex.label = i;
    ex.image_id = i;
    return ex;
  }
  std::string describe(int64_t i) const override { return "fake/" + std::to_string(i) + ".png"; }
  mutable std::atomic<int64_t> loads{0};

 private:
  int64_t n_;
  std::set<int64_t> bad_;
};

// Test ops, independent of transforms.cc:
//   jitter      image -> float, + u ~ U(0, 1) from the example's RNG (one u per example)
//   invert      uint8 image inverted in place (a cache that shared pixels would show it)
//   fail_on(k)  DataError (without a file name) for label k
const PreprocessRegistry& test_ops() {
  static PreprocessRegistry* reg = [] {
    auto* r = new PreprocessRegistry();
    r->add("jitter", [](const PpArgs&) -> PreprocessOp {
      return [](Example& ex, Rng& rng) {
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        ex.image.convertTo(ex.image, CV_32F, 1.0 / 255.0, u);
      };
    });
    r->add("invert", [](const PpArgs&) -> PreprocessOp {
      return [](Example& ex, Rng&) { cv::bitwise_not(ex.image, ex.image); };
    });
    r->add("fail_on", [](const PpArgs& a) -> PreprocessOp {
      const int64_t k = static_cast<int64_t>(a.number(0, "label"));
      return [k](Example& ex, Rng&) {
        if (ex.label == k) throw DataError("fail_on: label " + std::to_string(k));
      };
    });
    return r;
  }();
  return *reg;
}

PipelineConfig config(int64_t bs, const std::string& train_pp = "jitter",
                      const std::string& eval_pp = "", int64_t workers = 1) {
  PipelineConfig c;
  c.name = "fake";
  c.batch_size = bs;
  c.eval_batch_size = bs;
  c.seed = 7;
  c.prefetch = 2;
  c.num_workers = workers;
  c.train_pp = PreprocessChain::parse(train_pp, test_ops());
  c.eval_pp = PreprocessChain::parse(eval_pp, test_ops());
  return c;
}

std::unique_ptr<Dataset> make(PipelineConfig c, std::shared_ptr<FakeSource> train,
                              std::shared_ptr<FakeSource> eval = nullptr) {
  std::map<std::string, SourcePtr> evals;
  if (eval) evals = {{"valid", eval}, {"test", eval}};
  return make_pipeline_dataset(std::move(c), train, evals, MetaData{});
}

std::vector<Batch> take(BatchIterator& it, int n) {
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) {
    auto b = it.next();
    if (!b) break;
    out.push_back(std::move(*b));
  }
  return out;
}

std::vector<Batch> drain(BatchIterator& it) { return take(it, 1 << 20); }

std::vector<int64_t> labels_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches) {
    auto l = b.at("label"), m = b.at("batch_mask");
    for (int64_t i = 0; i < l.size(0); ++i)
      if (m[i].item<float>() > 0) out.push_back(l[i].item<int64_t>());
  }
  return out;
}

void expect_equal_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (const auto& [k, v] : a[i]) EXPECT_TRUE(torch::equal(v, b[i].at(k))) << "batch " << i << " key " << k;
  }
}

TEST(Pipeline, MetaDataFromSources) {
  auto ds = make(config(3), std::make_shared<FakeSource>(10), std::make_shared<FakeSource>(4));
  EXPECT_EQ(ds->meta_data.num_train_examples, 10);
  EXPECT_EQ(ds->meta_data.num_eval_examples, 4);
  // The train chain's output for example 0: 2 x 2 RGB.
  EXPECT_EQ(ds->meta_data.input_shape, (std::vector<int64_t>{-1, 3, 2, 2}));
}

TEST(Pipeline, JitterDependsOnlyOnSeedStepSlot) {
  auto src = std::make_shared<FakeSource>(10);
  auto one = make(config(4, "jitter", "", 1), src);
  auto three = make(config(4, "jitter", "", 3), src);
  auto a = take(*one->train_iter(0), 6), b = take(*three->train_iter(0), 6);
  expect_equal_batches(a, b);
  // Each example got one offset u in [0, 1): inputs = pixel / 255 + u on every channel,
  // so channel 1 - channel 0 = (1 - (i % 200)) / 255 with i the label.
  const auto& in = a[0].at("inputs");  // [4, 3, 2, 2]
  for (int64_t s = 0; s < 4; ++s) {
    const float i = static_cast<float>(a[0].at("label")[s].item<int64_t>());
    const float u = in[s][0][0][0].item<float>() - i / 255.0f;
    EXPECT_GE(u, -1e-6f);
    EXPECT_LT(u, 1.0f);
    EXPECT_NEAR(in[s][1][1][1].item<float>() - in[s][0][1][1].item<float>(), (1.0f - i) / 255.0f, 1e-6);
  }
  // Offsets differ between slots (a shared RNG would be a bug) and with the seed.
  EXPECT_NE(in[0][0][0][0].item<float>() - a[0].at("label")[0].item<int64_t>() / 255.0f,
            in[1][0][0][0].item<float>() - a[0].at("label")[1].item<int64_t>() / 255.0f);
  PipelineConfig other = config(4);
  other.seed = 8;
  auto c = take(*make(std::move(other), src)->train_iter(0), 1);
  EXPECT_FALSE(torch::equal(a[0].at("inputs"), c[0].at("inputs")));
}

TEST(Pipeline, TrainBatchesFollowTheIndexStream) {
  auto ds = make(config(4), std::make_shared<FakeSource>(10));
  auto batches = take(*ds->train_iter(0), 5);  // 20 indices = two epochs of 10
  std::vector<int64_t> stream;
  TrainIndexStream want(10, 4, 7);
  for (int k = 0; k < 5; ++k)
    for (int64_t i : want.next()) stream.push_back(i);
  EXPECT_EQ(labels_of(batches), stream);
  for (const auto& b : batches) EXPECT_EQ(b.at("batch_mask").sum().item<float>(), 4.0f);
}

TEST(Pipeline, ResumeEqualsFreshIterator) {
  auto ds = make(config(3, "jitter", "", 2), std::make_shared<FakeSource>(11));
  auto fresh = take(*ds->train_iter(0), 9);
  auto resumed = take(*ds->train_iter(6), 3);
  expect_equal_batches(std::vector<Batch>(fresh.begin() + 6, fresh.end()), resumed);
}

// Train: process p of P gets slots [p*B, (p+1)*B) of the global batch, so the P
// processes' batches, concatenated, equal one process's batch P*B: the same examples
// and the same random augmentation ("jitter" draws from the slot's RNG). Eval: i % P == p.
TEST(Pipeline, ProcessesSliceTheGlobalBatchAndShardEval) {
  for (int64_t P : {2, 3}) {
    const int64_t n = 10, B = 2, steps = 7;  // 7 steps of P*B cross epoch boundaries
    PipelineConfig one = config(P * B);
    auto whole = take(*make(std::move(one), std::make_shared<FakeSource>(n))->train_iter(0), steps);
    std::vector<std::vector<Batch>> parts;
    for (int64_t p = 0; p < P; ++p) {
      PipelineConfig c = config(B);
      c.process_index = p;
      c.process_count = P;
      auto ds = make(std::move(c), std::make_shared<FakeSource>(n), std::make_shared<FakeSource>(n));
      parts.push_back(take(*ds->train_iter(0), steps));
      EXPECT_EQ(parts.back()[0].at("inputs").size(0), B);
      // Resuming a process at step 4 continues its own slice.
      auto resumed = take(*ds->train_iter(4), 3);
      expect_equal_batches(std::vector<Batch>(parts.back().begin() + 4, parts.back().end()), resumed);
      // Eval: the shard i % P == p, in order.
      std::vector<int64_t> eval = labels_of(drain(*ds->eval_iter("valid")));
      std::vector<int64_t> want;
      for (int64_t i = p; i < n; i += P) want.push_back(i);
      EXPECT_EQ(eval, want);
    }
    for (int64_t k = 0; k < steps; ++k) {
      std::vector<torch::Tensor> inputs, labels;
      for (int64_t p = 0; p < P; ++p) {
        inputs.push_back(parts[p][k].at("inputs"));
        labels.push_back(parts[p][k].at("label"));
      }
      EXPECT_TRUE(torch::equal(torch::cat(labels), whole[k].at("label"))) << "P " << P << " step " << k;
      EXPECT_TRUE(torch::equal(torch::cat(inputs), whole[k].at("inputs"))) << "P " << P << " step " << k;
    }
    // Within each epoch of the global stream, every example once (first 10 / (P*B) steps).
    std::set<int64_t> first_epoch;
    for (int64_t k = 0; k < n / (P * B); ++k)
      for (int64_t i : labels_of({whole[k]})) first_epoch.insert(i);
    EXPECT_EQ(first_epoch.size(), static_cast<size_t>(n / (P * B) * P * B));
  }
}

TEST(Pipeline, EvalLastBatchPadded) {
  auto ds = make(config(3, "", "invert"), std::make_shared<FakeSource>(5), std::make_shared<FakeSource>(7));
  auto batches = drain(*ds->eval_iter("test"));
  ASSERT_EQ(batches.size(), 3u);  // ceil(7 / 3)
  EXPECT_TRUE(torch::equal(batches[2].at("batch_mask"), torch::tensor({1.0f, 0.0f, 0.0f})));
  EXPECT_TRUE(torch::equal(batches[2].at("label"), torch::tensor({6, 0, 0}, torch::kInt64)));
  EXPECT_EQ(batches[2].at("inputs")[1].abs().sum().item<float>(), 0.0f);
  // invert: channel 0 of example 4 = (255 - 4) / 255.
  EXPECT_EQ(batches[1].at("inputs")[1][0][0][0].item<float>(), 251.0f / 255.0f);
  EXPECT_EQ(labels_of(batches), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_CONTAINS(error_of([&] { ds->eval_iter("train"); }),
                  "fake: unknown eval split 'train'; valid splits: test, valid");
}

TEST(Pipeline, EveryProcessMakesTheSameNumberOfEvalBatches) {
  // 7 examples, 2 processes: shards {0,2,4,6} and {1,3,5}; batch 3 -> 2 batches each.
  // Process 1's second batch is all padding; with 1 example (n=1), process 1 has none.
  for (int64_t n : {7, 1}) {
    for (int64_t p : {0, 1}) {
      PipelineConfig c = config(3, "", "");
      c.process_index = p;
      c.process_count = 2;
      auto ds = make(std::move(c), std::make_shared<FakeSource>(5), std::make_shared<FakeSource>(n));
      auto batches = drain(*ds->eval_iter("valid"));
      ASSERT_EQ(batches.size(), n == 7 ? 2u : 1u) << "n " << n << " p " << p;
      float real = 0;
      for (const auto& b : batches) {
        EXPECT_EQ(b.at("inputs").sizes(), (std::vector<int64_t>{3, 3, 2, 2}));
        real += b.at("batch_mask").sum().item<float>();
      }
      EXPECT_EQ(real, static_cast<float>((n - p + 1) / 2));
    }
  }
}

TEST(Pipeline, RaiseNamesTheFile) {
  for (int64_t prefetch : {0, 2}) {
    PipelineConfig c = config(2);
    c.prefetch = prefetch;
    auto ds = make(std::move(c), std::make_shared<FakeSource>(4, std::set<int64_t>{2}),
                   std::make_shared<FakeSource>(4, std::set<int64_t>{3}));
    auto it = ds->train_iter(0);
    std::string msg = error_of([&] { take(*it, 2); });  // the first epoch meets example 2
    EXPECT_CONTAINS(msg, "fake: fake/2.png: corrupt image");
    auto eval = ds->eval_iter("valid");
    EXPECT_CONTAINS(error_of([&] { drain(*eval); }), "fake: fake/3.png: corrupt image");
  }
  // A DataError raised by a pp op gets the file from the pipeline.
  auto ds = make(config(2, "fail_on(1)"), std::make_shared<FakeSource>(2));
  EXPECT_CONTAINS(error_of([&] { take(*ds->train_iter(0), 1); }), "fake: fake/1.png: fail_on: label 1");
}

TEST(Pipeline, SkipDropsCountsAndStaysResumable) {
  PipelineConfig c = config(4, "jitter", "", 2);
  c.skip_errors = true;
  auto src = std::make_shared<FakeSource>(9, std::set<int64_t>{2, 5});
  auto ds = make(std::move(c), src, src);
  auto* pipeline = dynamic_cast<PipelineDataset*>(ds.get());
  ASSERT_NE(pipeline, nullptr);
  auto batches = take(*ds->train_iter(0), 6);
  for (int64_t i : labels_of(batches)) EXPECT_TRUE(i != 2 && i != 5) << i;
  for (const auto& b : batches) EXPECT_EQ(b.at("batch_mask").sum().item<float>(), 4.0f);
  // 24 stream positions over 3 epochs of 9 with 2 bad each -> at least 2 skips per full
  // epoch (replacements may hit bad ones again, so >=).
  const int64_t train_skips = pipeline->num_skipped();
  EXPECT_GE(train_skips, 4);
  expect_equal_batches(std::vector<Batch>(batches.begin() + 4, batches.end()),
                       take(*ds->train_iter(4), 2));
  // Eval: 3 batches (ceil(9 / 4)); the 7 good examples fill batches 0 and 1 (4 + 3) in
  // order and batch 2 is all padding.
  const int64_t before = pipeline->num_skipped();
  auto eval = drain(*ds->eval_iter("valid"));
  ASSERT_EQ(eval.size(), 3u);
  EXPECT_EQ(labels_of(eval), (std::vector<int64_t>{0, 1, 3, 4, 6, 7, 8}));
  EXPECT_EQ(eval[2].at("batch_mask").sum().item<float>(), 0.0f);
  EXPECT_EQ(pipeline->num_skipped() - before, 2);
}

TEST(Pipeline, CacheLoadsOnceAndGivesEqualBatches) {
  auto plain_src = std::make_shared<FakeSource>(6);
  auto cached_src = std::make_shared<FakeSource>(6);
  PipelineConfig cached = config(2, "jitter", "invert", 3);
  cached.cache = true;
  auto plain = make(config(2, "jitter", "invert", 3), plain_src, plain_src);
  auto with_cache = make(std::move(cached), cached_src, cached_src);
  expect_equal_batches(take(*plain->train_iter(0), 9), take(*with_cache->train_iter(0), 9));
  // Eval twice: `invert` edits pixels in place; the cached copy must not change.
  auto first = drain(*with_cache->eval_iter("valid"));
  auto second = drain(*with_cache->eval_iter("test"));
  expect_equal_batches(first, second);
  expect_equal_batches(first, drain(*plain->eval_iter("valid")));
  // 6 examples, each decoded once (train and eval share the source, hence the cache;
  // the input_shape probe's load of example 0 went through it too).
  EXPECT_EQ(cached_src->loads.load(), 6);
  EXPECT_GT(plain_src->loads.load(), 6 + 12);  // 9 batches of 2 + 2 eval passes of 6
}

TEST(Pipeline, ConfigFromOptions) {
  DatasetOptions o;
  o.batch_size = 8;
  o.shuffle_seed = 3;
  o.process_index = 1;
  o.process_count = 2;
  o.dataset_configs.set<std::string>("pp_train", "");
  o.dataset_configs.set<int64_t>("num_workers", 2);
  o.dataset_configs.set<bool>("cache", true);
  o.dataset_configs.set<std::string>("on_error", "skip");
  PipelineConfig c = PipelineConfig::from_options("toy", Task::kSegmentation, o, "", "");
  EXPECT_EQ(c.eval_batch_size, 8);  // 0 -> batch_size
  EXPECT_EQ(c.seed, 3u);
  EXPECT_EQ(c.num_workers, 2);
  EXPECT_TRUE(c.cache);
  EXPECT_TRUE(c.skip_errors);
  EXPECT_EQ(c.max_boxes, 100);
  EXPECT_EQ(c.process_index, 1);
  EXPECT_EQ(c.task, Task::kSegmentation);
  EXPECT_TRUE(c.train_pp.empty());

  o.dataset_configs.set<std::string>("on_error", "ignore");
  EXPECT_CONTAINS(error_of([&] { PipelineConfig::from_options("toy", Task::kClassification, o, "", ""); }),
                  "toy: dataset_configs.on_error must be 'raise' or 'skip', got 'ignore'");
  o.dataset_configs.set<std::string>("on_error", "raise");
  o.dataset_configs.set<std::string>("pp_eval", "no_such_op(3)");
  EXPECT_CONTAINS(error_of([&] { PipelineConfig::from_options("toy", Task::kClassification, o, "", ""); }),
                  "toy: dataset_configs.pp_eval: ");
}

TEST(Pipeline, RejectsBadSettings) {
  PipelineConfig c = config(2);
  c.num_workers = 0;
  EXPECT_CONTAINS(error_of([&] { make(c, std::make_shared<FakeSource>(4)); }),
                  "fake: dataset_configs.num_workers must be >= 1, got 0");
  c = config(2);
  c.process_index = 2;
  c.process_count = 2;
  EXPECT_CONTAINS(error_of([&] { make(c, std::make_shared<FakeSource>(4)); }),
                  "fake: process_index 2 out of range [0, 2)");
  c = config(2, "");
  EXPECT_CONTAINS(error_of([&] { make(c, std::make_shared<FakeSource>(0))->train_iter(0); }),
                  "fake: the train split is empty");
}

}  // namespace
}  // namespace scenic::dataset
