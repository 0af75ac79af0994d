// Tests for loading weights from elsewhere into our ViT: logits equal to a Flax ViT after
// importing its msgpack checkpoint and its AugReg-style .npz
// (tools/fixtures/make_vit_flax_fixture.py) and to timm's ViT after importing its
// safetensors (tools/fixtures/make_vit_timm_fixture.py); export -> import round trips;
// position-embedding resizing against scipy.ndimage.zoom; head re-initialization for
// another number of classes; clear errors.
#include "scenic/projects/baselines/weight_import.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/msgpack_tree.h"
#include "scenic/common_lib/npz.h"
#include "scenic/common_lib/safetensors.h"
#include "scenic/common_lib/testing.h"

namespace scenic::baselines {
namespace {

using scenic::testing::error_of;
using scenic::testing::TempDir;

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/testdata/";

// The fixtures' config: 16x16x3, patch 4, width 32, MLP 64, 2 heads, 2 layers, 10 classes.
ViTOptions small_vit(int64_t image = 16, int64_t classes = 10, const std::string& classifier = "token") {
  ViTOptions o;
  o.patch_size = {4, 4};
  o.hidden_size = 32;
  o.mlp_dim = 64;
  o.num_heads = 2;
  o.num_layers = 2;
  o.classifier = classifier;
  o.dropout_rate = 0.0;
  o.attention_dropout_rate = 0.0;
  o.num_classes = classes;
  o.input_shape = {-1, 3, image, image};
  return o;
}

size_t num_params(torch::nn::Module& m) { return m.named_parameters().size(); }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

torch::Tensor logits_of(ViT& vit, const torch::Tensor& nchw) {
  vit.eval();
  torch::NoGradGuard no_grad;
  return vit.forward(nchw);
}

void expect_same_params(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

TEST(WeightImport, FlaxMsgpackCheckpointGivesFlaxLogits) {
  const auto io = common::read_npz(kDir + "vit_flax_io.npz");
  ViT vit(small_vit());
  const auto report = init_from_checkpoint(vit, kDir + "vit_flax_checkpoint");
  EXPECT_EQ(report.loaded.size(), num_params(vit));
  EXPECT_TRUE(report.skipped.empty()) << report.summary();
  EXPECT_TRUE(report.unused.empty()) << report.summary();  // global_step, rng: outside `params/`
  const auto logits = logits_of(vit, io.at("inputs").permute({0, 3, 1, 2}));  // NHWC -> NCHW
  EXPECT_LT(max_abs_diff(logits, io.at("logits")), 1e-5);
  EXPECT_GT(io.at("logits").abs().max().item<double>(), 1.0);  // not a trivial (zero) head
}

TEST(WeightImport, AugRegNpzGivesFlaxLogits) {
  // Original ViT names (MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3, `head`).
  const auto io = common::read_npz(kDir + "vit_flax_io.npz");
  ViT vit(small_vit());
  const auto report = init_from_checkpoint(vit, kDir + "vit_augreg.npz", "npz");
  EXPECT_EQ(report.loaded.size(), num_params(vit));
  EXPECT_TRUE(report.unused.empty()) << report.summary();
  EXPECT_LT(max_abs_diff(logits_of(vit, io.at("inputs").permute({0, 3, 1, 2})), io.at("logits")), 1e-5);
}

TEST(WeightImport, BigVisionNamesUnderParamsRoot) {
  // big_vision's Linen names and top-level `pos_embedding`, saved under `params/`.
  const auto io = common::read_npz(kDir + "vit_flax_io.npz");
  common::TensorMap tree;
  for (const auto& [key, v] : common::read_npz(kDir + "vit_augreg.npz")) {
    std::string k = key;
    for (auto [from, to] : {std::pair{"MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"},
                            std::pair{"LayerNorm_2", "LayerNorm_1"}, std::pair{"MlpBlock_3", "MlpBlock_0"},
                            std::pair{"Transformer/posembed_input/pos_embedding", "pos_embedding"}}) {
      if (auto p = k.find(from); p != std::string::npos) k.replace(p, std::string(from).size(), to);
    }
    tree["params/" + k] = v;
  }
  tree["step"] = torch::tensor(5);
  ViT vit(small_vit());
  const auto report = import_flax_tree(vit, tree);
  EXPECT_EQ(report.loaded.size(), num_params(vit));
  EXPECT_TRUE(report.unused.empty()) << report.summary();
  EXPECT_LT(max_abs_diff(logits_of(vit, io.at("inputs").permute({0, 3, 1, 2})), io.at("logits")), 1e-5);
}

TEST(WeightImport, TimmSafetensorsGivesTimmLogits) {
  const auto io = common::read_npz(kDir + "vit_timm_io.npz");
  ViT vit(small_vit());
  const auto report = init_from_checkpoint(vit, kDir + "vit_timm.safetensors");
  EXPECT_EQ(report.loaded.size(), num_params(vit));
  EXPECT_TRUE(report.unused.empty()) << report.summary();
  EXPECT_LT(max_abs_diff(logits_of(vit, io.at("inputs")), io.at("logits")), 1e-5);
}

TEST(WeightImport, ExportImportRoundTripsAreExact) {
  TempDir dir;
  auto o = small_vit();
  o.representation_size = 24;  // pre_logits too
  ViT src(o);
  for (auto& p : src.parameters()) {
    torch::NoGradGuard g;
    p.normal_();  // every tensor distinct, the zero-initialized head included
  }
  common::write_safetensors(dir.file("timm.safetensors"), export_timm_vit(src));
  common::write_flax_checkpoint(dir.file("checkpoint_1"), export_flax_tree(src));
  common::write_npz(dir.file("w.npz"), export_flax_tree(src));
  common::write_safetensors(dir.file("native.safetensors"), export_native(src));
  for (const char* file : {"timm.safetensors", "checkpoint_1", "w.npz", "native.safetensors"}) {
    SCOPED_TRACE(file);
    ViT dst(o);
    const auto report = init_from_checkpoint(dst, dir.file(file));
    EXPECT_EQ(report.loaded.size(), num_params(dst));
    EXPECT_TRUE(report.unused.empty()) << report.summary();
    expect_same_params(src, dst);
  }
  // The exported timm keys are timm's (checked against the fixture's key set).
  const auto timm = common::read_safetensors(kDir + "vit_timm.safetensors").tensors;
  ViT plain(small_vit());
  const auto exported = export_timm_vit(plain);
  ASSERT_EQ(exported.size(), timm.size());
  for (const auto& [k, v] : timm) EXPECT_EQ(exported.at(k).sizes(), v.sizes()) << k;
}

TEST(WeightImport, ResizesPosembToNewGridLikeScipyZoom) {
  // 24x24 images: 6x6 grid + class token. The fixture holds Scenic's surgery
  // (scipy.ndimage.zoom(order=1) of the 4x4 grid, class token kept).
  const auto io = common::read_npz(kDir + "vit_flax_io.npz");
  ViT vit(small_vit(24));
  const auto report = init_from_checkpoint(vit, kDir + "vit_flax_checkpoint");
  ASSERT_EQ(report.resized.size(), 1u);
  EXPECT_EQ(report.resized[0], "Transformer.posembed_input.pos_embedding: [1, 17, 32] -> [1, 37, 32]");
  EXPECT_EQ(report.loaded.size(), num_params(vit));
  const auto& expected = io.at("posemb_resized_6x6");
  EXPECT_LT(max_abs_diff(vit.Transformer->posembed_input->pos_embedding, expected), 1e-6);
  // Same checkpoint into a `gap` model (no class token): the class-token row is dropped.
  ViT gap(small_vit(24, 10, "gap"));
  auto gap_report = init_from_checkpoint(gap, kDir + "vit_augreg.npz");
  EXPECT_EQ(gap_report.unused, (std::vector<std::string>{"cls"}));
  EXPECT_LT(max_abs_diff(gap.Transformer->posembed_input->pos_embedding, expected.slice(1, 1)), 1e-6);
  // No resizing allowed: the shape mismatch is an error naming the parameter.
  WeightImportOptions strict;
  strict.resize_posemb = false;
  ViT other(small_vit(24));
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(other, kDir + "vit_flax_checkpoint", "flax", strict); }),
                  "parameter 'Transformer.posembed_input.pos_embedding' (checkpoint "
                  "'params/Transformer/posembed_input/pos_embedding'): shape [1, 17, 32] does not fit the "
                  "model's [1, 37, 32]");
}

