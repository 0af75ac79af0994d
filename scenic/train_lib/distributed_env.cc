#include "scenic/train_lib/distributed_env.h"

#include <cctype>
#include <climits>
#include <cstdlib>

#include "scenic/common_lib/errors.h"

namespace scenic::train {
namespace {

constexpr int kDefaultPort = 29500;  // torchrun's default MASTER_PORT

int parse_int(const std::string& name, const std::string& value) {
  size_t pos = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos == 0 || pos != value.size() || v < INT32_MIN || v > INT32_MAX)
    throw Error("environment variable " + name + "='" + value + "' is not an integer");
  return static_cast<int>(v);
}

std::optional<int> get_int(const EnvLookup& env, const std::string& name) {
  auto v = env(name);
  if (!v) return std::nullopt;
  return parse_int(name, *v);
}

int require_int(const EnvLookup& env, const std::string& name, const std::string& launcher) {
  auto v = get_int(env, name);
  if (!v) throw Error("environment variable " + name + " is not set (the " + launcher + " variables are incomplete)");
  return *v;
}

// SLURM_NTASKS_PER_NODE is "4" or "4(x2)" or "4(x2),2": the first count is this
// layout's common case; 0 (unknown) when unparsable.
int parse_tasks_per_node(const std::string& value) {
  size_t end = 0;
  while (end < value.size() && std::isdigit(static_cast<unsigned char>(value[end]))) ++end;
  return end == 0 ? 0 : std::stoi(value.substr(0, end));
}

// Integers from "1-3,5" with their zero padding ("08-10" -> 08 09 10).
std::vector<std::string> expand_ranges(const std::string& body, const std::string& context) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    if (comma == std::string::npos) comma = body.size();
    const std::string item = body.substr(start, comma - start);
    const size_t dash = item.find('-');
    const std::string lo_s = dash == std::string::npos ? item : item.substr(0, dash);
    const std::string hi_s = dash == std::string::npos ? item : item.substr(dash + 1);
    auto is_number = [](const std::string& s) {
      if (s.empty()) return false;
      for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
      return true;
    };
    if (!is_number(lo_s) || !is_number(hi_s))
      throw Error("Slurm node list '" + context + "': bad range '" + item + "'");
    const long lo = std::stol(lo_s), hi = std::stol(hi_s);
    if (hi < lo) throw Error("Slurm node list '" + context + "': range '" + item + "' goes down");
    const size_t width = lo_s.size();
    for (long v = lo; v <= hi; ++v) {
      std::string s = std::to_string(v);
      if (s.size() < width) s.insert(0, width - s.size(), '0');
      out.push_back(s);
    }
    start = comma + 1;
  }
  return out;
}

// One host-list entry (no top-level commas), possibly with several bracket groups.
void expand_entry(const std::string& entry, const std::string& context, std::vector<std::string>& out) {
  const size_t open = entry.find('[');
  if (open == std::string::npos) {
    if (entry.find(']') != std::string::npos) throw Error("Slurm node list '" + context + "': unbalanced ']'");
    out.push_back(entry);
    return;
  }
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) throw Error("Slurm node list '" + context + "': unbalanced '['");
  const std::string prefix = entry.substr(0, open);
  std::vector<std::string> rest;
  expand_entry(entry.substr(close + 1), context, rest);
  for (const auto& v : expand_ranges(entry.substr(open + 1, close - open - 1), context))
    for (const auto& r : rest) out.push_back(prefix + v + r);
}

}  // namespace

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::vector<std::string> expand_slurm_nodelist(const std::string& nodelist) {
  std::vector<std::string> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= nodelist.size(); ++i) {
    const char c = i < nodelist.size() ? nodelist[i] : ',';
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) throw Error("Slurm node list '" + nodelist + "': unbalanced ']'");
    if (c == ',' && depth == 0) {
      const std::string entry = nodelist.substr(start, i - start);
      if (!entry.empty()) expand_entry(entry, nodelist, out);
      start = i + 1;
    }
  }
  if (depth != 0) throw Error("Slurm node list '" + nodelist + "': unbalanced '['");
  return out;
}

