#pragma once

// How tests that need a privilege, a kernel feature or a host tool skip: through these, with a
// message that says what is missing, so a skipped test always tells why.
//
// Only what the host lacks is a reason to skip. A fixture the test builds itself (a registry, a
// test image, a container) that fails is a failure: use ASSERT/FAIL for it, never these.
//
//   SKIFF_REQUIRE_ROOT("network namespaces");        // "needs root (network namespaces)"
//   SKIFF_REQUIRE(layout, "no cgroup2 mount");        // any condition and what is missing
//   SKIFF_REQUIRE_NOTHING_MISSING(missingReason());   // a reason string, empty when all is there
//
// Each expands to GTEST_SKIP, so it returns from the enclosing test, SetUp or void function.

#include <unistd.h>

#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

namespace skiff::testing {

// Empty when the process runs as root; otherwise "needs root (WHY)".
inline std::string missingRoot(const std::string& why) {
  return ::geteuid() == 0 ? "" : "needs root (" + why + ")";
}

// Empty when `path` is executable; otherwise "PATH is not installed".
inline std::string missingExecutable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0 ? "" : path + " is not installed";
}

// The first non-empty reason; empty when every one is.
inline std::string firstMissing(std::initializer_list<std::string> reasons) {
  for (const std::string& reason : reasons) {
    if (!reason.empty()) return reason;
  }
  return "";
}

}  // namespace skiff::testing

#define SKIFF_REQUIRE(condition, missing) \
  switch (0)                              \
  case 0:                                 \
  default:                                \
    if (condition)                        \
      ;                                   \
    else                                  \
      GTEST_SKIP() << missing

#define SKIFF_REQUIRE_ROOT(why) SKIFF_REQUIRE(::geteuid() == 0, "needs root (" why ")")

#define SKIFF_REQUIRE_NOTHING_MISSING(reason)                                  \
  do {                                                                         \
    const std::string skiff_missing_reason_ = (reason);                        \
    if (!skiff_missing_reason_.empty()) GTEST_SKIP() << skiff_missing_reason_; \
  } while (false)
