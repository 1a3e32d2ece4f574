#pragma once

// The container runtime as the node agent sees it: start a container from its config, wait for
// its exit or stop it, run a command inside it, and find every container again after a restart.
// `ContainerSupervisor` (supervisor.h) is the implementation, over an OCI runtime and one
// skiff-monitor per container; tests substitute a fake (tests/testing/fake_runtime.h).
//
// Calls block; calls for different containers may run on different threads, calls for one
// container must not overlap.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/runtime/bundle.h"
#include "agent/runtime/process_runner.h"
#include "common/error.h"

namespace skiff::agent::runtime {

struct ContainerConfig {
  std::string id;  // isValidContainerId.
  // cgroupsPath, initPath and swapAccounting are filled in by the runtime.
  BundleSpec bundle;
  std::chrono::milliseconds stopGrace{10'000};
  std::chrono::milliseconds runtimeLimit{0};  // Zero: none.
};

enum class ExitReason {
  kExited,                // The process exited on its own (any exit code).
  kOOMKilled,             // The memory cgroup's oom_kill counter is non-zero.
  kStopped,               // Stopped through stop().
  kRuntimeLimitExceeded,  // Stopped because it ran past its runtime limit.
  kStartFailed,           // The runtime could not create or start it.
  kLost,                  // The monitor died before recording an exit; the status is unknown.
};

std::string_view exitReasonName(ExitReason reason);

struct ExitStatus {
  int exitCode = -1;  // The init's exit code; 128+signal when killed by a signal; -1 unknown.
  int signal = 0;     // The signal that killed the init, if any.
  ExitReason reason = ExitReason::kExited;
  uint64_t oomKillCount = 0;
  int64_t finishedAtMs = 0;
};

class ContainerRuntime {
 public:
  virtual ~ContainerRuntime() = default;

  // Creates and starts the container; returns once it runs (kAlreadyExists if the id is taken).
  // On failure nothing is left behind and the runtime's message is in the error; kInvalidArgument
  // means the config cannot run (the job's fault, not the node's).
  virtual Status start(const ContainerConfig& config) = 0;

  // Stops the container: SIGTERM, then SIGKILL after `grace` (the container's stopGrace when
  // nullopt). Returns once the exit is recorded.
  virtual Status stop(const std::string& id,
                      std::optional<std::chrono::milliseconds> grace = std::nullopt) = 0;

  // The exit status if the container has exited; nullopt while it runs. A container past its
  // runtime limit is stopped and reported as such.
  virtual Result<std::optional<ExitStatus>> poll(const std::string& id) = 0;

  // Waits up to `timeout` for the exit; kUnavailable when it is still running at the end. Any
  // other error means the container cannot be followed any more.
  virtual Result<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) = 0;

  // Finds every container a previous instance left, running or exited, and returns their ids.
  virtual Result<std::vector<std::string>> adopt() = 0;

  // Forgets an exited container and deletes what it kept (logs included).
  // kFailedPrecondition while it runs.
  virtual Status remove(const std::string& id) = 0;

  // The CPU time the container has used so far (kNotFound once it is gone).
  virtual Result<uint64_t> cpuUsageNs(const std::string& id) const = 0;

  // Runs `command` inside the running container with a minimal PATH and waits up to `timeout`.
  // Fails only when the command cannot be started; a non-zero exit is a result.
  virtual Result<ProcessResult> exec(const std::string& id, const std::vector<std::string>& command,
                                     std::chrono::milliseconds timeout) = 0;
};

}  // namespace skiff::agent::runtime
