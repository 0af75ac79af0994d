#include "scenic/projects/baselines/weight_import_resnet.h"

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include "scenic/common_lib/errors.h"

namespace scenic::baselines {
namespace {

using common::TensorMap;

// The BatchNorm epsilon of Scenic's (and torchvision's) ResNet.
constexpr double kBnEps = 1e-5;

std::string shape_str(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// One torchvision key and the name of ours it maps to.
struct Pair {
  std::string torch, ours;
  // A projection of a basic block that torchvision's rule leaves out (see the header).
  bool identity_if_absent = false;
};

void add_conv(std::vector<Pair>& out, const std::string& t, const std::string& o, bool identity = false) {
  out.push_back({t + ".weight", o + ".weight", identity});
}

void add_bn(std::vector<Pair>& out, const std::string& t, const std::string& o, bool identity = false) {
  out.push_back({t + ".weight", o + ".scale", identity});
  out.push_back({t + ".bias", o + ".bias", identity});
  out.push_back({t + ".running_mean", o + ".mean", identity});
  out.push_back({t + ".running_var", o + ".var", identity});
}

// torchvision's projection rule for a block of ours: stride != 1 or C_in != C_out.
bool torchvision_projects(ResidualBlockImpl& block) {
  const auto& first = block.conv1.is_empty() ? block.conv2 : block.conv1;
  const int64_t c_in = first->weight.size(1);
  const int64_t stride = block.conv2->options.stride()->at(0);
  return stride != 1 || c_in != block.out_channels();
}

// Every torchvision key of our ResNet's structure, in order.
std::vector<Pair> pairs_of(ResNet& resnet) {
  std::vector<Pair> out;
  add_conv(out, "conv1", "stem_conv");
  add_bn(out, "bn1", "init_bn");
  int64_t k = 0;
  for (size_t i = 0; i < resnet.stages.size(); ++i) {
    for (size_t j = 0; j < resnet.stages[i].size(); ++j) {
      auto& block = *resnet.stages[i][j];
      const std::string t = "layer" + std::to_string(i + 1) + "." + std::to_string(j) + ".";
      const std::string o = "ResidualBlock_" + std::to_string(k++) + ".";
      if (!block.proj_conv.is_empty()) {
        const bool identity = block.conv1.is_empty() && !torchvision_projects(block);
        add_conv(out, t + "downsample.0", o + "proj_conv", identity);
        add_bn(out, t + "downsample.1", o + "proj_bn", identity);
      }
      if (!block.conv1.is_empty()) {  // bottleneck: the names agree
        for (const char* n : {"1", "2", "3"}) {
          add_conv(out, t + "conv" + n, o + "conv" + n);
          add_bn(out, t + "bn" + n, o + "bn" + n);
        }
      } else {  // basic: torchvision's conv1/conv2 are Scenic's conv2/conv3
        add_conv(out, t + "conv1", o + "conv2");
        add_bn(out, t + "bn1", o + "bn2");
        add_conv(out, t + "conv2", o + "conv3");
        add_bn(out, t + "bn2", o + "bn3");
      }
    }
  }
  if (!resnet.output_projection.is_empty()) {
    out.push_back({"fc.weight", "output_projection.weight"});
    out.push_back({"fc.bias", "output_projection.bias"});
  }
  return out;
}

// The identity a missing basic-block projection stands for: 1x1 kernel I; BatchNorm
// scale 1, bias 0, mean 0 and var 1 - eps, so that (x - 0) / sqrt(var + eps) = x.
torch::Tensor identity_value(const std::string& ours, const torch::Tensor& like) {
  if (ours.ends_with(".weight")) {
    if (like.dim() != 4 || like.size(0) != like.size(1) || like.size(2) != 1 || like.size(3) != 1)
      throw Error("parameter '" + ours + "' " + shape_str(like) + " cannot be an identity projection");
    return torch::eye(like.size(0), like.options()).reshape(like.sizes());
  }
  if (ours.ends_with(".scale")) return torch::ones_like(like);
  if (ours.ends_with(".var")) return torch::full_like(like, 1.0 - kBnEps);
  return torch::zeros_like(like);  // bias, mean
}

}  // namespace

bool is_torchvision_resnet_state(const TensorMap& state) {
  return state.count("conv1.weight") && state.count("layer1.0.conv1.weight");
}

WeightImportReport import_torchvision_resnet(ResNet& resnet, const TensorMap& state, const WeightImportOptions& o) {
  std::map<std::string, torch::Tensor> ours;
  for (const auto& p : resnet.named_parameters()) ours[p.key()] = p.value();
  for (const auto& b : resnet.named_buffers()) ours[b.key()] = b.value();
  TensorMap values;
  std::set<std::string> used;
  std::vector<std::string> filled;
  for (const auto& pair : pairs_of(resnet)) {
    const auto& mine = ours.at(pair.ours);
    auto it = state.find(pair.torch);
    if (it == state.end()) {
      if (pair.identity_if_absent) {
        values[pair.ours] = identity_value(pair.ours, mine);
        filled.push_back(pair.ours);
        continue;
      }
      if (pair.ours.starts_with("output_projection.") || o.allow_missing) continue;  // the importer reports it
      throw Error("the torchvision state_dict has no '" + pair.torch + "' (for our '" + pair.ours + "')");
    }
    used.insert(pair.torch);
    if (it->second.sizes() != mine.sizes() && !pair.ours.starts_with("output_projection."))
      throw Error("torchvision key '" + pair.torch + "': shape " + shape_str(it->second) + " does not fit our '" +
                  pair.ours + "' " + shape_str(mine));
    values[pair.ours] = it->second;
  }
  // A torchvision block with a downsample where ours has none (or blocks we lack) would be
  // silently dropped: refuse.
  for (const auto& [key, v] : state) {
    if (used.count(key) || key.ends_with(".num_batches_tracked")) continue;
    if (key.starts_with("layer") || key.starts_with("conv1.") || key.starts_with("bn1."))
      throw Error("torchvision key '" + key + "' has no counterpart in our ResNet (another depth or block type?)");
  }
  auto report = import_native(resnet, values, o);
  report.unused.clear();
  for (const auto& [key, v] : state) {
    if (!used.count(key) && !key.ends_with(".num_batches_tracked")) report.unused.push_back(key);
  }
  for (const auto& name : filled) report.skipped.push_back(name + ": no torchvision counterpart; set to the identity");
  return report;
}

TensorMap export_torchvision_resnet(ResNet& resnet) {
  const auto native = export_native(resnet);
  TensorMap out;
  std::set<std::string> dropped;  // identity projections torchvision has no place for
  for (const auto& pair : pairs_of(resnet)) {
    const auto& v = native.at(pair.ours);
    if (pair.identity_if_absent) {
      dropped.insert(pair.ours.substr(0, pair.ours.rfind('.')));
      continue;
    }
    out[pair.torch] = v;
    if (pair.torch.ends_with(".running_var"))
      out[pair.torch.substr(0, pair.torch.size() - 11) + "num_batches_tracked"] = torch::zeros({}, torch::kLong);
  }
  // A dropped projection must compute the identity: kernel I and a BatchNorm whose affine
  // map a * x + b (a = scale / sqrt(var + eps), b = bias - mean * a) is x.
  for (const auto& module : dropped) {
    if (module.ends_with("proj_conv")) {
      const auto& w = native.at(module + ".weight");
      if ((w - identity_value(module + ".weight", w)).abs().max().item<double>() > 1e-6)
        throw Error("cannot export '" + module + "' to torchvision: its basic block has a learned projection "
                    "shortcut that torchvision's ResNet does not have (only an identity projection maps)");
    } else {
      const auto a = native.at(module + ".scale") / torch::sqrt(native.at(module + ".var") + kBnEps);
      const auto b = native.at(module + ".bias") - native.at(module + ".mean") * a;
      if ((a - 1).abs().max().item<double>() > 1e-5 || b.abs().max().item<double>() > 1e-5)
        throw Error("cannot export '" + module + "' to torchvision: its basic block's projection BatchNorm is not "
                    "the identity, and torchvision's ResNet has no projection there");
    }
  }
  return out;
}

}  // namespace scenic::baselines
