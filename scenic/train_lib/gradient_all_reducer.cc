#include "scenic/train_lib/gradient_all_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/torch.h>

#include <chrono>
#include <functional>

namespace scenic::train {
namespace {

// Calls back into the reducer once autograd has accumulated a parameter's gradient.
class PostAccumulateHook : public torch::autograd::PostAccumulateGradHook {
 public:
  explicit PostAccumulateHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  void operator()(const torch::autograd::Variable& /*param*/) override { fn_(); }

 private:
  std::function<void()> fn_;
};

}  // namespace

GradientAllReducer::GradientAllReducer(std::vector<torch::Tensor> params, std::shared_ptr<const DistributedContext> ctx,
                                       int64_t bucket_bytes)
    : ctx_(std::move(ctx)) {
  if (!ctx_) throw Error("GradientAllReducer: no DistributedContext");
  for (auto& p : params)
    if (p.requires_grad()) params_.push_back(p);
  if (!ctx_->is_distributed()) return;
  if (bucket_bytes <= 0) bucket_bytes = ctx_->bucket_bytes;

  for (const auto& p : params_)
    if (torch::autograd::impl::post_acc_grad_hooks(p))
      throw Error("GradientAllReducer: a parameter already has a post-accumulate-grad hook "
                  "(is another GradientAllReducer alive on the same network?)");

  // Buckets in reverse registration order: the last layers' gradients come first in
  // backward, so their bucket fills (and starts communicating) first. A bucket holds
  // one dtype on one device.
  where_.resize(params_.size());
  std::vector<int64_t> numels, bytes;
  std::vector<torch::TensorOptions> options;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const int64_t nbytes = p.numel() * static_cast<int64_t>(p.element_size());
    const bool new_bucket = buckets_.empty() || bytes.back() + nbytes > bucket_bytes ||
                            options.back().dtype() != p.dtype() || options.back().device() != p.device();
    if (new_bucket) {
      buckets_.emplace_back();
      numels.push_back(0);
      bytes.push_back(0);
      options.push_back(torch::TensorOptions().dtype(p.dtype()).device(p.device()));
    }
    auto& b = buckets_.back();
    b.params.push_back(k);
    b.offsets.push_back(numels.back());
    where_[k] = {buckets_.size() - 1, b.params.size() - 1};
    numels.back() += p.numel();
    bytes.back() += nbytes;
  }
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i].flat = torch::empty({numels[i]}, options[i]);  // [numel]
  seen_.assign(params_.size(), false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    reset_locked();
  }
  for (size_t k = 0; k < params_.size(); ++k)
    torch::autograd::impl::set_post_acc_grad_hooks(
        params_[k], std::make_unique<PostAccumulateHook>([this, k] { on_gradient(k); }));
}

GradientAllReducer::~GradientAllReducer() {
  if (!ctx_->is_distributed()) return;
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  // Never leave a collective half-done behind: wait for what was launched.
  for (auto& b : buckets_) {
    if (!b.work) continue;
    try {
      wait_for(*b.work, *ctx_, "gradient all-reduce");
    } catch (const std::exception&) {
    }
  }
}

void GradientAllReducer::reset_locked() {
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.work.reset();
  }
  std::fill(seen_.begin(), seen_.end(), false);
  next_launch_ = 0;
  late_ = false;
}

void GradientAllReducer::on_gradient(size_t index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sync_) return;
  const auto [bi, slot] = where_[index];
  auto& b = buckets_[bi];
  if (b.work) {  // a second backward in the same step, after this bucket was sent
    late_ = true;
    return;
  }
  const auto& g = params_[index].grad();
  torch::NoGradGuard no_grad;
  b.flat.narrow(0, b.offsets[slot], params_[index].numel()).copy_(g.reshape({-1}));
  if (!seen_[index]) {
    seen_[index] = true;
    --b.pending;
  }
  launch_ready_locked();
}

void GradientAllReducer::launch_locked(Bucket& b) {
  std::vector<torch::Tensor> v{b.flat};
  c10d::AllreduceOptions opts;
  opts.timeout = ctx_->timeout;
  try {
    b.work = ctx_->process_group().allreduce(v, opts);
  } catch (const c10::Error& e) {
    throw collective_error(*ctx_, "gradient all-reduce", e.what_without_backtrace());
  }
}

void GradientAllReducer::launch_ready_locked() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch_locked(buckets_[next_launch_++]);
}

void GradientAllReducer::finish() {
  if (!ctx_->is_distributed()) return;
  std::lock_guard<std::mutex> lock(mu_);
  torch::NoGradGuard no_grad;
  if (late_) {
    // Wait for what is in flight so the next step starts clean, then say why.
    for (auto& b : buckets_)
      if (b.work) wait_for(*b.work, *ctx_, "gradient all-reduce");
    reset_locked();
    throw Error("GradientAllReducer: a backward pass ran after its gradients were already sent; call finish() "
                "after each backward, or run the earlier backward passes of an accumulation under NoSync");
  }
  last_overlapped_ = next_launch_;
  // Parameters whose hook did not fire (unused this step, or their last backward ran
  // under NoSync): their current .grad, or zeros.
  for (size_t k = 0; k < params_.size(); ++k) {
    if (seen_[k]) continue;
    const auto [bi, slot] = where_[k];
    auto& b = buckets_[bi];
    if (b.work) continue;
    auto slice = b.flat.narrow(0, b.offsets[slot], params_[k].numel());
    const auto& g = params_[k].grad();
    if (g.defined()) slice.copy_(g.reshape({-1}));
    else slice.zero_();
    seen_[k] = true;
    --b.pending;
  }
  launch_ready_locked();

  const auto t0 = std::chrono::steady_clock::now();
  try {
    for (auto& b : buckets_) wait_for(*b.work, *ctx_, "gradient all-reduce");
  } catch (...) {
    reset_locked();
    throw;
  }
  last_wait_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  for (auto& b : buckets_) {
    b.flat.div_(ctx_->world_size);
    for (size_t s = 0; s < b.params.size(); ++s) {
      auto& p = params_[b.params[s]];
      auto mean = b.flat.narrow(0, b.offsets[s], p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(mean);
      else p.mutable_grad() = mean.clone();
    }
  }
  reset_locked();
}

GradientAllReducer::NoSync::NoSync(GradientAllReducer& r) : r_(r) {
  std::lock_guard<std::mutex> lock(r_.mu_);
  previous_ = r_.sync_;
  r_.sync_ = false;
}

GradientAllReducer::NoSync::~NoSync() {
  std::lock_guard<std::mutex> lock(r_.mu_);
  r_.sync_ = previous_;
}

}  // namespace scenic::train
