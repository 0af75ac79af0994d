// FusedAdamW against LibTorch's AdamW (the reference: same options, same gradients):
// parameters and state after several steps, two groups, a parameter without a gradient,
// amsgrad, checkpoints that load across the two, and the fallback for a mixed group.
// Graph-safe mode (device learning rates and step counts) against the default mode.
#include "scenic/train_lib/fused_adamw.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

namespace optim = torch::optim;

struct Params {
  std::vector<torch::Tensor> a, b;  // group 0 (decayed), group 1 (not decayed)
  std::vector<torch::Tensor> all() const {
    auto v = a;
    v.insert(v.end(), b.begin(), b.end());
    return v;
  }
};

Params make_params(torch::ScalarType dtype = torch::kFloat32) {
  torch::manual_seed(0);
  Params s;
  for (auto shape : {std::vector<int64_t>{7, 5}, std::vector<int64_t>{5}, std::vector<int64_t>{3, 2, 4}})
    s.a.push_back(torch::randn(shape, dtype).requires_grad_(true));
  for (auto shape : {std::vector<int64_t>{4}, std::vector<int64_t>{2, 3}})
    s.b.push_back(torch::randn(shape, dtype).requires_grad_(true));
  return s;
}

template <typename Opt>
std::unique_ptr<Opt> make_opt(const Params& s, bool amsgrad) {
  auto o = optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-7).weight_decay(0.1).amsgrad(amsgrad);
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(s.a, std::make_unique<optim::AdamWOptions>(o));
  groups.emplace_back(s.b, std::make_unique<optim::AdamWOptions>(optim::AdamWOptions(o).weight_decay(0.0).lr(0.03)));
  return std::make_unique<Opt>(groups, o);
}

// Same gradients for both copies: step k gives parameter i the gradient seed(k, i);
// parameter 1 gets none on step 2.
void set_grads(const std::vector<torch::Tensor>& ps, int k) {
  for (size_t i = 0; i < ps.size(); ++i) {
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(100 * k + i));
    if (k == 2 && i == 1) {
      ps[i].mutable_grad() = torch::Tensor();
      continue;
    }
    ps[i].mutable_grad() = torch::randn(ps[i].sizes(), gen, torch::TensorOptions().dtype(ps[i].scalar_type()));
  }
}

void expect_close(const std::vector<torch::Tensor>& x, const std::vector<torch::Tensor>& y, double tol) {
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_TRUE(torch::allclose(x[i], y[i], tol, tol)) << "tensor " << i << ": max diff "
                                                       << (x[i] - y[i]).abs().max().item<double>();
}

// An optimizer's checkpoint section, and loading one.
std::string saved(const optim::Optimizer& opt) {
  std::stringstream buf;
  torch::serialize::OutputArchive out;
  opt.save(out);
  out.save_to(buf);
  return buf.str();
}
void load_saved(optim::Optimizer& opt, const std::string& bytes) {
  std::istringstream buf(bytes);
  torch::serialize::InputArchive in;
  in.load_from(buf);
  opt.load(in);
}
void copy_values(const Params& from, const Params& to) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < from.all().size(); ++i) to.all()[i].copy_(from.all()[i]);
}

void expect_same_steps(torch::ScalarType dtype, bool amsgrad, double tol) {
  auto ref = make_params(dtype), fused = make_params(dtype);
  auto ref_opt = make_opt<optim::AdamW>(ref, amsgrad);
  auto fused_opt = make_opt<FusedAdamW>(fused, amsgrad);
  for (int k = 1; k <= 6; ++k) {
    set_grads(ref.all(), k);
    set_grads(fused.all(), k);
    ref_opt->step();
    fused_opt->step();
  }
  expect_close(fused.all(), ref.all(), tol);
  // The state is AdamW's: same step counts and moments.
  for (size_t i = 0; i < ref.all().size(); ++i) {
    const auto& rs = static_cast<optim::AdamWParamState&>(*ref_opt->state().at(ref.all()[i].unsafeGetTensorImpl()));
    const auto& fs =
        static_cast<optim::AdamWParamState&>(*fused_opt->state().at(fused.all()[i].unsafeGetTensorImpl()));
    EXPECT_EQ(fs.step(), rs.step()) << i;
    EXPECT_EQ(fs.step(), i == 1 ? 5 : 6) << "parameter 1 had no gradient on step 2";
    expect_close({fs.exp_avg(), fs.exp_avg_sq()}, {rs.exp_avg(), rs.exp_avg_sq()}, tol);
    if (amsgrad) expect_close({fs.max_exp_avg_sq()}, {rs.max_exp_avg_sq()}, tol);
  }
}

