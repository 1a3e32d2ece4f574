#pragma once

// A container runtime without containers, for the agent's logic tests (no root, no runc): a
// started container "runs" until the test makes it exit or the agent stops it, and it survives
// the agent that started it, so a new agent given the same fake re-adopts it.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/runtime/container_runtime.h"

namespace skiff::testing {

class FakeRuntime final : public agent::runtime::ContainerRuntime {
 public:
  using ContainerConfig = agent::runtime::ContainerConfig;
  using ExitStatus = agent::runtime::ExitStatus;
  using ExitReason = agent::runtime::ExitReason;
  using ProcessResult = agent::runtime::ProcessResult;
  // Answers an exec in container `id`.
  using ExecHandler =
      std::function<ProcessResult(const std::string& id, const std::vector<std::string>& command)>;

  // ---- What the test controls ----

  // Starts fail with `error` from now on (nullopt: they succeed again).
  void failStarts(std::optional<Error> error);
  // Who answers exec calls; without one every command exits 0 with no output.
  void onExec(ExecHandler handler);
  // Makes the running container `id` exit. False when it is not running.
  bool exit(const std::string& id, int exitCode, ExitReason reason = ExitReason::kExited);

  // ---- What the test observes ----

  // Waits up to `timeout` until container `id` was started; its config, or nullopt.
  std::optional<ContainerConfig> waitStarted(const std::string& id,
                                             std::chrono::milliseconds timeout) const;
  bool running(const std::string& id) const;
  // Ever started, running or not (removed ones included).
  int startCount() const;
  int stopCount(const std::string& id) const;
  int execCount(const std::string& id) const;

  // ---- agent::runtime::ContainerRuntime ----

  Status start(const ContainerConfig& config) override;
  Status stop(const std::string& id,
              std::optional<std::chrono::milliseconds> grace = std::nullopt) override;
  Result<std::optional<ExitStatus>> poll(const std::string& id) override;
  Result<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) override;
  Result<std::vector<std::string>> adopt() override;
  Status remove(const std::string& id) override;
  Result<uint64_t> cpuUsageNs(const std::string& id) const override;
  Result<ProcessResult> exec(const std::string& id, const std::vector<std::string>& command,
                             std::chrono::milliseconds timeout) override;

 private:
  struct Container {
    ContainerConfig config;
    std::optional<ExitStatus> exit;
    int stops = 0;
    int execs = 0;
  };

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, Container> containers_;
  std::optional<Error> startError_;
  ExecHandler execHandler_;
  int starts_ = 0;
};

}  // namespace skiff::testing
