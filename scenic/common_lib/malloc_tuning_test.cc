#include "scenic/common_lib/malloc_tuning.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace scenic::common {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

#if defined(__GLIBC__)  // the project builds on Debian (glibc); elsewhere there is nothing to tune
// The variables tune_malloc_for_tensors defers to, cleared for the test and put back after.
class MallocEnv {
 public:
  MallocEnv() {
    for (const char* v : kVars) {
      const char* s = std::getenv(v);
      saved_.emplace_back(v, s ? std::optional<std::string>(s) : std::nullopt);
      ::unsetenv(v);
    }
  }
  ~MallocEnv() {
    for (const auto& [v, s] : saved_) s ? ::setenv(v, s->c_str(), 1) : ::unsetenv(v);
  }
  static constexpr const char* kVars[] = {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"};

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST(MallocTuning, LeavesMallocAloneWhenTheEnvironmentTunesIt) {
  MallocEnv env;
  for (const char* v : MallocEnv::kVars) {
    ::setenv(v, "1", 1);
    EXPECT_FALSE(tune_malloc_for_tensors()) << v;
    ::unsetenv(v);
  }
}

// A 20 MiB block allocated, written and freed 10 times. With glibc's defaults the first
// two rounds are fresh mmaps (the dynamic threshold rises only after the first free), so
// ~2 x 5,120 page faults (measured 10,242 in a C program); tuned, the block stays in the
// heap and its pages are faulted in once (5,122).
TEST(MallocTuning, FreedBlocksAreReusedNotRefaulted) {
  MallocEnv env;
#if defined(__SANITIZE_ADDRESS__)
  // scripts/sanitize.sh: AddressSanitizer's malloc replaces glibc's, mallopt does not
  // reach it, and the function says so (malloc_tuning.h); there are no faults to count.
  EXPECT_FALSE(tune_malloc_for_tensors());
  return;
#endif
  ASSERT_TRUE(tune_malloc_for_tensors());
  constexpr size_t kBytes = 20u << 20;
  constexpr long kPages = static_cast<long>(kBytes / 4096);
  const long before = minor_faults();
  for (int i = 0; i < 10; ++i) {
    auto* p = static_cast<char*>(std::malloc(kBytes));
    ASSERT_NE(p, nullptr);
    std::memset(p, i + 1, kBytes);
    asm volatile("" : : "r"(p) : "memory");  // the writes must happen: no eliding the block
    std::free(p);
  }
  const long faults = minor_faults() - before;
  EXPECT_GE(faults, kPages / 2) << "the block was never touched: the test measures nothing";
  EXPECT_LT(faults, kPages * 3 / 2) << "10 rounds of " << kPages << " pages each faulted " << faults << " times";
}
#endif

}  // namespace
}  // namespace scenic::common
