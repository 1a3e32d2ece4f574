#pragma once

// Liveness and readiness checks of a task's container (job-file.md, "Health checks").
//
// `CheckState` is the pure part: it turns the outcomes of single attempts into a verdict with the
// check's thresholds and start period, and says when the verdict changes and when the next attempt
// is due. `Checker` runs one attempt (I/O): `NetworkChecker` does tcp and http against the task's
// address; exec checks go through an `ExecRunner` (the OCI runtime's `exec`). `Prober` ties one
// check of one task together for the agent's loop, which reports each transition to skiffd
// (`ready` in taskStatus for readiness; a liveness failure ends the task with reason failed and the
// check's output in its message).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/job.h"

namespace skiff::agent::health {

// The outcome of one attempt. `output` is what a person needs to see why it failed (the command's
// output, "HTTP 503", "connection refused"), cut to at most 1024 bytes.
struct Attempt {
  bool passed = false;
  std::string output;
};

// Where a check runs: the task's address (tcp, http) and container (exec).
struct Target {
  std::string ip;
  std::string containerId;
};

class Checker {
 public:
  virtual ~Checker() = default;
  // Runs one attempt, giving up after `check.timeoutMs`. Never throws.
  virtual Attempt run(const api::HealthCheck& check, const Target& target) = 0;
};

// Runs `command` inside `containerId` with a timeout; exit status 0 passes.
using ExecRunner = std::function<Attempt(
    const std::string& containerId, const std::vector<std::string>& command, int64_t timeoutMs)>;

// tcp: a connection to ip:port opens within the timeout. http: `GET path` on ip:port answers with
// `expectedStatus` within the timeout. exec: through `exec` (fails when none was given).
class NetworkChecker final : public Checker {
 public:
  explicit NetworkChecker(ExecRunner exec = nullptr) : exec_(std::move(exec)) {}
  Attempt run(const api::HealthCheck& check, const Target& target) override;

 private:
  ExecRunner exec_;
};

// The verdict of one check from its attempts.
class CheckState {
 public:
  // `passingAtStart`: liveness starts passing (alive until proven otherwise), readiness failing.
  CheckState(api::HealthCheck check, int64_t startedAtMs, bool passingAtStart);

  // Records the attempt made at `nowMs`. Returns the new verdict when it changed: passing after
  // `successThreshold` passes in a row, failing after `failureThreshold` failures in a row;
  // failures before `startedAtMs + startPeriodMs` do not count.
  std::optional<bool> record(const Attempt& attempt, int64_t nowMs);

  bool passing() const { return passing_; }
  // When the next attempt is due: the first right away, then every `intervalMs`.
  int64_t nextAttemptMs() const { return nextAttemptMs_; }
  // The output of the last failed attempt (kept for the task's message).
  const std::string& lastFailure() const { return lastFailure_; }

 private:
  api::HealthCheck check_;
  int64_t startedAtMs_;
  bool passing_;
  int64_t successes_ = 0;
  int64_t failures_ = 0;
  int64_t nextAttemptMs_;
  std::string lastFailure_;
};

// One check of one task: attempts when due and reports verdict changes.
class Prober {
 public:
  Prober(api::HealthCheck check, Target target, std::shared_ptr<Checker> checker,
         int64_t startedAtMs, bool passingAtStart);

  // Runs an attempt when one is due at `nowMs`; returns the new verdict when it changed.
  std::optional<bool> tick(int64_t nowMs);
  const CheckState& state() const { return state_; }

 private:
  api::HealthCheck check_;
  Target target_;
  std::shared_ptr<Checker> checker_;
  CheckState state_;
};

}  // namespace skiff::agent::health
