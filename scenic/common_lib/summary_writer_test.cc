// Event files written by SummaryWriter, read back by the real `tensorboard` package
// (tools/read_tb_events.py in .venv, installed by scripts/setup.sh).
#include "scenic/common_lib/summary_writer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

using scenic::testing::TempDir;

nlohmann::json read_with_tensorboard(const std::string& logdir) {
  const std::string cmd = std::string(SCENIC_SOURCE_DIR) + "/.venv/bin/python " + SCENIC_SOURCE_DIR +
                          "/tools/read_tb_events.py " + logdir + " 2>&1";
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {};
  std::array<char, 4096> buf;
  while (fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int rc = ::pclose(pipe);
  EXPECT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

TEST(SummaryWriter, ScalarsHistogramsImagesAndTextReadBackByTensorBoard) {
  TempDir tmp;
  const auto logdir = tmp.file("tb");
  {
    SummaryWriter w(logdir);
    EXPECT_NE(w.path().find(logdir + "/events.out.tfevents."), std::string::npos);
    w.scalars(10, "train_", {{"loss", 0.5}, {"accuracy", 0.25}});
    w.scalars(20, "train_", {{"loss", 0.125}, {"accuracy", 0.75}});
    w.scalar(20, "valid_accuracy", 0.5);
    // Values 0..9: min 0, max 9, sum 45, sum of squares 285, 30 buckets of width 0.3.
    w.histogram(20, "params/w", torch::arange(10, torch::kFloat32).reshape({2, 5}));
    auto img = torch::zeros({3, 4, 6}, torch::kUInt8);
    img[0].fill_(255);
    w.image(20, "inputs", img);
    w.text(0, "config", "model_name: vit");
  }
  auto j = read_with_tensorboard(logdir);
  auto loss = j["scalars"]["train_loss"];
  ASSERT_EQ(loss.size(), 2u);
  EXPECT_EQ(loss[0][0], 10);
  EXPECT_DOUBLE_EQ(loss[0][1].get<double>(), 0.5);
  EXPECT_EQ(loss[1][0], 20);
  EXPECT_DOUBLE_EQ(loss[1][1].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(j["scalars"]["train_accuracy"][1][1].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["scalars"]["valid_accuracy"][0][1].get<double>(), 0.5);

  auto h = j["histograms"]["params/w"][0];
  EXPECT_EQ(h[0], 20);
  EXPECT_DOUBLE_EQ(h[1].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(h[2].get<double>(), 9.0);
  EXPECT_DOUBLE_EQ(h[3].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(h[4].get<double>(), 45.0);
  EXPECT_DOUBLE_EQ(h[5].get<double>(), 285.0);
  ASSERT_EQ(h[6].size(), 30u);
  EXPECT_DOUBLE_EQ(h[6][29].get<double>(), 9.0);
  double total = 0;
  for (const auto& c : h[7]) total += c.get<double>();
  EXPECT_DOUBLE_EQ(total, 10.0);
  EXPECT_DOUBLE_EQ(h[7][0].get<double>(), 1.0);  // value 0 in [0, 0.3)

  auto im = j["images"]["inputs"][0];
  EXPECT_EQ(im[0], 20);
  EXPECT_EQ(im[1], 6);  // width
  EXPECT_EQ(im[2], 4);  // height
  EXPECT_GT(im[3].get<int>(), 8);  // a PNG

  EXPECT_EQ(j["texts"]["config"][0][1], "model_name: vit");
}

TEST(ImageGrid, TilesAndRescalesEachImage) {
  // 3 images of 1x2x2 -> 2x2 grid of cells, [1, 4, 4]; each image rescaled to [0, 1].
  auto batch = torch::tensor({0.f, 1.f, 2.f, 3.f, -5.f, -5.f, -5.f, 5.f, 7.f, 7.f, 7.f, 7.f}).reshape({3, 1, 2, 2});
  auto g = image_grid(batch);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{1, 4, 4}));
  EXPECT_FLOAT_EQ(g[0][0][1].item<float>(), 1.f / 3);
  EXPECT_FLOAT_EQ(g[0][1][1].item<float>(), 1.f);
  EXPECT_FLOAT_EQ(g[0][1][3].item<float>(), 1.f);  // image 1's max
  EXPECT_FLOAT_EQ(g[0][0][2].item<float>(), 0.f);  // image 1's min
  EXPECT_FLOAT_EQ(g[0][2][0].item<float>(), 0.f);  // a constant image maps to 0
  EXPECT_FLOAT_EQ(g[0][3][3].item<float>(), 0.f);  // the empty fourth cell
}

TEST(SummaryWriter, UncreatableLogdirNamesThePath) {
  TempDir tmp;
  const auto file = tmp.file("a_file");
  FILE* f = std::fopen(file.c_str(), "w");
  std::fclose(f);
  EXPECT_CONTAINS(scenic::testing::error_of([&] { SummaryWriter w(file + "/tb"); }), file);
}

}  // namespace
}  // namespace scenic::common
