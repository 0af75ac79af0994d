// Parameter overview: a table of a module's parameters (name, shape, size, mean, std)
// and their total.
//
// The counterpart of Scenic's debug_utils.log_param_shapes (CLU's
// parameter_overview.get_parameter_overview with include_stats): Scenic prints it at the
// start of training and returns the total; `scenic info` prints it here. Names are our
// dotted module paths (`Transformer.encoderblock_0.MlpBlock_3.Dense_0.weight`), shapes
// are LibTorch's (Linear [out, in], Conv [O, I, H, W]), so a row's size equals the Flax
// parameter's even where the layout differs.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

namespace scenic::common {

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t size = 0;  // number of elements
  double mean = 0, std = 0;
};

// One row per parameter, in registration order (frozen parameters included).
std::vector<ParamInfo> parameter_overview(const torch::nn::Module& module);

int64_t total_size(const std::vector<ParamInfo>& params);

// The table with a `Total: N` line, sizes with thousands separators ("55,050").
std::string format_parameter_overview(const std::vector<ParamInfo>& params, bool include_stats = true);

// "1,234,567".
std::string with_commas(int64_t n);

}  // namespace scenic::common