DistributedEnv parse_distributed_env(const EnvLookup& env, const RendezvousDefaults& defaults) {
  DistributedEnv d;
  std::optional<std::string> addr = env("MASTER_ADDR");
  if (!addr) addr = defaults.master_addr;
  std::optional<int> port = get_int(env, "MASTER_PORT");
  if (!port) port = defaults.port;

  if (env("RANK") || env("WORLD_SIZE")) {
    d.launcher = "torchrun";
    d.rank = require_int(env, "RANK", "torchrun");
    d.world_size = require_int(env, "WORLD_SIZE", "torchrun");
    d.local_rank = get_int(env, "LOCAL_RANK").value_or(0);
    d.local_world_size = get_int(env, "LOCAL_WORLD_SIZE").value_or(0);
    d.use_agent_store = env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    d.restart_count = get_int(env, "TORCHELASTIC_RESTART_COUNT").value_or(0);
    if (d.world_size > 1 && (!env("MASTER_ADDR") || !env("MASTER_PORT")))
      throw Error("RANK/WORLD_SIZE are set but MASTER_ADDR and MASTER_PORT are not: set both (torchrun does)");
  } else if (env("OMPI_COMM_WORLD_RANK")) {
    d.launcher = "openmpi";
    d.rank = require_int(env, "OMPI_COMM_WORLD_RANK", "Open MPI");
    d.world_size = require_int(env, "OMPI_COMM_WORLD_SIZE", "Open MPI");
    d.local_rank = get_int(env, "OMPI_COMM_WORLD_LOCAL_RANK").value_or(0);
    d.local_world_size = get_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE").value_or(0);
    if (d.world_size > 1 && !addr)
      throw Error("Open MPI job of " + std::to_string(d.world_size) +
                  " processes: set MASTER_ADDR (e.g. `mpirun -x MASTER_ADDR=<first host>`) or "
                  "config key 'distributed.master_addr' to the host of rank 0");
  } else if (env("SLURM_PROCID")) {
    d.launcher = "slurm";
    d.rank = require_int(env, "SLURM_PROCID", "Slurm");
    auto ntasks = get_int(env, "SLURM_NTASKS");
    if (!ntasks) ntasks = get_int(env, "SLURM_NPROCS");
    if (!ntasks) throw Error("environment variable SLURM_NTASKS is not set (the Slurm variables are incomplete)");
    d.world_size = *ntasks;
    d.local_rank = get_int(env, "SLURM_LOCALID").value_or(0);
    if (auto per_node = env("SLURM_NTASKS_PER_NODE")) d.local_world_size = parse_tasks_per_node(*per_node);
    if (d.world_size > 1 && !addr) {
      std::optional<std::string> list = env("SLURM_NODELIST");
      std::string var = "SLURM_NODELIST";
      if (!list) list = env("SLURM_JOB_NODELIST"), var = "SLURM_JOB_NODELIST";
      if (!list)
        throw Error("Slurm job of " + std::to_string(d.world_size) +
                    " tasks: neither SLURM_NODELIST nor SLURM_JOB_NODELIST nor MASTER_ADDR is set");
      const auto hosts = expand_slurm_nodelist(*list);
      if (hosts.empty()) throw Error("environment variable " + var + " is empty");
      addr = hosts.front();
    }
  } else {
    return d;  // one process, no launcher
  }

  if (d.world_size < 1) throw Error("world size " + std::to_string(d.world_size) + " (from " + d.launcher + ") is < 1");
  if (d.rank < 0 || d.rank >= d.world_size)
    throw Error("rank " + std::to_string(d.rank) + " (from " + d.launcher + ") is not in [0, " +
                std::to_string(d.world_size) + ")");
  if (d.local_rank < 0) throw Error("local rank " + std::to_string(d.local_rank) + " (from " + d.launcher + ") is < 0");
  if (d.world_size > 1) {
    d.master_addr = *addr;
    d.master_port = port.value_or(kDefaultPort);
    if (d.master_port <= 0 || d.master_port > 65535)
      throw Error("master port " + std::to_string(d.master_port) + " is not in [1, 65535]");
  }
  return d;
}

}  // namespace scenic::train
