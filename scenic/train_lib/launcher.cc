#include "scenic/train_lib/launcher.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "scenic/common_lib/errors.h"
#include "scenic/common_lib/logging.h"

extern char** environ;

namespace scenic::train {
namespace {

// The last SIGINT/SIGTERM received while launch() runs (0: none pending).
volatile sig_atomic_t g_pending_signal = 0;
void on_signal(int sig) { g_pending_signal = sig; }

// Installs the forwarding handlers and restores the previous ones on scope exit.
class SignalForwarding {
 public:
  SignalForwarding() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_pending_signal = 0;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalForwarding() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string p = path;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    const std::string dir = end > start ? p.substr(start, end - start) : ".";
    if (::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

struct Child {
  pid_t pid = -1;
  int rank = 0;
  bool running = false;
  int status = 0;
};

// Signals a child's whole process group (its own `sh -c` wrappers and their children).
void signal_child(const Child& c, int sig) {
  if (c.running) ::kill(-c.pid, sig);
}

}  // namespace

int launch(const LaunchOptions& o, const std::vector<std::string>& argv) {
  if (argv.empty()) throw Error("scenic launch: no command given (usage: scenic launch --nproc_per_node N -- CMD ...)");
  if (o.nproc_per_node < 1) throw Error("scenic launch: --nproc_per_node must be >= 1, got " + std::to_string(o.nproc_per_node));
  if (o.nnodes < 1) throw Error("scenic launch: --nnodes must be >= 1, got " + std::to_string(o.nnodes));
  if (o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw Error("scenic launch: --node_rank " + std::to_string(o.node_rank) + " is not in [0, " + std::to_string(o.nnodes) + ")");
  if (o.master_port < 1 || o.master_port > 65535)
    throw Error("scenic launch: --master_port " + std::to_string(o.master_port) + " is not in [1, 65535]");

  std::string program = argv[0];
  if (program == "scenic" && !on_path(program)) program = self_executable();

  // The environment every child shares; per-child values are appended below.
  const std::map<std::string, std::string> shared = {
      {"WORLD_SIZE", std::to_string(o.nnodes * o.nproc_per_node)},
      {"LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node)},
      {"GROUP_RANK", std::to_string(o.node_rank)},
      {"MASTER_ADDR", o.master_addr},
      {"MASTER_PORT", std::to_string(o.master_port)},
  };
  std::vector<std::string> base;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (shared.count(key) || key == "RANK" || key == "LOCAL_RANK") continue;
    base.push_back(kv);
  }
  for (const auto& [k, v] : shared) base.push_back(k + "=" + v);
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    base.push_back("OMP_NUM_THREADS=" + std::to_string(std::max(1, hw / o.nproc_per_node)));
  }

  SignalForwarding forwarding;
  std::vector<Child> children(static_cast<size_t>(o.nproc_per_node));
  auto stop_all = [&](int sig) {
    for (const auto& c : children) signal_child(c, sig);
  };

  for (int local = 0; local < o.nproc_per_node; ++local) {
    std::vector<std::string> env = base;
    env.push_back("RANK=" + std::to_string(o.node_rank * o.nproc_per_node + local));
    env.push_back("LOCAL_RANK=" + std::to_string(local));
    std::vector<char*> envp, args;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argv_copy = argv;
    argv_copy[0] = program;
    for (auto& s : argv_copy) args.push_back(s.data());
    args.push_back(nullptr);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Own process group: signals reach a child once (from us), never twice.
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, program.c_str(), nullptr, &attr, args.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      stop_all(SIGKILL);
      for (auto& c : children)
        if (c.running) ::waitpid(c.pid, nullptr, 0);
      throw Error("scenic launch: cannot start '" + program + "': " + std::strerror(rc));
    }
    children[static_cast<size_t>(local)] = Child{pid, o.node_rank * o.nproc_per_node + local, true, 0};
  }

  int failure = 0;  // first non-zero exit status
  std::chrono::steady_clock::time_point fail_time;
  bool killed = false;
  bool forwarded = false;  // after a forwarded signal, non-zero exits are expected
  size_t running = children.size();
  while (running > 0) {
    if (const int sig = g_pending_signal) {
      g_pending_signal = 0;
      SCENIC_LOG_WARNING << "scenic launch: forwarding signal " << sig << " to " << running << " process(es)";
      stop_all(sig);
      forwarded = true;
    }
    for (auto& c : children) {
      if (!c.running) continue;
      int status = 0;
      const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      c.running = false;
      --running;
      c.status = r < 0 ? 1 : exit_status(status);
      if (c.status != 0 && failure == 0) {
        failure = c.status;
        fail_time = std::chrono::steady_clock::now();
        if (running > 0 && !forwarded) {
          SCENIC_LOG_ERROR << "scenic launch: rank " << c.rank << " exited with status " << c.status
                           << "; stopping the other " << running << " process(es)";
          stop_all(SIGTERM);
        }
      }
    }
    if (failure != 0 && !forwarded && !killed && running > 0 &&
        std::chrono::steady_clock::now() - fail_time > std::chrono::duration<double>(o.grace_s)) {
      SCENIC_LOG_ERROR << "scenic launch: " << running << " process(es) still running " << o.grace_s
                       << " s after SIGTERM; sending SIGKILL";
      stop_all(SIGKILL);
      killed = true;
    }
    if (running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return failure;
}

}  // namespace scenic::train
