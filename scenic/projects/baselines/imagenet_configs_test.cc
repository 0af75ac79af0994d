// The ImageNet configs (configs/imagenet/*.yaml, mirroring Scenic's
// projects/baselines/configs/imagenet/*): each loads with our config loader, builds its
// model for ImageNet's meta data (1000 classes, 224 x 224 x 3) without a dataset, builds
// its optimizer and learning-rate schedule, parses its pp strings, and carries no key
// that nothing reads. Parameter counts are checked against hand computations.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "scenic/common_lib/config.h"
#include "scenic/dataset_lib/preprocess.h"
#include "scenic/model_lib/models.h"
#include "scenic/projects/baselines/baselines.h"
#include "scenic/train_lib/lr_schedules.h"
#include "scenic/train_lib/optimizers.h"

namespace scenic::baselines {
namespace {

const std::string kDir = std::string(SCENIC_SOURCE_DIR) + "/scenic/projects/baselines/configs/imagenet/";

// Top-level keys read by what this test does not run: `scenic train` (main.cc marks
// debug_*/xprof as accepted; reads write_summary, trainer_name, model_name), the
// classification trainer (batch size, epochs, logging, checkpoints, init_head_bias,
// max_grad_norm, rng_seed, mixup) and the dataset builder (dataset_name, data_dtype_str,
// dataset_configs; the pp strings are parsed below).
const std::vector<std::string> kReadElsewhere = {
    "model_name", "trainer_name", "write_summary", "xprof", "debug_train", "debug_eval", "batch_size",
    "num_training_epochs", "log_eval_steps", "checkpoint", "checkpoint_steps", "init_head_bias",
    "max_grad_norm", "rng_seed", "mixup", "dataset_name", "data_dtype_str", "dataset_configs"};

struct Built {
  common::ConfigDict config;
  std::shared_ptr<model::Network> network;
  int64_t num_params = 0;
};

Built build(const std::string& file) {
  Built b{common::ConfigDict::from_yaml_file(kDir + file), nullptr, 0};
  model::ModelRegistry registry;
  register_baseline_models(registry);
  dataset::MetaData meta;
  meta.num_classes = 1000;
  meta.input_shape = {-1, 3, 224, 224};
  auto model = registry.get(b.config.get<std::string>("model_name"))(b.config, meta);
  b.network = model->build_network();
  for (const auto& p : b.network->parameters()) b.num_params += p.numel();
  // The optimizer and the schedule read their keys when built (a typo or an optimizer
  // we lack, such as Scenic's 'momentum_hp', throws here).
  auto optimizer = train::make_optimizer(b.config, b.network->named_parameters());
  auto lr = train::get_learning_rate_fn(b.config);
  EXPECT_GT(lr(1000), 0.0) << file;
  for (const char* split : {"dataset_configs.pp_train", "dataset_configs.pp_eval"})
    EXPECT_NO_THROW(dataset::PreprocessChain::parse(b.config.get<std::string>(split))) << file << " " << split;
  for (const auto& key : kReadElsewhere) b.config.mark_used(key);
  EXPECT_EQ(b.config.unused_keys(), std::vector<std::string>{}) << file;
  return b;
}

TEST(ImageNetConfigs, ViTB16) {
  // ViT-B/16, 1000 classes, representation_size 768 (Scenic's imagenet_vit_config):
  //   embedding 16*16*3*768 + 768 = 590,592; cls 768; posembed (196 + 1)*768 = 151,296
  //   per block: 2 LayerNorms 2*1,536; q, k, v, out 4*(768*768 + 768) = 2,362,368;
  //     MLP 768*3072 + 3072 + 3072*768 + 768 = 4,722,432 -> 7,087,872; x12 = 85,054,464
  //   encoder_norm 1,536; head 768*1000 + 1000 = 769,000        -> 86,567,656 (ViT-B/16)
  //   + pre_logits 768*768 + 768 = 590,592                       -> 87,158,248.
  auto b = build("vit_b16.yaml");
  EXPECT_EQ(b.num_params, 87'158'248);
  EXPECT_EQ(b.network->named_parameters()["pre_logits.weight"].sizes(), (std::vector<int64_t>{768, 768}));
}

TEST(ImageNetConfigs, AugRegViTB16) {
  // representation_size null: no pre_logits layer, the plain ViT-B/16 count above.
  EXPECT_EQ(build("augreg_vit_b16.yaml").num_params, 86'567'656);
}

TEST(ImageNetConfigs, MixerB16) {
  // Mixer-B/16: embedding 590,592; per block: 2 LayerNorms 3,072; token mixing over 196
  //   tokens, dim 384: 196*384 + 384 + 384*196 + 196 = 151,108; channel mixing
  //   4,722,432 -> 4,876,612; x12 = 58,519,344; pre_logits_norm 1,536; head 769,000
  //   -> 590,592 + 58,519,344 + 1,536 + 769,000 = 59,880,472.
  EXPECT_EQ(build("augreg_mixer_b16.yaml").num_params, 59'880'472);
}

TEST(ImageNetConfigs, ResNet50) {
  // torchvision's resnet50 count (BatchNorm scale and bias are parameters, the running
  // statistics are buffers).
  EXPECT_EQ(build("resnet50.yaml").num_params, 25'557'032);
}

TEST(ImageNetConfigs, BiTResNet50) {
  // BiT-R50x1 has ResNet-50's conv shapes and GroupNorm's two vectors per BatchNorm.
  EXPECT_EQ(build("bit_resnet50.yaml").num_params, 25'557'032);
}

TEST(ImageNetConfigs, AxialResNet50) {
  // From BiT-R50 (25,557,032): each unit of width w (64, 128, 256, 512; 3, 4, 6, 3 units)
  // loses conv2 + gn2 (9w^2 + 2w) and gains two attention layers without their tables
  // (Dense 2w^2, gn_qkv 4w, gn_out 2w: 2 * (2w^2 + 6w) = 4w^2 + 12w): -5w^2 + 10w,
  //   = -19,840 x3, -80,640 x4, -325,120 x6, -1,305,600 x3 = -6,249,600.
  // Tables: 8 heads, d = w/8, each [2d, 2L-1] = [w/4, 2L-1], two per unit (square input):
  //   (w/2)(2L-1) per unit; L = 56 (block1, block2/unit1), 28 (block2/unit2.., block3/
  //   unit1), 14 (block3/unit2.., block4/unit1), 7 (block4/unit2..):
  //   block1 3*32*111 = 10,656; block2 64*111 + 3*64*55 = 17,664;
  //   block3 128*55 + 5*128*27 = 24,320; block4 256*27 + 2*256*13 = 13,568 -> 66,208.
  //   25,557,032 - 6,249,600 + 66,208 = 19,373,640.
  auto b = build("axial_resnet50.yaml");
  EXPECT_EQ(b.num_params, 19'373'640);
  auto params = b.network->named_parameters();
  EXPECT_EQ(params["block4.unit3.AxialSelfAttention_1.SelfAttentionWith1DRelativePos_0.relative_pos_emb"].sizes(),
            (std::vector<int64_t>{128, 13}));
}

}  // namespace
}  // namespace scenic::baselines
