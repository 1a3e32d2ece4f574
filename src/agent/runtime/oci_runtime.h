#pragma once

// The OCI runtime back end: the lifecycle verbs of the OCI runtime spec ("create", "start",
// "state", "kill", "delete") on a bundle directory. `RuncCompatibleRuntime` drives any binary with
// runc's command line (runc, crun) through a `ProcessRunner`.

#include <chrono>
#include <string>
#include <vector>

#include "agent/runtime/cgroup.h"
#include "agent/runtime/process_runner.h"
#include "common/error.h"

namespace skiff::agent::runtime {

struct ContainerState {
  std::string id;
  std::string status;  // "creating", "created", "running", "paused" or "stopped".
  int pid = 0;         // The container init's host pid; 0 when stopped.
  std::string bundle;
};

struct CreateOptions {
  std::string pidFile;  // Where the runtime writes the init's host pid; empty for none.
};

class OciRuntime {
 public:
  virtual ~OciRuntime() = default;
  // Creates the container from `bundleDir` (holding config.json). The runtime's own stdio is
  // the caller's; with a detached non-terminal container the init inherits them.
  virtual Status create(const std::string& id, const std::string& bundleDir,
                        const CreateOptions& options) = 0;
  virtual Status start(const std::string& id) = 0;
  // kNotFound when the runtime does not know the container.
  virtual Result<ContainerState> state(const std::string& id) = 0;
  // Sends `signal` to the init (or to every process of the container when `all`).
  virtual Status kill(const std::string& id, int signal, bool all = false) = 0;
  // Deletes the container; `force` kills it first if it still runs. Deleting an unknown
  // container succeeds (delete is idempotent).
  virtual Status remove(const std::string& id, bool force) = 0;

  // The binary and the global arguments ("--root DIR") a monitor process needs to run the same
  // verbs itself.
  virtual std::vector<std::string> commandPrefix() const = 0;
};

struct RuncOptions {
  std::string binary = "/usr/sbin/runc";  // Or /usr/bin/crun.
  std::string root;                       // --root: the runtime's state dir; empty: its default.
  std::string logFile;                    // --log: where the runtime logs; empty: none.
  std::chrono::milliseconds timeout{30'000};  // Per invocation.
};

class RuncCompatibleRuntime final : public OciRuntime {
 public:
  RuncCompatibleRuntime(RuncOptions options, ProcessRunner& runner);

  Status create(const std::string& id, const std::string& bundleDir,
                const CreateOptions& options) override;
  Status start(const std::string& id) override;
  Result<ContainerState> state(const std::string& id) override;
  Status kill(const std::string& id, int signal, bool all) override;
  Status remove(const std::string& id, bool force) override;
  std::vector<std::string> commandPrefix() const override;

  const RuncOptions& options() const { return options_; }

 private:
  Result<ProcessResult> invoke(std::vector<std::string> args);

  RuncOptions options_;
  ProcessRunner& runner_;
};

struct RuntimeChoice {
  std::string binary;
  std::string note;  // Why the preferred runtime was not taken; empty when it was.
};

// crun is the default; runc is used when asked for, when crun is not installed, or when the
// cgroup layout rules crun out (a hybrid host without a v1 hugetlb hierarchy, where crun fails
// with "cgroups in hybrid mode not supported" and runc works). Fails when neither is usable.
Result<RuntimeChoice> chooseRuntime(bool preferCrun, const CgroupLayout& layout,
                                    const std::string& crunPath = "/usr/bin/crun",
                                    const std::string& runcPath = "/usr/sbin/runc");

// Container ids are passed on command lines and used as directory names: 1-64 characters of
// [A-Za-z0-9_.-], not starting with '.' or '-'.
bool isValidContainerId(std::string_view id);

}  // namespace skiff::agent::runtime
