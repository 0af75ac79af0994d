// `scenic info` / `scenic bench` on baseline models (train_lib/benchmark.h): FLOP counts
// checked against hand-written formulas, the parameter table against the module, and
// the structure of a short bench run (no timing assertions).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>

#include "scenic/common_lib/config.h"
#include "scenic/common_lib/npz.h"
#include "scenic/common_lib/testing.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"
#include "scenic/train_lib/benchmark.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::baselines {
namespace {

dataset::MetaData mnist_meta() {
  dataset::MetaData meta;
  meta.num_classes = 10;
  meta.input_shape = {-1, 1, 28, 28};
  return meta;
}

std::shared_ptr<model::BaseModel> make_model(const std::string& yaml) {
  static model::ModelRegistry* registry = [] {
    auto* r = new model::ModelRegistry();
    register_baseline_models(*r);
    return r;
  }();
  const auto config = common::ConfigDict::from_yaml_string(yaml);
  return registry->get(config.get<std::string>("model_name"))(config, mnist_meta());
}

// A small ViT on 28x28x1: patch 7 -> Np = 16 patches, N = 17 tokens with [CLS],
// D = 32, M = 64, 4 heads, L = 2 layers, K = 10 classes.
const char* const kTinyViT = R"(
model_name: vit_classification
batch_size: 4
rng_seed: 0
model:
  patches: {size: [7, 7]}
  hidden_size: 32
  mlp_dim: 64
  num_heads: 4
  num_layers: 2
  classifier: token
  dropout_rate: 0.0
  attention_dropout_rate: 0.0
optimizer_configs:
  optimizer: adamw
  weight_decay: 0.1
  skip_scale_and_bias_regularization: true
max_grad_norm: 1.0
lr_configs: {base_learning_rate: 0.001}
)";

