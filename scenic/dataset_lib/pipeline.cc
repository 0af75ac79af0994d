// PipelineDataset (pipeline.h): order, sharding, workers, cache, skip/raise, collate,
// prefetch. One iterator owns one WorkerPool and one prefetch thread; the dataset's
// shared state (sources, chains, caches, counters) outlives the dataset object as long
// as an iterator uses it.
#include "scenic/dataset_lib/pipeline.h"

#include <torch/torch.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"
#include "scenic/dataset_lib/index_stream.h"
#include "scenic/dataset_lib/prefetch.h"
#include "scenic/dataset_lib/worker_pool.h"

namespace scenic::dataset {
namespace {

constexpr int kMaxAttempts = 64;     // train: replacements tried for one slot
constexpr size_t kFilesShown = 3;    // bad files named in a skip log line
constexpr uint64_t kTrainStream = 0x7472616e;  // domain tags: train and eval RNGs differ
constexpr uint64_t kEvalStream = 0x6576616c;
constexpr uint64_t kProbeStream = 0x70726f62;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Seed of one example's RNG: each field goes through a full 64-bit mix, so nearby
// (step, slot) pairs give unrelated streams.
uint64_t example_seed(uint64_t seed, uint64_t stream, int64_t step, int64_t slot,
                      int64_t attempt) {
  uint64_t h = splitmix64(seed ^ splitmix64(stream));
  h = splitmix64(h ^ static_cast<uint64_t>(step));
  h = splitmix64(h ^ static_cast<uint64_t>(slot));
  return splitmix64(h ^ static_cast<uint64_t>(attempt));
}

Example deep_copy(const Example& ex) {
  Example out = ex;  // cv::Mat and tensors share storage until cloned
  out.image = ex.image.clone();
  out.mask = ex.mask.clone();
  if (ex.multi_hot.defined()) out.multi_hot = ex.multi_hot.clone();
  if (ex.boxes.defined()) out.boxes = ex.boxes.clone();
  if (ex.box_labels.defined()) out.box_labels = ex.box_labels.clone();
  if (ex.is_crowd.defined()) out.is_crowd = ex.is_crowd.clone();
  return out;
}

// Decoded (pre-pp) examples of one source, filled on first use. Two threads that miss
// the same index both decode it; the first insert wins (same bytes either way).
class ExampleCache {
 public:
  Example get(const ExampleSource& source, int64_t index) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(index);
      if (it != map_.end()) return deep_copy(it->second);
    }
    Example ex = source.load(index);
    Example stored = deep_copy(ex);
    std::lock_guard<std::mutex> lock(mu_);
    map_.emplace(index, std::move(stored));
    return ex;
  }

 private:
  std::mutex mu_;
  std::unordered_map<int64_t, Example> map_;
};

struct Shared {
  PipelineConfig cfg;
  SourcePtr train;
  std::map<std::string, SourcePtr> eval;
  std::map<const ExampleSource*, std::unique_ptr<ExampleCache>> caches;
  std::atomic<int64_t> skipped{0};

  ExampleCache* cache_for(const ExampleSource* s) const {
    auto it = caches.find(s);
    return it == caches.end() ? nullptr : it->second.get();
  }
  CollateOptions collate_options(int64_t batch_size) const {
    return {cfg.task, batch_size, cfg.max_boxes, cfg.name};
  }
};

// Load (through the cache) and preprocess global example `index`. Errors gain the
// dataset name and the example's location; DataError stays DataError (skippable), any
// other failure becomes scenic::Error.
Example load_and_preprocess(const Shared& sh, const ExampleSource& src, const PreprocessChain& pp,
                            int64_t index, uint64_t rng_seed) {
  auto context = [&](const char* what) {
    std::string where = src.describe(index);
    std::string msg(what);
    if (msg.find(where) != std::string::npos) return sh.cfg.name + ": " + msg;
    return sh.cfg.name + ": " + where + ": " + msg;
  };
  try {
    ExampleCache* cache = sh.cache_for(&src);
    Example ex = cache ? cache->get(src, index) : src.load(index);
    if (ex.source.empty()) ex.source = src.describe(index);
    Rng rng(rng_seed);
    pp(ex, rng);
    return ex;
  } catch (const DataError& e) {
    throw DataError(context(e.what()));
  } catch (const std::exception& e) {
    throw Error(context(e.what()));
  }
}