TEST(WeightImport, HeadKeepsFreshInitForOtherNumClasses) {
  ViT vit(small_vit(16, 5));
  const auto report = init_from_checkpoint(vit, kDir + "vit_flax_checkpoint");
  EXPECT_EQ(report.loaded.size(), num_params(vit) - 2);
  ASSERT_EQ(report.skipped.size(), 2u);
  EXPECT_CONTAINS(report.skipped[0], "output_projection.weight: checkpoint shape [10, 32] vs model [5, 32]");
  EXPECT_CONTAINS(report.skipped[1], "another num_classes");
  // ViT's head is zero-initialized and stays so; the body is the checkpoint's.
  EXPECT_EQ(vit.output_projection->weight.abs().sum().item<double>(), 0.0);
  const auto tree = common::read_flax_checkpoint(kDir + "vit_flax_checkpoint");
  EXPECT_TRUE(torch::equal(vit.cls, tree.at("params/cls")));
  // Without the transfer rule the mismatch is an error.
  WeightImportOptions strict;
  strict.reinit_head_on_mismatch = false;
  ViT again(small_vit(16, 5));
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(again, kDir + "vit_flax_checkpoint", "auto", strict); }),
                  "parameter 'output_projection.weight'");
  // load_head = false keeps the head even when it fits (Scenic's init_vit_from_train_state).
  WeightImportOptions no_head;
  no_head.load_head = false;
  ViT fits(small_vit());
  EXPECT_EQ(init_from_checkpoint(fits, kDir + "vit_flax_checkpoint", "auto", no_head).skipped.size(), 2u);
  EXPECT_EQ(fits.output_projection->weight.abs().sum().item<double>(), 0.0);
}

