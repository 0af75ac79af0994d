// Parameter overview (Scenic's log_param_shapes): rows, totals, stats and the table text.
#include "scenic/common_lib/debug_utils.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "scenic/common_lib/testing.h"

namespace scenic::common {
namespace {

struct Toy : torch::nn::Module {
  Toy() {
    fc = register_module("fc", torch::nn::Linear(3, 2));
    scale = register_parameter("scale", torch::tensor({1.0f, 2.0f, 3.0f, 6.0f}));
  }
  torch::nn::Linear fc{nullptr};
  torch::Tensor scale;
};

TEST(ParameterOverview, RowsTotalsAndStats) {
  Toy toy;
  const auto rows = parameter_overview(toy);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].name, "scale");
  EXPECT_EQ(rows[1].name, "fc.weight");
  EXPECT_EQ(rows[1].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(rows[2].size, 2);
  // Total = sum of numel over the module: 4 + 6 + 2 = 12.
  int64_t numel = 0;
  for (const auto& p : toy.parameters()) numel += p.numel();
  EXPECT_EQ(total_size(rows), numel);
  EXPECT_EQ(total_size(rows), 12);
  // scale = [1, 2, 3, 6]: mean 3, population variance (4 + 1 + 0 + 9) / 4 = 3.5.
  EXPECT_DOUBLE_EQ(rows[0].mean, 3.0);
  EXPECT_NEAR(rows[0].std, std::sqrt(3.5), 1e-12);
}

TEST(ParameterOverview, TableText) {
  Toy toy;
  {
    torch::NoGradGuard no_grad;
    toy.fc->weight.fill_(0.5);
    toy.fc->bias.fill_(-1.0);
  }
  const auto text = format_parameter_overview(parameter_overview(toy));
  // Numbers right-aligned; std of [1, 2, 3, 6] = sqrt(3.5) = 1.87 (3 significant digits).
  EXPECT_CONTAINS(text, "| Name      | Shape  | Size | Mean |  Std |\n");
  EXPECT_CONTAINS(text, "| scale     | (4,)   |    4 |    3 | 1.87 |\n");
  EXPECT_CONTAINS(text, "| fc.weight | (2, 3) |    6 |  0.5 |    0 |\n");
  EXPECT_CONTAINS(text, "| fc.bias   | (2,)   |    2 |   -1 |    0 |\n");
  EXPECT_CONTAINS(text, "Total: 12\n");
  const auto plain = format_parameter_overview(parameter_overview(toy), /*include_stats=*/false);
  EXPECT_EQ(plain.find("Mean"), std::string::npos);
  EXPECT_EQ(with_commas(86'567'656), "86,567,656");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(1000), "1,000");
  EXPECT_EQ(with_commas(-1234), "-1,234");
}

}  // namespace
}  // namespace scenic::common