// Counts skipped examples and logs them once per epoch / pass (and, for what is left
// when the iterator goes away mid-epoch, on destruction).
class SkipLog {
 public:
  SkipLog(std::shared_ptr<Shared> sh, std::string what) : sh_(std::move(sh)), what_(std::move(what)) {}
  ~SkipLog() { flush(what_ + " (so far)"); }
  void add(std::string message) {
    ++count_;
    sh_->skipped.fetch_add(1);
    const std::string prefix = sh_->cfg.name + ": ";  // already at the start of the line
    if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
    if (shown_.size() < kFilesShown) shown_.push_back(std::move(message));
  }
  void flush(const std::string& where) {
    if (count_ == 0) return;
    std::string files;
    for (const auto& m : shown_) files += (files.empty() ? "" : "; ") + m;
    if (count_ > static_cast<int64_t>(shown_.size())) files += "; ...";
    SCENIC_LOG_WARNING << sh_->cfg.name << ": skipped " << count_ << " bad example"
                       << (count_ == 1 ? "" : "s") << " in " << where << ": " << files;
    count_ = 0;
    shown_.clear();
  }

 private:
  std::shared_ptr<Shared> sh_;
  std::string what_;
  int64_t count_ = 0;
  std::vector<std::string> shown_;
};

// Size of process p's shard of n examples (i % P == p).
int64_t shard_size(int64_t n, int64_t p, int64_t P) { return n > p ? (n - p + P - 1) / P : 0; }

Batch zeros_like(const Batch& batch) {
  Batch out;
  for (const auto& [k, v] : batch) out[k] = torch::zeros_like(v);
  return out;
}

// Process p of P takes slots [p*B, (p+1)*B) of each batch of the global stream (batch
// P*B): together the processes see exactly the batches, and the per-example random
// augmentations, of one process with batch P*B.
class TrainProducer {
 public:
  TrainProducer(std::shared_ptr<Shared> sh, int64_t start_step)
      : sh_(sh),
        n_(sh->train->size()),
        first_slot_(sh->cfg.process_index * sh->cfg.batch_size),
        stream_(n_, sh->cfg.batch_size * sh->cfg.process_count, sh->cfg.seed, start_step),
        pool_(sh->cfg.num_workers),
        log_(sh, "train") {}

  std::optional<Batch> operator()() {
    const PipelineConfig& cfg = sh_->cfg;
    const int64_t B = cfg.batch_size, global_batch = B * cfg.process_count;
    const int64_t step = stream_.step();
    const std::vector<int64_t> indices = stream_.next();  // [P*B]
    std::vector<Example> examples(B);
    std::vector<std::vector<std::string>> skipped(B);
    pool_.run(B, [&](int64_t slot) {
      const int64_t global_slot = first_slot_ + slot;
      examples[slot] = load(step, global_slot, indices[global_slot], skipped[slot]);
    });
    for (auto& messages : skipped)
      for (auto& m : messages) log_.add(std::move(m));
    Batch batch = collate(examples, sh_->collate_options(B));
    const int64_t epoch = step * global_batch / n_;
    if ((step + 1) * global_batch / n_ > epoch) log_.flush("train epoch " + std::to_string(epoch));
    return batch;
  }

 private:
  Example load(int64_t step, int64_t slot, int64_t index, std::vector<std::string>& skipped) {
    const PipelineConfig& cfg = sh_->cfg;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      const uint64_t rng_seed = example_seed(cfg.seed, kTrainStream, step, slot, attempt);
      try {
        return load_and_preprocess(*sh_, *sh_->train, cfg.train_pp, index, rng_seed);
      } catch (const DataError& e) {
        if (!cfg.skip_errors) throw;
        skipped.emplace_back(e.what());
        // The replacement depends only on (seed, step, slot, attempt): resumable.
        index = static_cast<int64_t>(splitmix64(rng_seed) % static_cast<uint64_t>(n_));
      }
    }
    throw Error(cfg.name + ": " + std::to_string(kMaxAttempts) +
                " bad training examples in a row for one batch slot (step " +
                std::to_string(step) + "); last: " + skipped.back());
  }

  std::shared_ptr<Shared> sh_;
  int64_t n_, first_slot_;
  TrainIndexStream stream_;
  WorkerPool pool_;
  SkipLog log_;
};

class EvalProducer {
 public:
  EvalProducer(std::shared_ptr<Shared> sh, const std::string& split, SourcePtr src)
      : sh_(sh), src_(std::move(src)), split_(split), pool_(sh->cfg.num_workers), log_(sh, split + " pass") {
    const PipelineConfig& cfg = sh_->cfg;
    const int64_t n = src_->size();
    n_local_ = shard_size(n, cfg.process_index, cfg.process_count);
    const int64_t max_shard = shard_size(n, 0, cfg.process_count);  // process 0's is largest
    num_batches_ = (max_shard + cfg.eval_batch_size - 1) / cfg.eval_batch_size;
  }

