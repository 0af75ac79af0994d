#include "scenic/train_lib/distributed.h"

// ProcessGroupGloo.hpp is compiled only with USE_C10D_GLOO (torch's own build flag).
// Gloo itself lives inside libtorch_cpu; its headers, which the torch wheel does not
// ship, come from Debian's libgloo-dev (scripts/setup.sh). We only hold Gloo objects
// through shared_ptrs, so the header version does not have to match the library's.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "scenic/common_lib/logging.h"
#include "scenic/train_lib/train_utils.h"

namespace scenic::train {

// distributed_nccl.cc: ProcessGroupNCCL (throws when this build has no NCCL).
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int world_size, std::chrono::milliseconds timeout,
                                                    torch::Device device);

struct DistributedContext::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  ~Impl() {
    // NCCL needs an explicit shutdown to release its communicators cleanly; Gloo's
    // destructor joins its worker threads.
    if (backend) {
      try {
        backend->shutdown();
      } catch (const std::exception&) {
      }
    }
  }
};

DistributedContext::~DistributedContext() = default;

c10d::Backend& DistributedContext::process_group() const {
  if (!impl || !impl->backend) throw Error("DistributedContext: a single process has no process group");
  return *impl->backend;
}

std::shared_ptr<DistributedContext> DistributedContext::single(torch::Device device) {
  auto ctx = std::make_shared<DistributedContext>();
  ctx->device = device;
  return ctx;
}

DistributedOptions distributed_options_from_config(const common::ConfigDict& config) {
  DistributedOptions o;
  o.backend = config.get<std::string>("distributed.backend", o.backend);
  o.timeout_s = config.get<double>("distributed.timeout_s", o.timeout_s);
  o.bucket_mb = config.get<double>("distributed.bucket_mb", o.bucket_mb);
  o.rendezvous.port = config.get_optional<int>("distributed.port");
  o.rendezvous.master_addr = config.get_optional<std::string>("distributed.master_addr");
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    throw Error("config key 'distributed.backend' must be auto, gloo or nccl, not '" + o.backend + "'");
  if (!(o.timeout_s > 0)) throw Error("config key 'distributed.timeout_s' must be > 0");
  if (!(o.bucket_mb > 0)) throw Error("config key 'distributed.bucket_mb' must be > 0");
  return o;
}

namespace {

std::string who(const DistributedContext& ctx) {
  return "rank " + std::to_string(ctx.rank) + " of " + std::to_string(ctx.world_size) + " (" + ctx.backend + ")";
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Groups `tensors` by dtype (in order of first appearance, so every rank groups the
// same way) and runs `op` on one flat buffer per group, then copies the results back.
template <typename Op>
void coalesced(std::vector<torch::Tensor>& tensors, const DistributedContext& ctx, Op op) {
  std::vector<torch::Dtype> order;
  std::map<torch::Dtype, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto dt = tensors[i].scalar_type();
    if (!groups.count(dt)) order.push_back(dt);
    groups[dt].push_back(i);
  }
  for (const auto dt : order) {
    const auto& idx = groups[dt];
    std::vector<torch::Tensor> flat;
    for (size_t i : idx) flat.push_back(tensors[i].detach().reshape({-1}).to(ctx.device));
    auto buffer = torch::cat(flat);  // [sum of numels]
    op(buffer);
    int64_t offset = 0;
    for (size_t i : idx) {
      const int64_t n = tensors[i].numel();
      tensors[i].detach().copy_(buffer.narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
  }
}

void all_reduce_in_place(torch::Tensor& buffer, const DistributedContext& ctx, c10d::ReduceOp op, const char* name) {
  std::vector<torch::Tensor> v{buffer};
  c10d::AllreduceOptions opts;
  opts.reduceOp = op;
  opts.timeout = ctx.timeout;
  wait_for(*ctx.process_group().allreduce(v, opts), ctx, name);
}

c10::intrusive_ptr<c10d::Store> make_store(const DistributedEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(env.master_port);
  o.isServer = env.rank == 0 && !env.use_agent_store;
  o.numWorkers = env.use_agent_store ? std::nullopt : std::optional<size_t>(env.world_size);
  o.waitWorkers = !env.use_agent_store;
  o.timeout = timeout;
  o.multiTenant = true;  // as torch.distributed: another store may share the port
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  } catch (const c10::Error& e) {
    throw DistributedError("rendezvous at " + env.master_addr + ":" + std::to_string(env.master_port) + " failed on rank " +
                           std::to_string(env.rank) + " of " + std::to_string(env.world_size) + " (" + env.launcher +
                           "): " + first_line(e.what_without_backtrace()) +
                           " (are all processes started, and is the master address reachable?)");
  }
  // torchrun's agent store also holds the agent's keys and outlives restarts.
  return c10::make_intrusive<c10d::PrefixStore>("scenic/" + std::to_string(env.restart_count), store);
}

}  // namespace

DistributedError collective_error(const DistributedContext& ctx, const std::string& op, const std::string& what) {
  char timeout[32];
  std::snprintf(timeout, sizeof(timeout), "%g", ctx.timeout.count() / 1000.0);
  return DistributedError("distributed " + op + " failed on " + who(ctx) + ": " + first_line(what) +
                          " (another process died, or did not reach this collective within distributed.timeout_s=" +
                          timeout + " s; see its log)");
}

void wait_for(c10d::Work& work, const DistributedContext& ctx, const std::string& op) {
  try {
    if (ctx.backend == "nccl") work.wait();
    else work.wait(ctx.timeout);
  } catch (const c10::Error& e) {
    throw collective_error(ctx, op, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw collective_error(ctx, op, e.what());
  }
}

std::shared_ptr<DistributedContext> init_distributed(const DistributedOptions& options, const DistributedEnv& env,
                                                     torch::Device device) {
  if (!env.is_distributed()) return DistributedContext::single(device);
  auto ctx = std::make_shared<DistributedContext>();
  ctx->rank = env.rank;
  ctx->world_size = env.world_size;
  ctx->local_rank = env.local_rank;
  ctx->local_world_size = env.local_world_size;
  ctx->timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(options.timeout_s * 1000)));
  ctx->bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(options.bucket_mb * (1 << 20)));
  if (device.is_cuda()) {
    const int n = static_cast<int>(torch::cuda::device_count());
    if (env.local_rank >= n)
      throw Error("local rank " + std::to_string(env.local_rank) + " has no GPU: this host has " + std::to_string(n) +
                  " (run one process per GPU, or set device: cpu)");
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  }
  ctx->device = device;
  ctx->backend = options.backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : options.backend;
  if (ctx->backend == "nccl" && !device.is_cuda())
    throw Error("config key 'distributed.backend' is nccl but the device is " + device.str() +
                " (NCCL needs CUDA; use gloo on CPU)");

