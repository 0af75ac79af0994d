#include "scenic/train_lib/checkpoints.h"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

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

// torch's own file writer (PyTorchStreamWriter) hits a failed write (disk full) in its
// destructor and terminates the process; so the archive streams through a callback
// that writes to our file descriptor, remembers the first error and always reports
// success to torch; the error is raised here, after torch is done, as a scenic::Error.
void write_archive_durably(torch::serialize::OutputArchive& archive, const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("checkpoint: cannot create '" + path + "': " + std::strerror(errno));
  int error = 0;
  archive.save_to([&](const void* data, size_t n) -> size_t {
    const char* p = static_cast<const char*>(data);
    for (size_t left = n; left > 0 && error == 0;) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0) {
        if (errno != EINTR) error = errno;
        continue;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    return n;
  });
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error != 0)
    throw Error("checkpoint: writing '" + path + "' failed: " + std::strerror(error) + " (disk full?)");
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
    if (state.include_rng) {
      // torch's CPU generator drives dropout and stochastic depth: restoring it makes a
      // resumed run draw the same masks as an uninterrupted one.
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      archive.write("rng_cpu", gen.get_state());
    }
    if (state.save_extra) {
      torch::serialize::OutputArchive extra;
      state.save_extra(extra);
      archive.write("extra", extra);
    }
    archive.write("step", c10::IValue(state.step));
    archive.write("metadata", c10::IValue(state.metadata));
    write_archive_durably(archive, tmp_path);
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
  if (state.load_extra) {
    torch::serialize::InputArchive extra;
    if (archive.try_read("extra", extra)) state.load_extra(extra);
  }
  torch::Tensor rng_state;
  if (state.include_rng && archive.try_read("rng_cpu", rng_state)) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng_state);
  }
  c10::IValue step, metadata;
  if (!archive.try_read("step", step)) throw Error("checkpoint '" + path + "' has no step");
  state.step = step.toInt();
  if (archive.try_read("metadata", metadata)) state.metadata = metadata.toStringRef();
}

}  // namespace scenic::train
