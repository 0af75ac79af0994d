// Helpers for the end-to-end tests that drive the real `scenic` binary.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

extern char** environ;

namespace scenic::e2e {

struct RunResult {
  int status;          // exit status, or -1 when killed by a signal
  std::string output;  // stdout + stderr
};

// Runs a shell command line: its exit status and stdout (append "2>&1" for stderr too).
inline RunResult run_command(const std::string& cmd) {
  RunResult r{-1, ""};
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf;
  while (fgets(buf.data(), buf.size(), pipe) != nullptr) r.output += buf.data();
  const int rc = ::pclose(pipe);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return r;
}

inline RunResult run_scenic(const std::string& args) {
  return run_command(std::string(SCENIC_BINARY) + " " + args + " 2>&1");
}

// Starts `scenic <args>` in the background (output to `log_path`); returns its pid.
// `env` ("NAME=value") is added to this process's environment and overrides it.
inline pid_t spawn_scenic(const std::vector<std::string>& args, const std::string& log_path,
                          const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv_s{SCENIC_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s(env);  // first: getenv returns the first match
  for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) ADD_FAILURE() << "posix_spawn failed for " << argv[0];
  return pid;
}

inline std::vector<nlohmann::json> read_metrics(const std::string& workdir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(workdir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

inline std::vector<nlohmann::json> lines_of(const std::vector<nlohmann::json>& all, const std::string& split) {
  std::vector<nlohmann::json> out;
  for (const auto& j : all)
    if (j["split"] == split) out.push_back(j);
  return out;
}

}  // namespace scenic::e2e