  std::optional<Batch> operator()() {
    const PipelineConfig& cfg = sh_->cfg;
    const int64_t B = cfg.eval_batch_size;
    if (done_ == num_batches_) return std::nullopt;
    std::vector<Example> got;
    while (static_cast<int64_t>(got.size()) < B && next_ < n_local_) {
      const int64_t k = std::min(B - static_cast<int64_t>(got.size()), n_local_ - next_);
      std::vector<std::optional<Example>> res(k);
      std::vector<std::string> err(k);
      pool_.run(k, [&](int64_t j) {
        const int64_t global = cfg.process_index + (next_ + j) * cfg.process_count;
        try {
          res[j] = load_and_preprocess(*sh_, *src_, cfg.eval_pp, global,
                                       example_seed(cfg.seed, kEvalStream, 0, global, 0));
        } catch (const DataError& e) {
          if (!cfg.skip_errors) throw;
          err[j] = e.what();
        }
      });
      for (int64_t j = 0; j < k; ++j) {
        if (res[j]) got.push_back(std::move(*res[j]));
        else log_.add(std::move(err[j]));
      }
      next_ += k;
    }
    Batch batch;
    if (!got.empty()) {
      batch = collate(got, sh_->collate_options(B));
      if (!template_) template_ = zeros_like(batch);
    } else {
      batch = padding_batch();
    }
    if (++done_ == num_batches_) log_.flush(split_ + " pass");
    return batch;
  }

 private:
  // An all-padding batch (batch_mask 0) shaped like this split's batches, for processes
  // whose shard ran out before the common number of batches.
  Batch padding_batch() {
    if (template_) return zeros_like(*template_);
    const PipelineConfig& cfg = sh_->cfg;
    std::string last_error;
    for (int64_t i = 0; i < std::min<int64_t>(src_->size(), kMaxAttempts); ++i) {
      try {
        std::vector<Example> one;
        one.push_back(load_and_preprocess(*sh_, *src_, cfg.eval_pp, i,
                                          example_seed(cfg.seed, kEvalStream, 0, i, 0)));
        template_ = zeros_like(collate(one, sh_->collate_options(cfg.eval_batch_size)));
        return *template_;
      } catch (const DataError& e) {
        last_error = e.what();
      }
    }
    throw Error(cfg.name + ": no readable example to shape a padding batch; last: " + last_error);
  }

  std::shared_ptr<Shared> sh_;
  SourcePtr src_;
  std::string split_;
  WorkerPool pool_;
  SkipLog log_;
  int64_t n_local_ = 0, num_batches_ = 0, next_ = 0, done_ = 0;
  std::optional<Batch> template_;
};

class PipelineDatasetImpl : public PipelineDataset {
 public:
  explicit PipelineDatasetImpl(std::shared_ptr<Shared> sh) : sh_(std::move(sh)) {}

  std::unique_ptr<BatchIterator> train_iter(int64_t start_step) override {
    const PipelineConfig& cfg = sh_->cfg;
    if (!sh_->train) throw Error(cfg.name + ": has no train split");
    if (start_step < 0) {
      throw Error(cfg.name + ": train_iter start_step must be >= 0, got " +
                  std::to_string(start_step));
    }
    if (sh_->train->size() == 0) throw Error(cfg.name + ": the train split is empty");
    auto producer = std::make_shared<TrainProducer>(sh_, start_step);
    return std::make_unique<PrefetchIterator>([producer] { return (*producer)(); }, cfg.prefetch);
  }

  std::unique_ptr<BatchIterator> eval_iter(const std::string& split) override {
    auto it = sh_->eval.find(split);
    if (it == sh_->eval.end()) {
      std::string valid;
      for (const auto& [s, _] : sh_->eval) valid += (valid.empty() ? "" : ", ") + s;
      throw Error(sh_->cfg.name + ": unknown eval split '" + split + "'; valid splits: " +
                  (valid.empty() ? "(none)" : valid));
    }
    auto producer = std::make_shared<EvalProducer>(sh_, split, it->second);
    return std::make_unique<PrefetchIterator>([producer] { return (*producer)(); },
                                              sh_->cfg.prefetch);
  }

  int64_t num_skipped() const override { return sh_->skipped.load(); }

 private:
  std::shared_ptr<Shared> sh_;
};

