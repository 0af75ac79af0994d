// Test helper: one rank of a small data-parallel job, started by
// scenic/train_lib/distributed_test.cc through `launch()` (so it reads RANK,
// WORLD_SIZE, MASTER_ADDR, ... like `scenic train` does). Not a test itself.
//
//   scenic_distributed_worker MODE OUT_DIR [--optimizer sgd|adamw] [--steps K]
//                             [--bucket_bytes N] [--timeout_s T]
// MODE
//   train    K optimizer steps of a small MLP on a fixed global batch of 16 examples,
//            this rank taking its contiguous slice (16 / world_size), gradients
//            averaged by GradientAllReducer. Rank 0 starts from other initial weights
//            than the others, so broadcast_parameters must fix that. Then eval metric
//            sums over 20 examples (this rank's slice), all-reduced. Writes
//            OUT/params.<rank>.bin (float32 values of every parameter, in order) and
//            OUT/metrics.<rank>.txt ("correct loss_sum count buckets overlapped").
//   buffers  a BatchNorm whose running mean/var are set to rank-dependent values,
//            averaged with average_buffers; writes OUT/buffers.<rank>.txt.
//   die      rank 1 exits right after joining; rank 0 then calls all_reduce_sum.
//   hang     rank 1 sleeps 60 s after joining; rank 0 then calls all_reduce_sum.
// Any error is written to OUT/error.<rank>.txt and the process exits 1.
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "scenic/train_lib/distributed.h"
#include "scenic/train_lib/gradient_all_reducer.h"

using namespace scenic::train;

namespace {

constexpr int64_t kGlobalBatch = 16, kEvalExamples = 20, kIn = 8, kClasses = 4;

struct Mlp : torch::nn::Module {
  Mlp() {
    fc1 = register_module("fc1", torch::nn::Linear(kIn, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 16));
    fc3 = register_module("fc3", torch::nn::Linear(16, kClasses));
  }
  torch::Tensor forward(torch::Tensor x) {
    return fc3(torch::tanh(fc2(torch::tanh(fc1(x)))));  // [B, kClasses]
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
};

// The same examples in every process: seeded by `seed` only.
std::pair<torch::Tensor, torch::Tensor> examples(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, kIn});                    // [n, kIn]
  auto y = torch::randint(0, kClasses, {n}, torch::kLong);  // [n]
  return {x, y};
}

// This rank's contiguous slice of n examples.
torch::Tensor shard(const torch::Tensor& t, const DistributedContext& ctx) {
  const int64_t per = t.size(0) / ctx.world_size;
  return t.narrow(0, ctx.rank * per, per);
}

void train(const std::shared_ptr<DistributedContext>& ctx, const std::string& out,
           const std::string& optimizer_name, int steps, int64_t bucket_bytes) {
  torch::manual_seed(ctx->rank == 0 ? 7 : 1000 + ctx->rank);
  auto net = std::make_shared<Mlp>();
  broadcast_parameters(*net, *ctx);
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (optimizer_name == "sgd")
    opt = std::make_unique<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  else
    opt = std::make_unique<torch::optim::AdamW>(net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(1e-2));
  GradientAllReducer reducer(net->parameters(), ctx, bucket_bytes);
  per_process_batch_size(kGlobalBatch, *ctx);
  size_t overlapped = 0;
  for (int step = 0; step < steps; ++step) {
    auto [x, y] = examples(kGlobalBatch, 100 + step);
    opt->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(shard(x, *ctx)), shard(y, *ctx));  // local mean
    loss.backward();
    reducer.finish();
    overlapped = reducer.last_overlapped_buckets();
    opt->step();
  }
  // Eval metric sums: (correct, loss sum, count) over this rank's slice, then psum.
  torch::NoGradGuard no_grad;
  auto [x, y] = examples(kEvalExamples, 999);
  auto xs = shard(x, *ctx), ys = shard(y, *ctx);
  auto logits = net->forward(xs);
  std::vector<torch::Tensor> sums = {
      (logits.argmax(1) == ys).sum().to(torch::kFloat64),
      torch::nn::functional::cross_entropy(logits, ys, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
          .to(torch::kFloat64),
      torch::full({}, static_cast<double>(xs.size(0)), torch::kFloat64)};
  all_reduce_sum(sums, *ctx);

  std::ofstream p(out + "/params." + std::to_string(ctx->rank) + ".bin", std::ios::binary);
  for (const auto& t : net->parameters()) {
    auto c = t.detach().contiguous().to(torch::kFloat32);
    p.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * 4));
  }
  std::ofstream m(out + "/metrics." + std::to_string(ctx->rank) + ".txt");
  m.precision(17);
  m << sums[0].item<double>() << " " << sums[1].item<double>() << " " << sums[2].item<double>() << " "
    << reducer.num_buckets() << " " << overlapped << "\n";
}

void buffers(const std::shared_ptr<DistributedContext>& ctx, const std::string& out) {
  torch::nn::BatchNorm1d bn(3);
  {
    torch::NoGradGuard no_grad;
    // rank r: running_mean = [r, 2r, 3r], running_var = [1 + r, 1 + r, 1 + r]
    bn->running_mean.copy_(torch::tensor({1.0f, 2.0f, 3.0f}) * static_cast<float>(ctx->rank));
    bn->running_var.fill_(1.0f + static_cast<float>(ctx->rank));
    bn->num_batches_tracked.fill_(5);
  }
  average_buffers(*bn, *ctx);
  std::ofstream f(out + "/buffers." + std::to_string(ctx->rank) + ".txt");
  f.precision(9);
  for (int i = 0; i < 3; ++i) f << bn->running_mean[i].item<float>() << " ";
  for (int i = 0; i < 3; ++i) f << bn->running_var[i].item<float>() << " ";
  f << bn->num_batches_tracked.item<int64_t>() << "\n";
}

void peer_failure(const std::shared_ptr<DistributedContext>& ctx, bool die) {
  if (ctx->rank == 1) {
    if (die) ::_exit(0);  // leaves without a word: no collective, no clean shutdown
    std::this_thread::sleep_for(std::chrono::seconds(60));
    ::_exit(0);
  }
  std::vector<torch::Tensor> t = {torch::ones({4})};
  all_reduce_sum(t, *ctx);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s train|buffers|die|hang OUT_DIR [options]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], out = argv[2];
  std::string optimizer = "sgd";
  int steps = 5;
  int64_t bucket_bytes = 0;
  double timeout_s = 30;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--optimizer") optimizer = v;
    else if (k == "--steps") steps = std::stoi(v);
    else if (k == "--bucket_bytes") bucket_bytes = std::stoll(v);
    else if (k == "--timeout_s") timeout_s = std::stod(v);
  }
  torch::set_num_threads(1);
  int rank = 0;
  try {
    const auto env = parse_distributed_env(process_env());
    rank = env.rank;
    DistributedOptions options;
    options.timeout_s = timeout_s;
    auto ctx = init_distributed(options, env, torch::kCPU);
    if (mode == "train") train(ctx, out, optimizer, steps, bucket_bytes);
    else if (mode == "buffers") buffers(ctx, out);
    else if (mode == "die" || mode == "hang") peer_failure(ctx, mode == "die");
    else throw scenic::Error("unknown mode '" + mode + "'");
  } catch (const std::exception& e) {
    std::ofstream(out + "/error." + std::to_string(rank) + ".txt") << e.what() << "\n";
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return 1;
  }
  return 0;
}