TEST(FusedAdamW, SameParametersAndStateAsAdamW) { expect_same_steps(torch::kFloat32, false, 1e-6); }
TEST(FusedAdamW, SameWithAmsgrad) { expect_same_steps(torch::kFloat32, true, 1e-6); }
TEST(FusedAdamW, SameInFloat64) { expect_same_steps(torch::kFloat64, false, 1e-12); }

TEST(FusedAdamW, CheckpointsLoadAcrossAdamWAndFusedAdamW) {
  auto ref = make_params(), fused = make_params();
  auto fused_opt = make_opt<FusedAdamW>(fused, false);
  for (int k = 1; k <= 3; ++k) {
    set_grads(fused.all(), k);
    fused_opt->step();
  }
  // FusedAdamW's state into a plain AdamW over a copy of the parameters.
  copy_values(fused, ref);
  auto ref_opt = make_opt<optim::AdamW>(ref, false);
  load_saved(*ref_opt, saved(*fused_opt));
  for (int k = 4; k <= 5; ++k) {
    set_grads(ref.all(), k);
    set_grads(fused.all(), k);
    ref_opt->step();
    fused_opt->step();
  }
  expect_close(fused.all(), ref.all(), 1e-6);
}

// A channels-last weight (ResNet's) with a contiguous gradient and moments loaded in the
// contiguous layout: each element is updated with its own gradient and moments.
TEST(FusedAdamW, GradientsAndMomentsInAnotherLayoutThanTheParameter) {
  torch::manual_seed(2);
  const auto init = torch::randn({4, 3, 5, 5});
  auto ref = init.clone().requires_grad_(true);
  auto cl = init.contiguous(torch::MemoryFormat::ChannelsLast).requires_grad_(true);
  const auto o = optim::AdamWOptions(0.1).weight_decay(0.1);
  optim::AdamW ref_opt(std::vector<torch::Tensor>{ref}, o);
  FusedAdamW fused_opt(std::vector<torch::Tensor>{cl}, o);
  for (int k = 1; k <= 3; ++k) {
    const auto g = torch::randn({4, 3, 5, 5});  // contiguous, unlike `cl`
    ref.mutable_grad() = g.clone();
    cl.mutable_grad() = g.clone();
    ref_opt.step();
    fused_opt.step();
    if (k == 1) {  // as a checkpoint restore would leave them: contiguous moments
      auto& s = static_cast<optim::AdamWParamState&>(*fused_opt.state().at(cl.unsafeGetTensorImpl()));
      s.exp_avg(s.exp_avg().contiguous());
      s.exp_avg_sq(s.exp_avg_sq().contiguous());
    }
  }
  EXPECT_TRUE(cl.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(cl, ref, 1e-6, 1e-6)) << (cl - ref).abs().max();
}

TEST(FusedAdamW, MixedGroupFallsBackToAdamWsStep) {
  auto make = [] {
    torch::manual_seed(1);
    Params s;
    s.a = {torch::randn({3}).requires_grad_(true), torch::randn({2}, torch::kFloat64).requires_grad_(true)};
    return s;
  };
  auto ref = make(), fused = make();
  const auto o = optim::AdamWOptions(0.1).weight_decay(0.2);
  optim::AdamW ref_opt(ref.a, o);
  FusedAdamW fused_opt(fused.a, o);
  for (int k = 1; k <= 3; ++k) {
    set_grads(ref.a, k + 10);
    set_grads(fused.a, k + 10);
    ref_opt.step();
    fused_opt.step();
  }
  for (size_t i = 0; i < ref.a.size(); ++i) EXPECT_TRUE(torch::equal(fused.a[i], ref.a[i])) << i;
}

// Learning rates that float32 holds exactly, so graph-safe mode (float32 lr tensors)
// must give the default mode's bits.
template <typename Opt>
std::unique_ptr<Opt> make_exact_lr_opt(const Params& s) {
  auto o = optim::AdamWOptions(0.0078125).betas({0.9, 0.95}).eps(1e-7).weight_decay(0.1);
  std::vector<optim::OptimizerParamGroup> groups;
  groups.emplace_back(s.a, std::make_unique<optim::AdamWOptions>(o));
  groups.emplace_back(s.b, std::make_unique<optim::AdamWOptions>(optim::AdamWOptions(o).weight_decay(0.0).lr(0.03125)));
  return std::make_unique<Opt>(groups, o);
}

