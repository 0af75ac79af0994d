// Test helpers shared by every test binary (header-only; include from *_test.cc only).
#pragma once

// Uses POSIX calls, not std::filesystem: the torch wheel's libtorch exports its own
// incompatible std::filesystem (pytorch/pytorch#133437); e.g. remove_all crashes.
#include <ATen/Parallel.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::testing {

// A fresh directory under gtest's temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string base = ::testing::TempDir();
    if (base.empty() || base.back() != '/') base += '/';
    std::string tmpl = base + "scenic_test_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    ::nftw(
        path_.c_str(),
        [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
        FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The message of the scenic::Error that `f` throws ("" and a test failure if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const scenic::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a scenic::Error";
  return "";
}

// LibTorch's intra-op thread count set to `n` for a scope (the test binaries run with
// OMP_NUM_THREADS=1; tests of multi-threaded paths need a team of several).
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int n) : old_(at::get_num_threads()) { at::set_num_threads(n); }
  ~IntraOpThreads() { at::set_num_threads(old_); }
  IntraOpThreads(const IntraOpThreads&) = delete;
  IntraOpThreads& operator=(const IntraOpThreads&) = delete;

 private:
  int old_;
};

}  // namespace scenic::testing

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)
