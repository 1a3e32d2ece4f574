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
//   SKIFF_REQUIRE_NOTHING_MISSING(missingProgram("iperf3"));  // "iperf3 is not installed"
//
// Each expands to GTEST_SKIP, so it returns from the enclosing test, SetUp or void function. The
// reasons come from missing.h (test support without gtest uses it too).

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "testing/missing.h"

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