  ctx->impl = std::make_shared<DistributedContext::Impl>();
  ctx->impl->store = make_store(env, ctx->timeout);
  try {
    if (ctx->backend == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(ctx->timeout);
      // GLOO_SOCKET_IFNAME=eth0[,eth1] picks the network interfaces (as in PyTorch);
      // otherwise the address this host's name resolves to (else loopback).
      if (const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME"); ifnames != nullptr && *ifnames != 0) {
        std::string list = ifnames;
        for (size_t start = 0, end; start < list.size(); start = end + 1) {
          end = list.find(',', start);
          if (end == std::string::npos) end = list.size();
          if (end > start)
            opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(list.substr(start, end - start)));
        }
      }
      if (opts->devices.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      opts->threads = 2;
      ctx->impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(ctx->impl->store, env.rank, env.world_size, opts);
    } else {
      ctx->impl->backend = make_nccl_backend(ctx->impl->store, env.rank, env.world_size, ctx->timeout, device);
    }
  } catch (const c10::Error& e) {
    throw DistributedError("creating the " + ctx->backend + " process group failed on " + who(*ctx) + ": " +
                           first_line(e.what_without_backtrace()));
  }
  SCENIC_LOG_INFO << "distributed: " << who(*ctx) << ", local rank " << ctx->local_rank << ", device "
                  << device.str() << ", master " << env.master_addr << ":" << env.master_port << " (" << env.launcher
                  << "), timeout " << options.timeout_s << " s";
  return ctx;
}

std::shared_ptr<DistributedContext> init_distributed_from_config(const common::ConfigDict& config) {
  const auto options = distributed_options_from_config(config);
  return init_distributed(options, parse_distributed_env(process_env(), options.rendezvous), get_device(config));
}

int64_t per_process_batch_size(int64_t global_batch_size, const DistributedContext& ctx, const std::string& key) {
  if (global_batch_size <= 0) throw Error("config key '" + key + "' must be > 0, got " + std::to_string(global_batch_size));
  if (global_batch_size % ctx.world_size != 0)
    throw Error("config key '" + key + "' (" + std::to_string(global_batch_size) +
                ") is the global batch and must be divisible by the number of processes (" +
                std::to_string(ctx.world_size) + ")");
  return global_batch_size / ctx.world_size;
}

void broadcast_parameters(torch::nn::Module& module, const DistributedContext& ctx) {
  if (!ctx.is_distributed()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = module.parameters();
  for (const auto& b : module.buffers()) tensors.push_back(b);
  coalesced(tensors, ctx, [&](torch::Tensor& buffer) {
    std::vector<torch::Tensor> v{buffer};
    c10d::BroadcastOptions opts;
    opts.rootRank = 0;
    opts.timeout = ctx.timeout;
    wait_for(*ctx.process_group().broadcast(v, opts), ctx, "broadcast_parameters");
  });
}

void average_buffers(torch::nn::Module& module, const DistributedContext& ctx) {
  if (!ctx.is_distributed()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> floats;
  for (const auto& b : module.buffers())
    if (b.is_floating_point()) floats.push_back(b);
  coalesced(floats, ctx, [&](torch::Tensor& buffer) {
    all_reduce_in_place(buffer, ctx, c10d::ReduceOp::SUM, "average_buffers");
    buffer.div_(ctx.world_size);
  });
}

void all_reduce_sum(std::vector<torch::Tensor>& tensors, const DistributedContext& ctx) {
  if (!ctx.is_distributed()) return;
  torch::NoGradGuard no_grad;
  coalesced(tensors, ctx,
            [&](torch::Tensor& buffer) { all_reduce_in_place(buffer, ctx, c10d::ReduceOp::SUM, "all_reduce_sum"); });
}

bool any_process(bool flag, const DistributedContext& ctx) {
  if (!ctx.is_distributed()) return flag;
  auto t = torch::full({1}, flag ? 1 : 0, torch::TensorOptions().dtype(torch::kInt32).device(ctx.device));
  all_reduce_in_place(t, ctx, c10d::ReduceOp::MAX, "any_process");
  return t.item<int>() != 0;
}

void barrier(const DistributedContext& ctx) {
  if (!ctx.is_distributed()) return;
  c10d::BarrierOptions opts;
  opts.timeout = ctx.timeout;
  if (ctx.device.is_cuda()) opts.device_ids = {ctx.device.index()};
  wait_for(*ctx.process_group().barrier(opts), ctx, "barrier");
}

}  // namespace scenic::train
