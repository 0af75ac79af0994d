// Test helpers shared by every test binary (header-only; include from *_test.cc only).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "scenic/common_lib/errors.h"

namespace scenic::testing {

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

}  // namespace scenic::testing

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)
