#include "scenic/projects/baselines/weight_import.h"

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/msgpack_tree.h"
#include "scenic/common_lib/safetensors.h"
#include "scenic/model_lib/layers/attention_layers.h"
#include "scenic/model_lib/layers/masked_layers.h"
#include "scenic/model_lib/layers/position_embeddings.h"
#include "scenic/projects/baselines/bit_resnet.h"
#include "scenic/projects/baselines/resnet.h"
#include "scenic/projects/baselines/weight_import_resnet.h"

namespace scenic::baselines {
namespace {

using common::TensorMap;

std::string shape_str(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

enum class Kind { kLinear, kAttentionIn, kAttentionOut, kConv, kNorm, kBatchNorm, kOther };

// One parameter or BatchNorm statistic of the network, with what owns it.
struct Entry {
  std::string name;        // our name, 'Transformer.encoderblock_0.LayerNorm_0.weight'
  torch::Tensor tensor;
  Kind kind = Kind::kOther;
  std::string leaf;        // 'weight', 'bias', 'running_mean', ...
  int64_t num_heads = 0;   // attention projections
  bool is_stat = false;    // BatchNorm running statistics (Flax's batch_stats)
};

bool is_conv(torch::nn::Module* m) {
  return dynamic_cast<torch::nn::Conv2dImpl*>(m) || dynamic_cast<StdConvImpl*>(m);  // StdConv: `weight` OIHW
}
bool is_norm(torch::nn::Module* m) {
  return dynamic_cast<torch::nn::LayerNormImpl*>(m) || dynamic_cast<torch::nn::GroupNormImpl*>(m) ||
         dynamic_cast<model::masked::GroupNormImpl*>(m);
}

std::vector<Entry> entries_of(torch::nn::Module& network) {
  std::map<std::string, torch::nn::Module*> modules{{"", &network}};
  for (const auto& item : network.named_modules("", /*include_self=*/false)) modules[item.key()] = item.value().get();
  std::vector<Entry> out;
  for (const auto& [mname, module] : modules) {
    const std::string prefix = mname.empty() ? "" : mname + ".";
    Kind kind = Kind::kOther;
    int64_t heads = 0;
    if (dynamic_cast<torch::nn::LinearImpl*>(module)) {
      kind = Kind::kLinear;
      const auto dot = mname.rfind('.');
      auto parent = modules.find(dot == std::string::npos ? "" : mname.substr(0, dot));
      if (auto* mha = parent == modules.end() ? nullptr
                                              : dynamic_cast<model::MultiHeadAttentionImpl*>(parent->second)) {
        const std::string last = mname.substr(dot + 1);
        kind = last == "out" ? Kind::kAttentionOut : Kind::kAttentionIn;
        auto* lin = dynamic_cast<torch::nn::LinearImpl*>(module);
        heads = (kind == Kind::kAttentionOut ? lin->weight.size(1) : lin->weight.size(0)) / mha->head_dim();
      }
    } else if (is_conv(module)) {
      kind = Kind::kConv;
    } else if (is_norm(module)) {
      kind = Kind::kNorm;
    } else if (dynamic_cast<torch::nn::BatchNorm2dImpl*>(module) || dynamic_cast<torch::nn::BatchNorm1dImpl*>(module) ||
               dynamic_cast<FlaxBatchNormImpl*>(module)) {
      kind = Kind::kBatchNorm;  // FlaxBatchNorm: `scale`, `bias` + buffers `mean`, `var`
    }
    for (const auto& p : module->named_parameters(/*recurse=*/false))
      out.push_back({prefix + p.key(), p.value(), kind, p.key(), heads, false});
    if (kind == Kind::kBatchNorm) {
      for (const auto& b : module->named_buffers(/*recurse=*/false)) {
        if (b.key() == "running_mean" || b.key() == "running_var" || b.key() == "mean" || b.key() == "var")
          out.push_back({prefix + b.key(), b.value(), kind, b.key(), 0, true});
      }
    }
  }
  return out;
}

// Flax's leaf name for ours.
std::string flax_leaf(const Entry& e) {
  if (e.leaf == "weight") {
    if (e.kind == Kind::kNorm || e.kind == Kind::kBatchNorm) return "scale";
    if (e.kind != Kind::kOther) return "kernel";
  }
  if (e.leaf == "running_mean") return "mean";
  if (e.leaf == "running_var") return "var";
  return e.leaf;
}

// Other names a module of ours may have in a checkpoint (see the header).
std::vector<std::string> aliases(const std::string& segment) {
  static const std::map<std::string, std::vector<std::string>> kAliases{
      {"MultiHeadDotProductAttention_1", {"MultiHeadDotProductAttention_0"}},
      {"LayerNorm_2", {"LayerNorm_1"}},
      {"MlpBlock_3", {"MlpBlock_0"}},
      {"output_projection", {"head"}},
      {"embedding", {"stem"}},                         // big_vision Mixer
      {"pre_logits_norm", {"pre_head_layer_norm"}},    // big_vision Mixer
  };
  std::vector<std::string> out{segment};
  if (auto it = kAliases.find(segment); it != kAliases.end()) out.insert(out.end(), it->second.begin(), it->second.end());
  if (segment.starts_with("mixerblock_")) out.push_back("MixerBlock_" + segment.substr(11));  // big_vision Mixer
  return out;
}

// The Flax keys (relative to the tree's root) that may hold `e`, most likely first.
std::vector<std::string> flax_candidates(const Entry& e) {
  auto segments = split(e.name, '.');
  segments.back() = flax_leaf(e);
  std::vector<std::string> out{""};
  for (size_t i = 0; i < segments.size(); ++i) {
    std::vector<std::string> next;
    for (const auto& prefix : out) {
      for (const auto& alt : i + 1 < segments.size() ? aliases(segments[i]) : std::vector<std::string>{segments[i]})
        next.push_back(prefix.empty() ? alt : prefix + "/" + alt);
    }
    out = std::move(next);
  }
  if (e.name.ends_with("posembed_input.pos_embedding")) out.push_back("pos_embedding");  // big_vision
  return out;
}

// Flax layout -> ours (see the header's table).
torch::Tensor from_flax(const Entry& e, const torch::Tensor& t) {
  // Old Linen GroupNorm/LayerNorm parameters were stored unsqueezed ([1, 1, 1, C]; what
  // big_vision's bit.fix_old_checkpoints squeezes).
  if (e.kind == Kind::kNorm && t.dim() > e.tensor.dim() && t.numel() == e.tensor.numel() &&
      t.size(-1) == e.tensor.size(-1))
    return t.reshape(e.tensor.sizes());
  if (e.leaf == "weight") {
    if (e.kind == Kind::kConv && t.dim() == 4) return t.permute({3, 2, 0, 1});  // HWIO -> OIHW
    if (e.kind == Kind::kAttentionIn && t.dim() == 3) return t.reshape({t.size(0), -1}).t();   // [D, H, d]
    if (e.kind == Kind::kAttentionOut && t.dim() == 3) return t.reshape({-1, t.size(2)}).t();  // [H, d, D]
    if ((e.kind == Kind::kLinear || e.kind == Kind::kAttentionIn || e.kind == Kind::kAttentionOut) && t.dim() == 2)
      return t.t();
  }
  if (e.leaf == "bias" && e.kind == Kind::kAttentionIn && t.dim() == 2) return t.reshape({-1});  // [H, d]
  return t;
}

torch::Tensor to_flax(const Entry& e, const torch::Tensor& t) {
  if (e.leaf == "weight") {
    if (e.kind == Kind::kConv) return t.permute({2, 3, 1, 0});
    if (e.kind == Kind::kAttentionIn) return t.t().reshape({t.size(1), e.num_heads, -1});
    if (e.kind == Kind::kAttentionOut) return t.t().reshape({e.num_heads, -1, t.size(0)});
    if (e.kind == Kind::kLinear) return t.t();
  }
  if (e.leaf == "bias" && e.kind == Kind::kAttentionIn) return t.reshape({e.num_heads, -1});
  return t;
}

bool is_head(const std::string& name) { return name.starts_with("output_projection."); }
bool is_posemb(const std::string& name) { return name.ends_with("posembed_input.pos_embedding"); }

std::optional<int64_t> square_side(int64_t n) {
  const auto s = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  if (s * s == n) return s;
  return std::nullopt;
}

// Scenic's position-embedding surgery: the source's grid part is zoomed to the model's
// grid; the class-token row is the source's when both have one, the model's own when
// only the model has one, and dropped when only the source has one.
torch::Tensor resize_posemb_for(const torch::Tensor& src, const torch::Tensor& ours, bool src_cls, bool our_cls,
                                const WeightImportOptions& o, const std::string& name) {
  if (src.dim() != 3 || src.size(0) != 1 || src.size(2) != ours.size(2))
    throw Error("parameter '" + name + "': checkpoint position embedding " + shape_str(src) +
                " cannot be resized to " + shape_str(ours) + " (the width must match)");
  const int64_t n_src = src.size(1) - (src_cls ? 1 : 0), n_ours = ours.size(1) - (our_cls ? 1 : 0);
  auto grid_of = [&](int64_t n, const std::optional<std::array<int64_t, 2>>& given, const char* side) {
    if (given) {
      if ((*given)[0] * (*given)[1] != n)
        throw Error("parameter '" + name + "': " + side + " grid " + std::to_string((*given)[0]) + "x" +
                    std::to_string((*given)[1]) + " does not hold its " + std::to_string(n) + " tokens");
      return *given;
    }
    const auto s = square_side(n);
    if (!s)
      throw Error("parameter '" + name + "': " + std::to_string(n) + " " + side +
                  " position tokens are not a square grid (set source_grid/target_grid)");
    return std::array<int64_t, 2>{*s, *s};
  };
  const auto old_grid = grid_of(n_src, o.source_grid, "checkpoint");
  const auto new_grid = grid_of(n_ours, o.target_grid, "model");
  auto grid = model::resize_posemb(src.slice(1, src_cls ? 1 : 0), new_grid, /*has_class_token=*/false, old_grid);
  if (!our_cls) return grid;
  auto cls_row = src_cls ? src.slice(1, 0, 1) : ours.slice(1, 0, 1).to(src.dtype());
  return torch::cat({cls_row, grid}, 1);
}

// Copies `values` (our names, our layouts) into the network, applying the transfer rules.
// `source_of` names each value's checkpoint key; `looked_for` the keys tried for a
// missing one (for messages).
WeightImportReport apply(std::vector<Entry>& entries, const TensorMap& values,
                         const std::map<std::string, std::string>& source_of, bool source_has_cls,
                         const WeightImportOptions& o,
                         const std::map<std::string, std::vector<std::string>>& looked_for = {}) {
  WeightImportReport report;
  bool our_cls = false;
  for (const auto& e : entries) our_cls |= e.name == "cls";
  torch::NoGradGuard no_grad;
  for (auto& e : entries) {
    const bool head = is_head(e.name);
    if (head && !o.load_head) {
      report.skipped.push_back(e.name + ": load_head is false; kept the fresh initialization");
      continue;
    }
    auto it = values.find(e.name);
    if (it == values.end()) {
      if (head || e.name == "cls" || o.allow_missing) {
        report.skipped.push_back(e.name + ": not in the checkpoint; kept the fresh initialization");
        continue;
      }
      std::string tried;
      if (auto l = looked_for.find(e.name); l != looked_for.end()) {
        for (const auto& k : l->second) tried += (tried.empty() ? " (looked for '" : "', '") + k;
        tried += "')";
      }
      throw Error("the checkpoint has no entry for parameter '" + e.name + "'" + tried);
    }
    torch::Tensor v = it->second;
    const std::string src = source_of.count(e.name) ? source_of.at(e.name) : e.name;
    if (v.sizes() != e.tensor.sizes()) {
      if (is_posemb(e.name) && o.resize_posemb) {
        auto resized = resize_posemb_for(v, e.tensor, source_has_cls, our_cls, o, e.name);
        report.resized.push_back(e.name + ": " + shape_str(v) + " -> " + shape_str(resized));
        v = resized;
      } else if (head && o.reinit_head_on_mismatch) {
        report.skipped.push_back(e.name + ": checkpoint shape " + shape_str(v) + " vs model " +
                                 shape_str(e.tensor) + " (another num_classes); kept the fresh initialization");
        continue;
      }
      if (v.sizes() != e.tensor.sizes())
        throw Error("parameter '" + e.name + "' (checkpoint '" + src + "'): shape " + shape_str(it->second) +
                    " does not fit the model's " + shape_str(e.tensor));
    }
    if (v.is_complex() || (v.scalar_type() == torch::kBool) != (e.tensor.scalar_type() == torch::kBool))
      throw Error("parameter '" + e.name + "' (checkpoint '" + src + "'): dtype " +
                  c10::toString(v.scalar_type()) + " cannot load into " + c10::toString(e.tensor.scalar_type()));
    e.tensor.copy_(v.to(e.tensor.options()));
    report.loaded.push_back(e.name);
  }
  return report;
}

// The root under which a tree holds its parameters (see the header).
std::string params_root(const TensorMap& tree) {
  for (const char* root : {"optimizer/target/", "opt/target/", "params/params/", "params/"}) {
    for (const auto& [k, v] : tree) {
      if (k.starts_with(root)) return root;
    }
  }
  return "";
}

std::string stats_root(const TensorMap& tree, const std::string& params) {
  for (const char* root : {"model_state/batch_stats/", "batch_stats/", "model_state/"}) {
    for (const auto& [k, v] : tree) {
      if (k.starts_with(root)) return root;
    }
  }
  return params;
}

}  // namespace

std::string WeightImportReport::summary() const {
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += "\n  " + x;
    return s;
  };
  std::string s = "loaded " + std::to_string(loaded.size()) + " parameters";
  if (!resized.empty()) s += "\nresized:" + join(resized);
  if (!skipped.empty()) s += "\nskipped:" + join(skipped);
  if (!unused.empty()) s += "\nunused checkpoint entries:" + join(unused);
  return s;
}

WeightImportReport import_flax_tree(torch::nn::Module& network, const TensorMap& tree, const WeightImportOptions& o) {
  auto entries = entries_of(network);
  const std::string root = params_root(tree);
  const std::string stats = stats_root(tree, root);
  TensorMap values;
  std::map<std::string, std::string> source_of;
  std::map<std::string, std::vector<std::string>> looked_for;
  std::set<std::string> used;
  for (const auto& e : entries) {
    const std::string& r = e.is_stat ? stats : root;
    for (const auto& c : flax_candidates(e)) {
      looked_for[e.name].push_back(r + c);
      auto it = tree.find(r + c);
      if (it == tree.end()) continue;
      values[e.name] = from_flax(e, it->second);
      source_of[e.name] = it->first;
      used.insert(it->first);
      break;
    }
  }
  const bool source_cls = tree.count(root + "cls") > 0;
  auto report = apply(entries, values, source_of, source_cls, o, looked_for);
  for (const auto& [k, v] : tree) {
    if (!used.count(k) && (k.starts_with(root) || (!stats.empty() && k.starts_with(stats)))) report.unused.push_back(k);
  }
  return report;
}

WeightImportReport import_native(torch::nn::Module& network, const TensorMap& state, const WeightImportOptions& o) {
  auto entries = entries_of(network);
  std::set<std::string> ours;
  for (const auto& e : entries) ours.insert(e.name);
  auto report = apply(entries, state, {}, state.count("cls") > 0, o);
  for (const auto& [k, v] : state) {
    if (!ours.count(k)) report.unused.push_back(k);
  }
  return report;
}

namespace {

// timm key -> our name for everything but the fused qkv; `blocks` = number of layers.
std::map<std::string, std::string> timm_names(int64_t blocks) {
  std::map<std::string, std::string> m{
      {"patch_embed.proj", "embedding"}, {"norm", "Transformer.encoder_norm"},
      {"pre_logits.fc", "pre_logits"},   {"head", "output_projection"}};
  for (int64_t i = 0; i < blocks; ++i) {
    const std::string t = "blocks." + std::to_string(i) + ".", s = "Transformer.encoderblock_" + std::to_string(i) + ".";
    m[t + "norm1"] = s + "LayerNorm_0";
    m[t + "attn.proj"] = s + "MultiHeadDotProductAttention_1.out";
    m[t + "norm2"] = s + "LayerNorm_2";
    m[t + "mlp.fc1"] = s + "MlpBlock_3.Dense_0";
    m[t + "mlp.fc2"] = s + "MlpBlock_3.Dense_1";
  }
  return m;
}

}  // namespace

WeightImportReport import_timm_vit(ViT& vit, const TensorMap& state, const WeightImportOptions& o) {
  if (state.count("fc_norm.weight"))
    throw Error("timm checkpoint has 'fc_norm' (global_pool='avg' normalizes after pooling); Scenic's ViT "
                "normalizes before pooling, so this model cannot be mapped exactly");
  auto entries = entries_of(vit);
  const int64_t blocks = static_cast<int64_t>(vit.Transformer->blocks.size());
  const auto names = timm_names(blocks);
  TensorMap values;
  std::map<std::string, std::string> source_of;
  std::vector<std::string> unused;
  for (const auto& [key, t] : state) {
    std::string ours;
    if (key == "cls_token") ours = "cls";
    if (key == "pos_embed") ours = "Transformer.posembed_input.pos_embedding";
    const auto dot = key.rfind('.');
    const std::string module = dot == std::string::npos ? key : key.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? "" : key.substr(dot + 1);
    if (auto it = names.find(module); it != names.end() && (leaf == "weight" || leaf == "bias")) ours = it->second + "." + leaf;
    if (module.ends_with(".attn.qkv") && module.starts_with("blocks.") && (leaf == "weight" || leaf == "bias")) {
      // [3 * H * d, D] (or [3 * H * d]): q, k, v stacked on the first dim, heads inside.
      const std::string block = module.substr(7, module.size() - 7 - 9);
      if (t.size(0) % 3 != 0) throw Error("timm key '" + key + "': first dim " + std::to_string(t.size(0)) + " is not 3 * width");
      auto parts = t.chunk(3, 0);
      const char* qkv[] = {"query", "key", "value"};
      for (int j = 0; j < 3; ++j) {
        const std::string n = "Transformer.encoderblock_" + block + ".MultiHeadDotProductAttention_1." + qkv[j] + "." + leaf;
        values[n] = parts[j];
        source_of[n] = key;
      }
      continue;
    }
    if (ours.empty()) {
      unused.push_back(key);
      continue;
    }
    values[ours] = t;
    source_of[ours] = key;
  }
  auto report = apply(entries, values, source_of, state.count("cls_token") > 0, o);
  std::set<std::string> ours;
  for (const auto& e : entries) ours.insert(e.name);
  for (const auto& [n, key] : source_of) {
    if (!ours.count(n)) unused.push_back(key);  // e.g. pre_logits when the model has none
  }
  report.unused = unused;
  return report;
}

TensorMap export_native(torch::nn::Module& network) {
  TensorMap out;
  for (const auto& p : network.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : network.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

TensorMap export_flax_tree(torch::nn::Module& network) {
  TensorMap out;
  for (const auto& e : entries_of(network)) {
    auto segments = split(e.name, '.');
    segments.back() = flax_leaf(e);
    std::string key = e.is_stat ? "batch_stats" : "params";
    for (const auto& s : segments) key += "/" + s;
    out[key] = to_flax(e, e.tensor.detach()).contiguous().clone();
  }
  return out;
}

TensorMap export_timm_vit(ViT& vit) {
  const auto ours = export_native(vit);
  TensorMap out;
  for (const auto& [timm, name] : timm_names(static_cast<int64_t>(vit.Transformer->blocks.size()))) {
    for (const char* leaf : {".weight", ".bias"}) {
      if (auto it = ours.find(name + leaf); it != ours.end()) out[timm + leaf] = it->second;
    }
  }
  if (ours.count("cls")) out["cls_token"] = ours.at("cls");
  if (ours.count("Transformer.posembed_input.pos_embedding"))
    out["pos_embed"] = ours.at("Transformer.posembed_input.pos_embedding");
  for (size_t i = 0; i < vit.Transformer->blocks.size(); ++i) {
    const std::string s = "Transformer.encoderblock_" + std::to_string(i) + ".MultiHeadDotProductAttention_1.";
    for (const char* leaf : {"weight", "bias"}) {
      out["blocks." + std::to_string(i) + ".attn.qkv." + leaf] =
          torch::cat({ours.at(s + "query." + leaf), ours.at(s + "key." + leaf), ours.at(s + "value." + leaf)}, 0);
    }
  }
  return out;
}

WeightImportReport init_from_checkpoint(torch::nn::Module& network, const std::string& path,
                                        const std::string& format, const WeightImportOptions& options) {
  std::string fmt = format;
  if (fmt == "auto") {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open for reading");
    std::string head(9, '\0');
    in.read(head.data(), 9);
    head.resize(static_cast<size_t>(in.gcount()));
    if (head.starts_with("PK\x03\x04")) fmt = "npz";
    else if (head.size() == 9 && head[8] == '{') fmt = "safetensors";
    else fmt = "flax";
  }
  try {
    if (fmt == "flax" || fmt == "msgpack") return import_flax_tree(network, common::read_flax_checkpoint(path), options);
    if (fmt == "npz" || fmt == "big_vision") return import_flax_tree(network, common::read_npz(path), options);
    if (fmt == "safetensors") {
      auto file = common::read_safetensors(path);
      if (file.tensors.count("patch_embed.proj.weight") || file.tensors.count("blocks.0.attn.qkv.weight")) {
        auto* vit = dynamic_cast<ViT*>(&network);
        if (vit == nullptr) throw Error("timm ViT weights need a ViT model");
        return import_timm_vit(*vit, file.tensors, options);
      }
      if (is_torchvision_resnet_state(file.tensors)) {
        auto* resnet = dynamic_cast<ResNet*>(&network);
        if (resnet == nullptr) throw Error("torchvision/timm ResNet weights need a ResNet model");
        return import_torchvision_resnet(*resnet, file.tensors, options);
      }
      return import_native(network, file.tensors, options);
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.starts_with(path)) throw;
    throw Error(path + ": " + what);
  }
  throw Error("init_from: unknown checkpoint format '" + format + "' (auto, flax, npz, safetensors)");
}

}  // namespace scenic::baselines
