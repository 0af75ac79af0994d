#include "scenic/common_lib/logging.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>

namespace scenic::common {
namespace {
std::mutex g_mutex;
std::ofstream g_file;
int g_rank = 0;
const std::chrono::steady_clock::time_point g_start = std::chrono::steady_clock::now();

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}
}  // namespace

void set_log_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_file.is_open()) g_file.close();
  if (!path.empty()) g_file.open(path, std::ios::app);
}

double seconds_since_start() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
}

void set_log_rank(int rank) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_rank = rank;
}

void log_line(const std::string& level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_rank != 0 && level == "I") return;
  const std::string rank = g_rank != 0 ? "[rank " + std::to_string(g_rank) + "] " : "";
  const std::string line = level + " " + timestamp() + " " + rank + message + "\n";
  std::cerr << line << std::flush;
  if (g_file.is_open()) g_file << line << std::flush;
}

}  // namespace scenic::common