TEST(ModelInfo, FullyConnectedFlopsAndParameterTable) {
  auto model = make_model("model_name: fully_connected_classification\nmodel: {hid_sizes: [64, 64]}\n");
  const auto info = train::model_info(*model, "fully_connected_classification");
  // Multiply-adds of 784 -> 64 -> 64 -> 10: 784*64 + 64*64 + 64*10 = 50,176 + 4,096 + 640 = 54,912.
  EXPECT_EQ(info.flops_per_example, 54'912);
  // Parameters: the weights above plus biases 64 + 64 + 10 = 55,050, = the module's numel sum.
  EXPECT_EQ(info.num_params, 55'050);
  int64_t numel = 0;
  for (const auto& p : model->build_network()->parameters()) numel += p.numel();
  EXPECT_EQ(info.num_params, numel);
  ASSERT_EQ(info.params.size(), 6u);
  EXPECT_EQ(info.params[0].name, "Dense_0.weight");
  EXPECT_EQ(info.params[0].shape, (std::vector<int64_t>{64, 784}));
  const auto text = train::format_model_info(info);
  EXPECT_CONTAINS(text, "Total: 55,050\n");
  EXPECT_CONTAINS(text, "GFLOPs per example (forward, batch 1, multiply-add = 1 FLOP): 0.0001 (54,912 multiply-adds)");
}

TEST(ModelInfo, ViTFlopsFollowTheFormula) {
  auto model = make_model(kTinyViT);
  const auto info = train::model_info(*model, "vit_classification");
  // F = patch embed  Np * D * (C * p * p)                   = 16 * 32 * 49           =  25,088
  //   + L x [ q, k, v, out projections  4 * N * D * D      = 4 * 17 * 32 * 32       =  69,632
  //           attention q k^T and w v   2 * N * N * D      = 2 * 17 * 17 * 32       =  18,496
  //           MLP                       2 * N * D * M      = 2 * 17 * 32 * 64       =  69,632 ]
  //                                                           per layer 157,760, x 2 = 315,520
  //   + head                            D * K              = 32 * 10                =     320
  //   = 340,928.
  EXPECT_EQ(info.flops_per_example, 340'928);
  EXPECT_EQ(info.flops_by_op.at("aten::scaled_dot_product_attention"), 2 * 18'496);
  // Parameters: embedding 49*32 + 32; cls 32; pos 17*32; per layer 2 LNs (4*32),
  // q/k/v/out 4*(32*32 + 32), MLP 32*64 + 64 + 64*32 + 32; encoder_norm 64; head 32*10 + 10.
  const int64_t per_layer = 4 * 32 + 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32);
  const int64_t expected = (49 * 32 + 32) + 32 + 17 * 32 + 2 * per_layer + 64 + (32 * 10 + 10);
  EXPECT_EQ(info.num_params, expected);
  int64_t numel = 0;
  for (const auto& p : model->build_network()->parameters()) numel += p.numel();
  EXPECT_EQ(common::total_size(info.params), numel);
}

TEST(Bench, TrainAndEvalReturnSaneFields) {
  auto model = make_model(kTinyViT);
  const auto config = common::ConfigDict::from_yaml_string(kTinyViT);
  for (const std::string mode : {"train", "eval"}) {
    SCOPED_TRACE(mode);
    train::BenchOptions o;
    o.steps = 3;
    o.warmup_steps = 1;
    o.mode = mode;
    o.matmul_size = 64;
    const auto r = train::bench(config, *model, o);
    EXPECT_EQ(r.mode, mode);
    EXPECT_EQ(r.model_name, "vit_classification");
    EXPECT_EQ(r.device, "cpu");
    EXPECT_EQ(r.batch_size, 4);  // the config's
    EXPECT_EQ(r.steps, 3);
    EXPECT_EQ(r.flops_per_example, 340'928);  // the formula above
    EXPECT_GT(r.num_params, 0);
    EXPECT_GT(r.threads, 0);
    EXPECT_GT(r.examples_per_sec, 0);
    EXPECT_GT(r.ms_min, 0);
    EXPECT_LE(r.ms_min, r.ms_p10);
    EXPECT_LE(r.ms_p10, r.ms_median);
    EXPECT_LE(r.ms_median, r.ms_p90);
    EXPECT_LE(r.ms_p90, r.ms_max);
    EXPECT_GT(r.peak_rss_mib, 0);
    EXPECT_EQ(r.gpu_peak_allocated_mib, -1);  // not on CUDA
    // achieved = FLOPs/example x (3 for train, 1 for eval) x examples/s.
    EXPECT_NEAR(r.achieved_gflops, 340'928 * (mode == "train" ? 3.0 : 1.0) * r.examples_per_sec / 1e9, 1e-9);
    EXPECT_GT(r.matmul_gflops, 0);
    EXPECT_NEAR(r.peak_fraction, r.achieved_gflops / r.matmul_gflops, 1e-12);
    if (mode == "train") {
      // Zero-initialised head: the first loss is ln 10 = 2.303; a few AdamW steps at
      // lr 1e-3 on random labels keep it near there.
      EXPECT_GT(r.last_loss, 1.5);
      EXPECT_LT(r.last_loss, 3.5);
    }
    const auto j = train::to_json(r);
    EXPECT_EQ(j.at("examples_per_sec").get<double>(), r.examples_per_sec);
    EXPECT_EQ(j.at("mode").get<std::string>(), mode);
    EXPECT_CONTAINS(train::format_bench_result(r), "examples/s");
  }
  // --batch_size overrides the config's; a bad mode is an error naming the flag.
  train::BenchOptions o;
  o.steps = 1;
  o.warmup_steps = 0;
  o.batch_size = 2;
  o.matmul_size = 0;
  const auto r = train::bench(config, *model, o);
  EXPECT_EQ(r.batch_size, 2);
  EXPECT_EQ(r.matmul_gflops, 0);
  o.mode = "infer";
  EXPECT_CONTAINS(testing::error_of([&] { train::bench(config, *model, o); }), "--mode must be train or eval");
}

// Copies the fixture's `param/<name>` into every parameter of ours; returns how many, after
// checking that each of ours is there and the fixture has no parameter left over.
int64_t load_reference_parameters(torch::OrderedDict<std::string, torch::Tensor>& named,
                                  const std::map<std::string, torch::Tensor>& f) {
  int64_t loaded = 0, in_fixture = 0;
  torch::NoGradGuard no_grad;
  for (auto& p : named) {
    if (!f.count("param/" + p.key())) {
      ADD_FAILURE() << "fixture lacks " << p.key();
      continue;
    }
    p.value().copy_(f.at("param/" + p.key()));
    ++loaded;
  }
  for (const auto& [k, _] : f) in_fixture += k.rfind("param/", 0) == 0;
  EXPECT_EQ(in_fixture, loaded);
  return loaded;
}

void expect_parameters_after(const torch::OrderedDict<std::string, torch::Tensor>& named,
                             const std::map<std::string, torch::Tensor>& f, double rtol, double atol) {
  for (const auto& p : named) {
    const auto& after = f.at("after/" + p.key());
    EXPECT_TRUE(torch::allclose(p.value(), after, rtol, atol)) << p.key() << " " << (p.value() - after).abs().max();
  }
}

std::map<std::string, torch::Tensor> read_fixture(const std::string& name) {
  return common::read_npz(std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/testdata/" + name);
}

dataset::Batch fixture_batch(const std::map<std::string, torch::Tensor>& f) {
  return {{"inputs", f.at("inputs")},
          {"label", f.at("labels").to(torch::kLong)},
          {"batch_mask", torch::ones({f.at("labels").size(0)})}};
}

// The reference's weights in our network: its logits and loss (train mode) on its batch,
// then one step of global-norm clipping to 0.1 + the config's optimizer at lr 0.01 gives
// its gradient norm and its parameters after the step.
void expect_same_clipped_step(const model::BaseModel& model, const std::map<std::string, torch::Tensor>& f,
                              int64_t num_parameters) {
  auto network = model.build_network();
  auto named = network->named_parameters();
  EXPECT_EQ(load_reference_parameters(named, f), num_parameters);
  network->train();
  const auto batch = fixture_batch(f);
  auto logits = network->forward(batch.at("inputs"));
  EXPECT_TRUE(torch::allclose(logits, f.at("logits"), 1e-5, 1e-5)) << (logits - f.at("logits")).abs().max();
  auto loss = model.loss_function(logits, batch, network.get());
  EXPECT_NEAR(loss.item<double>(), f.at("loss").item<double>(), 1e-5);
  auto optimizer = train::make_optimizer(model.config(), named);
  train::set_learning_rate(*optimizer, 0.01);
  optimizer->zero_grad();
  loss.backward();
  const auto norm = train::clip_grad_global_norm(network->parameters(), 0.1);
  EXPECT_NEAR(norm.item<double>(), f.at("grad_norm").item<double>(), 1e-5);
  optimizer->step();
  expect_parameters_after(named, f, 1e-5, 1e-6);
}

// bench/reference/vit_torch.py (the PyTorch side of bench/compare.sh) is the same model
// and the same training step as ours: with its weights loaded, our ViT gives its logits
// and loss on its batch, and one step of our clipping + AdamW gives its parameters.
// Fixture: tools/fixtures/make_vit_bench_reference_fixture.py.
TEST(ReferenceParity, TorchReferenceIsTheSameModelAndStep) {
  const auto f = read_fixture("vit_bench_reference.npz");
  auto model = make_model(R"(
model_name: vit_classification
label_smoothing: 0.1
model:
  patches: {size: [14, 14]}
  hidden_size: 16
  mlp_dim: 32
  num_heads: 2
  num_layers: 2
  classifier: token
  dropout_rate: 0.0
  attention_dropout_rate: 0.0
  stochastic_depth: 0.0
optimizer_configs:
  optimizer: adamw
  eps: 0.001  # as the fixture (see its docstring)
  weight_decay: 0.1
  skip_scale_and_bias_regularization: true
)");
  expect_same_clipped_step(*model, f, 40);
}

// Two steps of our ResNet-26 (2 filters) from the fixture's weights on its batch, in
// `dtype`: each parameter's change, and the BatchNorm running means. Checks the logits and
// loss of the first step against the fixture (float32 tolerances).
struct ResNetSteps {
  std::map<std::string, torch::Tensor> change, mean;
};
ResNetSteps resnet_two_steps(const std::map<std::string, torch::Tensor>& f, torch::Dtype dtype) {
  auto model = make_model(R"(
model_name: resnet_classification
num_filters: 2
num_layers: 26
l2_decay_factor: 0.1
optimizer: momentum
optimizer_configs: {momentum: 0.9}
)");
  auto network = model->build_network();
  auto named = network->named_parameters();
  EXPECT_EQ(load_reference_parameters(named, f), 89);
  network->to(dtype);
  named = network->named_parameters();
  network->train();
  auto batch = fixture_batch(f);
  batch.at("inputs") = batch.at("inputs").to(dtype);
  auto optimizer = train::make_optimizer(model->config(), named);
  train::set_learning_rate(*optimizer, 0.1);
  for (int step = 0; step < 2; ++step) {
    optimizer->zero_grad();
    auto logits = network->forward(batch.at("inputs"));
    auto loss = model->loss_function(logits, batch, network.get());  // includes 0.5 * 0.1 * sum(p^2)
    if (step == 0) {
      const auto want = f.at("logits").to(dtype);
      EXPECT_TRUE(torch::allclose(logits, want, 1e-4, 1e-5)) << (logits - want).abs().max();
      EXPECT_NEAR(loss.item<double>(), f.at("loss").item<double>(), 1e-4);
    }
    loss.backward();
    optimizer->step();
  }
  ResNetSteps out;
  for (const auto& p : named)
    out.change[p.key()] = (p.value().detach().to(torch::kDouble) - f.at("param/" + p.key()).to(torch::kDouble));
  for (const auto& b : network->named_buffers()) {
    const auto dot = b.key().rfind(".mean");
    if (dot != std::string::npos && dot + 5 == b.key().size()) out.mean[b.key().substr(0, dot)] = b.value().detach();
  }
  return out;
}

// The same for bench/reference/resnet_torch.py (SGD with momentum and Scenic's L2 term;
// two steps so the second uses the momentum trace) and mixer_torch.py (label smoothing,
// clipping, AdamW). Fixture: tools/fixtures/make_resnet_mixer_bench_reference_fixture.py.
TEST(ReferenceParity, TorchResNetIsTheSameModelAndStep) {
  // One intra-op thread, as under ctest (OMP_NUM_THREADS=1): with two, oneDNN's
  // channels-last convolution and BatchNorm backward reduce in another order.
  testing::IntraOpThreads one_thread(1);
  const auto f = read_fixture("resnet_bench_reference.npz");
  const auto ours = resnet_two_steps(f, torch::kFloat32);
  const auto exact = resnet_two_steps(f, torch::kFloat64);  // ATen's conv and batch norm in float64
  // Each parameter's change over the two steps against the float64 run, relative to the
  // change's size (plus 1e-3 for the changes that are ~0: init_bn's bias, whose shift the
  // next BatchNorm removes, moves only by rounding). BatchNorm over 4 examples at 1x1
  // (the last stage) is ill-conditioned, so float32 rounding shows: the fixture (float32
  // PyTorch) is off by up to 6.3e-3 of a change and ours by up to 6.6e-4 (1.7e-3 before
  // the 1x1 convolutions of that stage ran as matrix products, pointwise_conv.h). A missing
  // L2 term (10% of the change here), momentum or BN gradient moves a change by 1e-1 or more.
  for (const auto& [key, change] : ours.change) {
    const auto ref = f.at("after/" + key).to(torch::kDouble) - f.at("param/" + key).to(torch::kDouble);
    const auto& exact_change = exact.change.at(key);
    const double size = exact_change.norm().item<double>() + 1e-3;
    const double ours_err = (change - exact_change).norm().item<double>() / size;
    const double fixture_err = (ref - exact_change).norm().item<double>() / size;
    EXPECT_LE(ours_err, 2e-3) << key << ": ours off the float64 run by " << ours_err << " of the change";
    EXPECT_LE(fixture_err, 1e-2) << key << ": the PyTorch reference off the float64 run by " << fixture_err
                                 << " of the change";
  }
  EXPECT_EQ(ours.mean.size(), 29u);  // init_bn + 8 blocks x (bn1, bn2, bn3) + proj_bn of the 4 blocks that change width
  for (const auto& [key, mean] : ours.mean)
    EXPECT_TRUE(torch::allclose(mean, f.at("mean/" + key), 1e-4, 1e-5)) << key;
}

TEST(ReferenceParity, TorchMixerIsTheSameModelAndStep) {
  const auto f = read_fixture("mixer_bench_reference.npz");
  auto model = make_model(R"(
model_name: mixer_classification
label_smoothing: 0.1
model:
  patch_size: [7, 7]
  hidden_size: 8
  num_layers: 2
  channels_mlp_dim: 12
  sequence_mlp_dim: 6
  dropout_rate: 0.0
  stochastic_depth: 0.0
optimizer_configs:
  optimizer: adamw
  eps: 0.001  # as the fixture
  weight_decay: 0.1
  skip_scale_and_bias_regularization: true
)");
  expect_same_clipped_step(*model, f, 30);
}

}  // namespace
}  // namespace scenic::baselines
