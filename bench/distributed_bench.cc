// Data-parallel step time with 1 and N processes on this machine, and the all-reduce
// time on its own: how much of the ideal N-fold speed-up survives communication.
//
// Runs itself: without RANK in the environment it is the driver, which starts
// `launch(n, {this binary, --worker, ...})` for each n in --nprocs and prints a table;
// with RANK set it is one worker. Each worker trains an MLP (784-1024-1024-10,
// 1.86 M parameters, about the size of a small ViT) on random data with a fixed
// global batch: per step forward, backward (gradient buckets all-reduced during it,
// GradientAllReducer), finish(), SGD update. Rows: 1 process x 1 thread (the baseline a
// process count scales), 1 process on all cores, then n processes x cores/n threads with
// 25 MB buckets (here: one bucket, sent after backward) and 1 MB buckets (several,
// overlapped with backward). Then it times a bare all-reduce of one flat fp32 buffer of
// the parameter count (median of repeats).
// Nothing is asserted; it measures.
//
//   scenic_distributed_bench [--nprocs 1,2] [--steps 30] [--batch 256] [--port 29611]
//                            [--threads T] [--bucket_mb M]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "scenic/train_lib/distributed.h"
#include "scenic/train_lib/gradient_all_reducer.h"
#include "scenic/train_lib/launcher.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace scenic::train;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int worker(int steps, int64_t global_batch, int threads, double bucket_mb, const std::string& out) {
  const auto env = parse_distributed_env(process_env());
  torch::set_num_threads(threads);
  DistributedOptions options;
  options.timeout_s = 120;
  options.bucket_mb = bucket_mb;
  auto ctx = init_distributed(options, env, torch::kCPU);
  const int64_t batch = per_process_batch_size(global_batch, *ctx);

  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Linear(784, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 1024),
                            torch::nn::ReLU(), torch::nn::Linear(1024, 10));
  broadcast_parameters(*net, *ctx);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  GradientAllReducer reducer(net->parameters(), ctx);
  auto x = torch::randn({batch, 784});                    // [B/N, 784]
  auto y = torch::randint(0, 10, {batch}, torch::kLong);  // [B/N]
  int64_t num_params = 0;
  for (const auto& p : net->parameters()) num_params += p.numel();

  std::vector<double> step_s, wait_s;
  for (int s = 0; s < steps + 5; ++s) {  // 5 warm-up steps
    barrier(*ctx);                      // every rank starts the step together
    const auto t0 = Clock::now();
    opt.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(x), y).backward();
    reducer.finish();
    opt.step();
    if (s >= 5) {
      step_s.push_back(since(t0));
      wait_s.push_back(reducer.last_wait_seconds());
    }
  }
  // The all-reduce alone: one flat buffer of every gradient, as one bucket would be.
  std::vector<double> allreduce_s;
  if (ctx->is_distributed()) {
    auto flat = torch::randn({num_params});
    for (int s = 0; s < 25; ++s) {
      std::vector<torch::Tensor> t = {flat};
      barrier(*ctx);
      const auto t0 = Clock::now();
      all_reduce_sum(t, *ctx);
      if (s >= 5) allreduce_s.push_back(since(t0));
    }
  }
  if (ctx->is_lead()) {
    std::ofstream f(out);
    f << median(step_s) << " " << median(wait_s) << " " << (allreduce_s.empty() ? 0.0 : median(allreduce_s)) << " "
      << num_params << " " << reducer.num_buckets() << "\n";
  }
  barrier(*ctx);
  return 0;
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoi(item));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> nprocs = {1, 2};
  int steps = 30, port = 29611, threads = 0;
  double bucket_mb = 25;
  int64_t batch = 256;
  std::string out;
  bool is_worker = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--worker") is_worker = true;
    else if (a == "--nprocs") nprocs = parse_list(next());
    else if (a == "--steps") steps = std::stoi(next());
    else if (a == "--batch") batch = std::stoll(next());
    else if (a == "--port") port = std::stoi(next());
    else if (a == "--out") out = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--bucket_mb") bucket_mb = std::stod(next());
  }
  try {
    if (is_worker) return worker(steps, batch, threads, bucket_mb, out);
    std::cout << "| processes | threads each | bucket (MB) | step (ms) | examples/s | vs 1 x 1 thread | "
                 "exposed comm. wait (ms) | bare all-reduce (ms) |\n|---|---|---|---|---|---|---|---|\n";
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // (processes, threads each, bucket MB): 1 process on all cores and on one core (the
    // per-process baseline), then N processes with their share of the cores and two
    // bucket sizes (one bucket = no overlap with backward; 1 MB = several, overlapped).
    struct Run {
      int n, threads;
      double bucket_mb;
    };
    std::vector<Run> runs;
    for (int n : nprocs) {
      if (n == 1) {
        if (hw > 1 && threads == 0) runs.push_back({1, 1, bucket_mb});
        runs.push_back({1, threads > 0 ? threads : hw, bucket_mb});
      } else {
        const int t = threads > 0 ? threads : std::max(1, hw / n);
        runs.push_back({n, t, bucket_mb});
        runs.push_back({n, t, 1});
      }
    }
    double base = 0;  // examples/s of 1 process x 1 thread
    for (const auto& run : runs) {
      const int n = run.n;
      const std::string file = "/tmp/scenic_distributed_bench." + std::to_string(::getpid()) + "." + std::to_string(n);
      LaunchOptions o;
      o.nproc_per_node = n;
      o.master_port = port++;
      if (launch(o, {argv[0], "--worker", "--steps", std::to_string(steps), "--batch", std::to_string(batch), "--out",
                     file, "--threads", std::to_string(run.threads), "--bucket_mb", std::to_string(run.bucket_mb)}) != 0)
        throw scenic::Error("the " + std::to_string(n) + "-process run failed");
      std::ifstream f(file);
      double step = 0, wait = 0, allreduce = 0;
      int64_t params = 0, buckets = 0;
      f >> step >> wait >> allreduce >> params >> buckets;
      std::remove(file.c_str());
      const double eps = batch / step;
      if (n == 1 && run.threads == 1) base = eps;
      char bucket_text[64] = "-", line[256];
      if (n > 1)
        std::snprintf(bucket_text, sizeof(bucket_text), "%g (%lld bucket%s)", run.bucket_mb,
                      static_cast<long long>(buckets), buckets == 1 ? "" : "s");
      std::snprintf(line, sizeof(line), "| %d | %d | %s | %.1f | %.0f | %.2fx | %.2f | %.2f |\n", n, run.threads,
                    bucket_text, step * 1e3, eps, base > 0 ? eps / base : 1.0, wait * 1e3, allreduce * 1e3);
      std::cout << line << std::flush;
      if (&run == &runs.back())
        std::cout << "\n" << params << " parameters (" << params * 4 / 1e6 << " MB fp32), global batch " << batch
                  << ", median of " << steps << " steps\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
