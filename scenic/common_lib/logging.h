// Logging: timestamped lines to stderr and, once a workdir is known, to `<workdir>/log.txt`.
// Scenic logs through absl.logging; this is the same idea without the dependency.
// With several processes only rank 0 logs everything; the others (set_log_rank(r)) print
// warnings and errors alone, to stderr, prefixed "[rank r]".
#pragma once

#include <sstream>
#include <string>

namespace scenic::common {

void set_log_file(const std::string& path);  // appends; "" closes
void set_log_rank(int rank);
void log_line(const std::string& level, const std::string& message);
// Seconds since this program's static initialization (about its start).
double seconds_since_start();

// LOG_INFO << "step " << step; — one line, flushed at the end of the statement.
class LogStream {
 public:
  explicit LogStream(const char* level) : level_(level) {}
  ~LogStream() { log_line(level_, ss_.str()); }
  template <typename T>
  LogStream& operator<<(const T& v) {
    ss_ << v;
    return *this;
  }

 private:
  const char* level_;
  std::ostringstream ss_;
};

}  // namespace scenic::common

#define SCENIC_LOG_INFO ::scenic::common::LogStream("I")
#define SCENIC_LOG_WARNING ::scenic::common::LogStream("W")
#define SCENIC_LOG_ERROR ::scenic::common::LogStream("E")
