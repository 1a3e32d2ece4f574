#pragma once

// Test hosts in network namespaces, for multi-node tests (networking, scheduling, partitions).
//
// `NetnsCluster` creates a "fabric" namespace holding a bridge (kFabricAddress/24, where skiffd
// and a registry can listen) and N "host" namespaces, each with a veth into the bridge, its own
// address (hostAddress(i)) and a default route through the fabric. Nothing is created in the
// caller's namespace. Processes are started inside a namespace with nsenter (only the network
// namespace changes; mounts stay shared with the caller). The destructor kills every process it
// started (SIGKILL to the process group) and deletes every namespace, also when a test fails.
// The same layout is available from the shell: scripts/cluster-netns.sh.

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace skiff::testing {

class NetnsCluster {
 public:
  static constexpr const char* kFabricAddress = "10.213.0.1";

  // Why it cannot run here ("" if it can): root, `ip`, `nsenter`.
  static std::string skipReason();
  // Namespaces are named "<prefix>-fabric", "<prefix>-h0", ...; the prefix should be unique per
  // test process (e.g. include the pid).
  static Result<std::unique_ptr<NetnsCluster>> create(int hosts, const std::string& prefix);
  ~NetnsCluster();
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  int hosts() const { return hosts_; }
  // "10.213.0.<11+i>".
  static std::string hostAddress(int host);
  // /run/netns/<name> of host `host`, or of the fabric for -1.
  std::string netnsPath(int host) const;

  // Starts argv (PATH is searched) in the network namespace of `host` (-1: the fabric) in its own
  // process group, stdout and stderr to `logPath` (or /dev/null). Returns its pid.
  Result<pid_t> spawn(int host, const std::vector<std::string>& argv,
                      const std::string& logPath = "", const std::vector<std::string>& env = {});
  // The same in the namespace bound at `netnsPath` (a container's, for instance).
  Result<pid_t> spawnIn(const std::string& netnsPath, const std::vector<std::string>& argv,
                        const std::string& logPath = "", const std::vector<std::string>& env = {});
  // Stops one process started by spawn (SIGTERM, then SIGKILL after `graceMs`).
  void stop(pid_t pid, int graceMs = 3000);

 private:
  NetnsCluster(int hosts, std::string prefix) : hosts_(hosts), prefix_(std::move(prefix)) {}
  std::string name(int host) const;
  void destroy();

  int hosts_;
  std::string prefix_;
  std::vector<pid_t> children_;
};

// Runs `fn` on a thread that has joined the network namespace bound at `netnsPath` (the calling
// thread's namespace is untouched). Returns false with a message when setns fails.
bool runInNetns(const std::string& netnsPath, const std::function<void()>& fn,
                std::string* error = nullptr);

// Runs a command (PATH is searched) and returns its exit code and combined output.
struct ShellResult {
  int exitCode = -1;
  std::string output;
};
ShellResult run(const std::vector<std::string>& argv);

}  // namespace skiff::testing