int64_t step_count(const optim::Optimizer& opt, const torch::Tensor& p) {
  return static_cast<const optim::AdamWParamState&>(*opt.state().at(p.unsafeGetTensorImpl())).step();
}

TEST(FusedAdamW, GraphSafeModeGivesTheSameBitsAndCounts) {
  auto ref = make_params(), safe = make_params();
  auto ref_opt = make_exact_lr_opt<FusedAdamW>(ref);
  auto safe_opt = make_exact_lr_opt<FusedAdamW>(safe);
  safe_opt->set_graph_safe(true);
  for (int k = 1; k <= 6; ++k) {
    const double scale = k % 2 ? 1.0 : 0.5;  // a schedule: the lr changes between steps
    for (auto* opt : {ref_opt.get(), safe_opt.get()})
      for (size_t g = 0; g < 2; ++g) opt->param_groups()[g].options().set_lr((g ? 0.03125 : 0.0078125) * scale);
    safe_opt->load_learning_rates();
    set_grads(ref.all(), k);  // parameter 1 has no gradient on step 2
    set_grads(safe.all(), k);
    ref_opt->step();
    safe_opt->step();
  }
  for (size_t i = 0; i < ref.all().size(); ++i) EXPECT_TRUE(torch::equal(safe.all()[i], ref.all()[i])) << i;
  safe_opt->sync_step_counts();
  for (size_t i = 0; i < ref.all().size(); ++i) {
    EXPECT_EQ(step_count(*safe_opt, safe.all()[i]), i == 1 ? 5 : 6) << i;
    EXPECT_EQ(step_count(*safe_opt, safe.all()[i]), step_count(*ref_opt, ref.all()[i])) << i;
  }
}

// save() writes the device counts; a graph-safe optimizer that loads a checkpoint
// continues from the loaded counts.
TEST(FusedAdamW, GraphSafeCheckpointsCarryTheDeviceCounts) {
  auto ref = make_params(), safe = make_params();
  auto ref_opt = make_exact_lr_opt<FusedAdamW>(ref);
  auto safe_opt = make_exact_lr_opt<FusedAdamW>(safe);
  safe_opt->set_graph_safe(true);
  safe_opt->load_learning_rates();
  for (int k = 1; k <= 3; ++k) {
    set_grads(safe.all(), k);
    safe_opt->step();
  }
  const std::string checkpoint = saved(*safe_opt);
  copy_values(safe, ref);
  load_saved(*ref_opt, checkpoint);  // a default-mode optimizer reads the true counts
  EXPECT_EQ(step_count(*ref_opt, ref.all()[0]), 3);
  EXPECT_EQ(step_count(*ref_opt, ref.all()[1]), 2);

  // And back into a fresh graph-safe optimizer, which continues at those counts.
  auto resumed = make_params();
  copy_values(safe, resumed);
  auto resumed_opt = make_exact_lr_opt<FusedAdamW>(resumed);
  resumed_opt->set_graph_safe(true);
  load_saved(*resumed_opt, checkpoint);
  resumed_opt->load_learning_rates();
  for (int k = 4; k <= 5; ++k) {
    set_grads(ref.all(), k);
    set_grads(resumed.all(), k);
    ref_opt->step();
    resumed_opt->step();
  }
  for (size_t i = 0; i < ref.all().size(); ++i) EXPECT_TRUE(torch::equal(resumed.all()[i], ref.all()[i])) << i;
}

TEST(FusedAdamW, GraphSafeModeRefusesWhatItCannotDo) {
  auto s = make_params();
  auto opt = make_exact_lr_opt<FusedAdamW>(s);
  EXPECT_THROW(opt->load_learning_rates(), Error);  // not in graph-safe mode
  opt->set_graph_safe(true);
  set_grads(s.all(), 1);
  try {
    opt->step();
    ADD_FAILURE() << "a graph-safe step without device learning rates ran";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("load_learning_rates"), std::string::npos) << e.what();
  }
  // A group mixing float32 and float64 has no fused (graph-safe) update.
  std::vector<torch::Tensor> mixed{torch::randn({3}).requires_grad_(true),
                                   torch::randn({2}, torch::kFloat64).requires_grad_(true)};
  FusedAdamW mixed_opt(mixed, optim::AdamWOptions(0.1));
  mixed_opt.set_graph_safe(true);
  mixed_opt.load_learning_rates();
  set_grads(mixed, 1);
  try {
    mixed_opt.step();
    ADD_FAILURE() << "a mixed group ran in graph-safe mode";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter group 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace scenic::train
