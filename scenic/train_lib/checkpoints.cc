#include "scenic/train_lib/checkpoints.h"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw Error("checkpoint: cannot open '" + path + "' to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw Error("checkpoint: fsync of '" + path + "' failed (disk full or I/O error)");
}

}  // namespace

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  static const std::regex name_re(R"(checkpoint_([0-9]+))");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(name, m, name_re))
      out.emplace_back(std::stoll(m[1].str()), entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

std::string save_checkpoint(const std::string& dir, const TrainStateRef& state, int keep) {
  fs::create_directories(dir);
  const std::string final_path = (fs::path(dir) / ("checkpoint_" + std::to_string(state.step))).string();
  const std::string tmp_path = final_path + ".tmp";
  try {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive params, buffers;
    // Saved from a CPU copy so a checkpoint loads on any device.
    for (const auto& p : state.network->named_parameters()) params.write(p.key(), p.value().detach().cpu());
    for (const auto& b : state.network->named_buffers()) buffers.write(b.key(), b.value().cpu(), true);
    archive.write("params", params);
    archive.write("buffers", buffers);
    if (state.optimizer != nullptr) {
      torch::serialize::OutputArchive opt;
      state.optimizer->save(opt);
      archive.write("optimizer", opt);
    }
    archive.write("step", c10::IValue(state.step));
    archive.write("metadata", c10::IValue(state.metadata));
    archive.save_to(tmp_path);
    fsync_path(tmp_path, false);
  } catch (const Error&) {
    std::error_code ec;
    fs::remove(tmp_path, ec);
    throw;
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp_path, ec);
    throw Error("checkpoint: writing '" + tmp_path + "' failed (disk full?): " +
                std::string(e.what()).substr(0, 200));
  }
  fs::rename(tmp_path, final_path);
  fsync_path(dir, true);
  if (keep > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + keep < all.size(); ++i) fs::remove(all[i].second);
  }
  return final_path;
}

void restore_checkpoint(const std::string& path, TrainStateRef& state) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + path + "' cannot be read (corrupt or not a checkpoint): " +
                std::string(e.what()).substr(0, 200));
  }
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive params, buffers;
  if (!archive.try_read("params", params))
    throw Error("checkpoint '" + path + "' has no 'params' section");
  auto copy_into = [&](torch::serialize::InputArchive& section, const std::string& name,
                       torch::Tensor& target, const char* what) {
    torch::Tensor value;
    if (!section.try_read(name, value))
      throw Error("checkpoint '" + path + "' has no " + what + " '" + name + "'");
    if (value.sizes() != target.sizes())
      throw Error("checkpoint '" + path + "': " + what + " '" + name + "' has shape " +
                  c10::str(value.sizes()) + " but the model expects " + c10::str(target.sizes()));
    target.copy_(value);
  };
  for (auto& p : state.network->named_parameters()) copy_into(params, p.key(), p.value(), "parameter");
  if (archive.try_read("buffers", buffers))
    for (auto& b : state.network->named_buffers()) copy_into(buffers, b.key(), b.value(), "buffer");
  if (state.optimizer != nullptr) {
    torch::serialize::InputArchive opt;
    if (archive.try_read("optimizer", opt)) state.optimizer->load(opt);
  }
  c10::IValue step, metadata;
  if (!archive.try_read("step", step)) throw Error("checkpoint '" + path + "' has no step");
  state.step = step.toInt();
  if (archive.try_read("metadata", metadata)) state.metadata = metadata.toStringRef();
}

}  // namespace scenic::train