// [-1, C, H, W] of the train chain's output for the first readable train example.
std::vector<int64_t> probe_input_shape(const Shared& sh) {
  const ExampleSource& src = *sh.train;
  std::string last_error;
  for (int64_t i = 0; i < std::min<int64_t>(src.size(), kMaxAttempts); ++i) {
    try {
      Example ex = load_and_preprocess(sh, src, sh.cfg.train_pp, i,
                                       example_seed(sh.cfg.seed, kProbeStream, 0, i, 0));
      return {-1, ex.image.channels(), ex.image.rows, ex.image.cols};
    } catch (const DataError& e) {
      if (!sh.cfg.skip_errors) throw;
      last_error = e.what();
    }
  }
  if (!last_error.empty()) {
    throw Error(sh.cfg.name + ": no readable training example among the first " +
                std::to_string(kMaxAttempts) + "; last: " + last_error);
  }
  return {};
}

PreprocessChain parse_chain(const std::string& name, const std::string& key,
                            const std::string& spec) {
  try {
    return PreprocessChain::parse(spec);
  } catch (const Error& e) {
    throw Error(name + ": dataset_configs." + key + ": " + e.what());
  }
}

}  // namespace

PipelineConfig PipelineConfig::from_options(const std::string& name, Task task,
                                            const DatasetOptions& options,
                                            const std::string& default_pp_train,
                                            const std::string& default_pp_eval) {
  PipelineConfig c;
  c.name = name;
  c.task = task;
  c.batch_size = options.batch_size;
  c.eval_batch_size = options.eval_batch_size == 0 ? options.batch_size : options.eval_batch_size;
  c.seed = options.shuffle_seed;
  c.prefetch = options.prefetch;
  c.process_index = options.process_index;
  c.process_count = options.process_count;
  const common::ConfigDict& dc = options.dataset_configs;
  c.train_pp = parse_chain(name, "pp_train", dc.get<std::string>("pp_train", default_pp_train));
  c.eval_pp = parse_chain(name, "pp_eval", dc.get<std::string>("pp_eval", default_pp_eval));
  c.num_workers = dc.get<int64_t>("num_workers", 1);
  c.cache = dc.get<bool>("cache", false);
  c.max_boxes = dc.get<int64_t>("max_boxes", 100);
  const std::string on_error = dc.get<std::string>("on_error", "raise");
  if (on_error != "raise" && on_error != "skip") {
    throw Error(name + ": dataset_configs.on_error must be 'raise' or 'skip', got '" + on_error +
                "'");
  }
  c.skip_errors = on_error == "skip";
  return c;
}

std::unique_ptr<Dataset> make_pipeline_dataset(PipelineConfig config, SourcePtr train,
                                               std::map<std::string, SourcePtr> eval,
                                               MetaData meta) {
  const std::string& name = config.name;
  if (config.eval_batch_size == 0) config.eval_batch_size = config.batch_size;
  auto positive = [&](const char* what, int64_t v, int64_t min) {
    if (v < min) {
      throw Error(name + ": " + what + " must be >= " + std::to_string(min) + ", got " +
                  std::to_string(v));
    }
  };
  positive("batch_size", config.batch_size, 1);
  positive("eval_batch_size", config.eval_batch_size, 1);
  positive("prefetch", config.prefetch, 0);
  positive("dataset_configs.num_workers", config.num_workers, 1);
  positive("dataset_configs.max_boxes", config.max_boxes, 1);
  positive("process_count", config.process_count, 1);
  if (config.process_index < 0 || config.process_index >= config.process_count) {
    throw Error(name + ": process_index " + std::to_string(config.process_index) +
                " out of range [0, " + std::to_string(config.process_count) + ")");
  }
  for (const auto& [split, src] : eval) {
    if (!src) throw Error(name + ": eval split '" + split + "' has no source");
  }

  auto sh = std::make_shared<Shared>();
  sh->cfg = std::move(config);
  sh->train = std::move(train);
  sh->eval = std::move(eval);
  if (sh->cfg.cache) {
    if (sh->train) sh->caches[sh->train.get()] = std::make_unique<ExampleCache>();
    for (const auto& [_, src] : sh->eval) {
      if (!sh->caches.count(src.get())) sh->caches[src.get()] = std::make_unique<ExampleCache>();
    }
  }
  if (meta.num_train_examples == 0 && sh->train) meta.num_train_examples = sh->train->size();
  if (meta.num_eval_examples == 0) {
    for (const char* split : {"valid", "test"}) {
      auto it = sh->eval.find(split);
      if (it != sh->eval.end()) {
        meta.num_eval_examples = it->second->size();
        break;
      }
    }
  }
  if (meta.input_shape.empty() && sh->train) meta.input_shape = probe_input_shape(*sh);
  auto ds = std::make_unique<PipelineDatasetImpl>(sh);
  ds->meta_data = std::move(meta);
  return ds;
}

}  // namespace scenic::dataset