TEST(WeightImport, PreLogitsDroppedWhenModelHasNone) {
  auto with_rep = small_vit();
  with_rep.representation_size = 24;
  ViT src(with_rep);
  ViT dst(small_vit());
  const auto report = import_flax_tree(dst, export_flax_tree(src));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"params/pre_logits/bias", "params/pre_logits/kernel"}));
  ASSERT_EQ(report.skipped.size(), 1u);  // head weight [10, 24] vs [10, 32]; the bias fits
  EXPECT_CONTAINS(report.skipped[0], "output_projection.weight");
}

TEST(WeightImport, ClearErrors) {
  auto tree = common::read_flax_checkpoint(kDir + "vit_flax_checkpoint");
  // A width that cannot be resized.
  auto o = small_vit();
  o.mlp_dim = 128;
  ViT wide(o);
  EXPECT_CONTAINS(error_of([&] { import_flax_tree(wide, tree); }),
                  "parameter 'Transformer.encoderblock_0.MlpBlock_3.Dense_0.weight' (checkpoint "
                  "'params/Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel'): shape [64, 32] does not fit "
                  "the model's [128, 32]");
  // A missing entry names the parameter and the keys tried.
  tree.erase("params/Transformer/encoder_norm/scale");
  ViT vit(small_vit());
  const auto msg = error_of([&] { import_flax_tree(vit, tree); });
  EXPECT_CONTAINS(msg, "no entry for parameter 'Transformer.encoder_norm.weight'");
  EXPECT_CONTAINS(msg, "'params/Transformer/encoder_norm/scale'");
  WeightImportOptions lenient;
  lenient.allow_missing = true;
  EXPECT_EQ(import_flax_tree(vit, tree, lenient).skipped.size(), 1u);
  // Errors from init_from_checkpoint start with the file.
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(wide, kDir + "vit_augreg.npz"); }),
                  kDir + "vit_augreg.npz: parameter 'Transformer.encoderblock_0.MlpBlock_3");
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(vit, kDir + "vit_augreg.npz", "onnx"); }),
                  "unknown checkpoint format 'onnx'");
  EXPECT_CONTAINS(error_of([&] { init_from_checkpoint(vit, kDir + "vit_timm_io.npz"); }),
                  "no entry for parameter");
}

}  // namespace
}  // namespace scenic::baselines
