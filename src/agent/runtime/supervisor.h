#pragma once

// ContainerSupervisor: the agent's side of a container's life. It writes the bundle, starts a
// detached skiff-monitor per container (which runs the OCI runtime, copies the output to rotated
// files and records the exit), stops containers (SIGTERM, then SIGKILL after the grace period),
// enforces runtime limits, and after an agent restart re-adopts every container from its
// directory, so no exit status is lost.
//
// State lives only on disk, one directory per container under `stateDir`:
//   config.json (the bundle), checkpoint.json (what the supervisor decided: limits, stop
//   reason), and the monitor's files (monitor_protocol.h). A supervisor object holds no state
//   that a new one could not rebuild with `adopt()`.
//
// All calls block (polling the monitor's files); the agent runs them off its event loop. One
// supervisor per state directory; calls for different containers may run on different threads,
// calls for one container must not overlap.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/runtime/bundle.h"
#include "agent/runtime/cgroup.h"
#include "agent/runtime/container_runtime.h"
#include "agent/runtime/oci_runtime.h"
#include "agent/runtime/process_runner.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::runtime {

struct SupervisorOptions {
  std::string stateDir;                           // Created if missing.
  std::string monitorPath;                        // The skiff-monitor binary.
  std::string initPath = "/usr/bin/tini-static";  // Empty: no init (not recommended).
  std::string cgroupParent = "/skiff";            // Containers get cgroupParent/ID.
  uint64_t logMaxBytes = 10 << 20;                // Per log file before rotation.
  int logKeep = 3;                                // Rotated files kept per stream.
  std::chrono::milliseconds startTimeout{30'000};
  std::chrono::milliseconds killTimeout{10'000};  // After SIGKILL, how long to wait for the exit.
  // Compile the default seccomp profile once and hand it to the runtime precompiled (crun's
  // run.oci.seccomp_bpf_data annotation); only for runtimes that honour it.
  bool precompileSeccomp = false;
};

class ContainerSupervisor final : public ContainerRuntime {
 public:
  ContainerSupervisor(SupervisorOptions options, OciRuntime& runtime, ProcessRunner& runner,
                      CgroupLayout layout, const Clock& clock = SystemClock::instance());

  // Creates and starts the container; returns once it runs (kAlreadyExists if the id is taken).
  // On failure nothing is left behind and the runtime's message is in the error.
  Status start(const ContainerConfig& config) override;

  // SIGTERM to the init (tini forwards it), then SIGKILL to everything after `grace` (the
  // container's stopGrace when nullopt). Returns once the exit is recorded.
  Status stop(const std::string& id,
              std::optional<std::chrono::milliseconds> grace = std::nullopt) override;

  // The exit status if the container has exited; nullopt while it runs. Enforces the runtime
  // limit: a container past it is stopped (blocking for its grace) and reported as such.
  Result<std::optional<ExitStatus>> poll(const std::string& id) override;

  // Waits up to `timeout` for the exit (enforcing the runtime limit meanwhile); kUnavailable
  // when it is still running at the end.
  Result<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout) override;

  // Rebuilds the supervisor's view from stateDir after a restart: every container directory is
  // adopted, running or exited. Returns the adopted ids.
  Result<std::vector<std::string>> adopt() override;

  // Forgets an exited container and deletes its directory (logs included).
  // kFailedPrecondition while it runs.
  Status remove(const std::string& id) override;

  std::vector<std::string> containerIds() const;
  std::string containerDir(const std::string& id) const;
  std::string stdoutPath(const std::string& id) const;
  std::string stderrPath(const std::string& id) const;
  // The monitor's pid, 0 when unknown.
  int monitorPid(const std::string& id) const;
  // The CPU time the container's cgroup has used so far (kNotFound once the cgroup is gone).
  Result<uint64_t> cpuUsageNs(const std::string& id) const override;

  // `RUNTIME exec ID COMMAND...` through the OCI runtime (PATH=/usr/sbin:/usr/bin:/sbin:/bin).
  Result<ProcessResult> exec(const std::string& id, const std::vector<std::string>& command,
                             std::chrono::milliseconds timeout) override;

 private:
  struct Entry {
    int64_t startedAtMs = 0;
    int64_t runtimeLimitMs = 0;
    int64_t stopGraceMs = 0;
    std::string stopReason;  // "", "stopped" or "runtimeLimit".
  };

  Result<Entry> entry(const std::string& id) const;
  Status saveCheckpoint(const std::string& id, const Entry& entry);
  Result<Entry> loadCheckpoint(const std::string& id) const;
  // Reads the exit file; nullopt when it is not there yet. Detects a dead monitor (kLost).
  Result<std::optional<ExitStatus>> readExit(const std::string& id, const Entry& entry) const;
  Result<std::optional<ExitStatus>> waitExit(const std::string& id, const Entry& entry,
                                             std::chrono::milliseconds timeout) const;
  Status stopWithReason(const std::string& id, std::chrono::milliseconds grace,
                        std::string_view reason);

  SupervisorOptions options_;
  OciRuntime& runtime_;
  ProcessRunner& runner_;
  CgroupLayout layout_;
  const Clock& clock_;
  mutable std::mutex mutex_;  // Guards entries_.
  std::map<std::string, Entry> entries_;
};

}  // namespace skiff::agent::runtime
