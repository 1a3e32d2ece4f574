#pragma once

// A ProcessRunner that starts nothing: it records each command line and answers with `next`.
// For single-threaded tests of code that drives binaries (the OCI runtime's command lines).

#include <string>
#include <vector>

#include "agent/runtime/process_runner.h"

namespace skiff::testing {

class FakeProcessRunner final : public agent::runtime::ProcessRunner {
 public:
  Result<agent::runtime::ProcessResult> run(const agent::runtime::ProcessSpec& spec) override {
    calls.push_back(spec.argv);
    return next;
  }

  std::vector<std::vector<std::string>> calls;  // argv of every run, in order.
  agent::runtime::ProcessResult next{.exitCode = 0};
};

}  // namespace skiff::testing
