#pragma once

// The process seam: every external binary the runtime library starts (runc, crun, skiff-monitor)
// goes through a `ProcessRunner`, so tests can substitute a fake and production code has exactly
// one place that forks.
//
// Contract of every implementation: the child gets only fds 0, 1 and 2 (no descriptor of the
// caller leaks into it), an environment exactly equal to `env`, and stdin from /dev/null.

#include <chrono>
#include <string>
#include <vector>

#include "common/error.h"

namespace skiff::agent::runtime {

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is an absolute path; no PATH search.
  std::vector<std::string> env;   // "KEY=VALUE" entries; empty means an empty environment.
  // When true, stdout and stderr are collected (each truncated at 1 MiB); otherwise both go to
  // /dev/null. A child that daemonizes must be run with captureOutput=false, or its descendants
  // keep the pipe open.
  bool captureOutput = true;
  // The child is killed with SIGKILL after this long; zero means no limit.
  std::chrono::milliseconds timeout{0};
};

struct ProcessResult {
  int exitCode = -1;  // Exit status when the child exited, -1 otherwise.
  int signal = 0;     // The terminating signal when the child was killed by one, else 0.
  bool timedOut = false;
  std::string out;
  std::string err;

  bool ok() const { return exitCode == 0; }
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Runs the process to completion. Fails only when it cannot be started; a non-zero exit is a
  // successful result.
  virtual Result<ProcessResult> run(const ProcessSpec& spec) = 0;
};

// posix_spawn (vfork-style, no page-table copy) that closes every descriptor from 3 up in the
// child, so even descriptors opened without O_CLOEXEC by other threads of the agent cannot leak.
class PosixProcessRunner final : public ProcessRunner {
 public:
  Result<ProcessResult> run(const ProcessSpec& spec) override;
};

}  // namespace skiff::agent::runtime
