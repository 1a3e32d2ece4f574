#pragma once

// The node agent's core: turns the control plane's assignments into containers.
//
// `Agent` registers the node with skiffd (join token), heartbeats, long-polls
// `GET /v1/nodes/{id}/assignments` and runs each assigned task on its own thread:
//   StartInitiated -> pull the image -> mount its root filesystem (overlay, optionally on a
//   size-limited writable layer) -> bundle from the job descriptor -> ContainerSupervisor::start
//   -> Started -> wait for the exit (or stop it with a grace period when the desired state is
//   Killed) -> Finished with the exit code and reason -> unmount.
// Image errors are reported with the image library's message, never as the user's exit code: a
// registry's definitive answer as `imageNotFound` (404, 400: manifest or name unknown or invalid)
// or `imageDenied` (401, 403 after authentication), which skiffd does not retry; anything else as
// a system error (`transientSystemError` for I/O and availability problems, `localSystemError`
// otherwise), which it retries a bounded number of times.
//
// Status reports carry a per-task sequence number. Every report is written to the agent's state
// directory (with its seq) before it is sent and deleted only once skiffd acknowledged it, so a
// report is never lost and a resend after a crash is applied once.
//
// State directory (absolute; created if missing):
//   images/       the image store          containers/  the supervisor's container directories
//   rootfs/ID/    root filesystem mounts   runtime/     the OCI runtime's --root
//   tasks/ID.json one task: seq, phase, unsent reports, GPUs
//
// Recovery: containers keep running when the agent stops or dies. `start()` re-adopts them from
// the supervisor's directories, resends unsent reports, and reports exits that happened while the
// agent was down. A task whose container never started is reported `transientSystemError`.
//
// Logs: a log server (log_server.h) serves the containers' stdout/stderr to skiffd, which proxies
// `GET /v1/tasks/{id}/logs`. It listens on `logListen` and is advertised in the registration as
// the node attribute `logAddress` ("http://IP:PORT"; IP is the listen host, or for a wildcard
// host the local address the kernel picks toward skiffd).
//
// Threads: one for heartbeats, one for the long poll, one sending reports, one per active task,
// one for the log server.
// All blocking work (pulls, mounts, runc) runs on the task threads, so heartbeats never stall.
// Each thread has its own HTTP client.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/node_info.h"
#include "common/error.h"

namespace skiff {
class Clock;
}  // namespace skiff

namespace skiff::agent::image {
class ImageService;
class Registry;
}  // namespace skiff::agent::image

namespace skiff::agent::metadata {
class IdentityProvider;
}  // namespace skiff::agent::metadata

namespace skiff::agent::network {
class NetworkDriver;
class RulesetApplier;
}  // namespace skiff::agent::network

namespace skiff::agent::runtime {
class ContainerRuntime;
class ProcessRunner;
}  // namespace skiff::agent::runtime

namespace skiff::agent {

struct AgentOptions {
  std::string server = "http://127.0.0.1:7070";  // Normalized base address.
  std::string joinToken;
  std::string nodeId;  // Required.
  std::string stateDir = "/var/lib/skiff-agent";
  NodeResources resources;  // What is advertised (see node_info.h for detection).
  NodeAttributes attributes;
  // The OCI runtime binary; empty chooses with runtime's `chooseRuntime` (crun when usable).
  std::string runtimeBinary;
  // On a hybrid cgroup host whose hugetlb controller sits on the cgroup2 mount, mount it as a v1
  // hierarchy so crun can run (runtime auto or crun only; see runtime/cgroup.h). When that fails
  // the agent uses runc.
  bool mountHugetlbForCrun = true;
  // Remount the host's cgroup2 mount with favordynmods so moving each new container into its
  // cgroup does not wait for an RCU grace period (runtime/cgroup.h).
  bool favorDynamicCgroups = true;
  std::vector<std::string> insecureRegistries;  // "HOST:PORT" allowed over plain HTTP.
  std::string monitorPath;                      // skiff-monitor; required.
  std::string initPath = "/usr/bin/tini-static";
  // Names this agent's host-wide resources (nftables table, link names, cgroup parent; see
  // instance.h) so several agents can share a host. Empty: the names of a single agent.
  std::string instance;
  std::string cgroupParent;  // Empty: "/skiff", or "/skiff-INSTANCE" (instance.h).
  std::chrono::milliseconds heartbeatInterval{3000};
  std::chrono::milliseconds pollWait{5000};  // waitMs of the long poll; bounds stop().
  std::chrono::milliseconds stopGrace{10000};
  // Give each container a writable layer limited to its diskMB (a loop-mounted ext4 image).
  bool diskLimits = true;
  int64_t pidsLimit = 4096;  // Per container; 0: none.
  // HOST:PORT of the log server; port 0 picks a free one. Empty: no log server.
  std::string logListen = "0.0.0.0:0";
  // Images not used by a container are removed, least recently used first, while the image store
  // is above this size. Checked after tasks finish, at most once per `imageGcInterval`.
  int64_t imageDiskBudgetBytes = int64_t{20} << 30;
  std::chrono::milliseconds imageGcInterval{60000};
  // Exited containers whose directories (bundle, logs) are kept so `skiff logs` can read them;
  // beyond this many the oldest exits are deleted.
  size_t keepFinishedContainers = 200;
  // Give each container its own address, security groups and bandwidth shaping
  // (network/network_manager.h). Off: containers get a namespace with loopback only.
  bool networking = true;
};

// The back ends the agent runs on. Each empty member gets the production one, so the agent's own
// logic (reports, retries, recovery) can be tested against fakes without root.
struct AgentDeps {
  // Starts, watches, stops and re-adopts containers. Null: a ContainerSupervisor (skiff-monitor)
  // over crun or runc, chosen for the host's cgroup layout; the agent then also prepares the
  // host's cgroups (mountHugetlbForCrun, favorDynamicCgroups).
  std::shared_ptr<runtime::ContainerRuntime> runtime;
  // Runs the OCI runtime, exec health checks and the writable layers' tools.
  std::shared_ptr<runtime::ProcessRunner> runner;
  // Pulls images and mounts containers' root filesystems. Null: an ImageStore under
  // stateDir/images that pulls from `registry`.
  std::shared_ptr<image::ImageService> images;
  // Where the image store pulls from. Null: a RegistryClient (insecureRegistries). Unused when
  // `images` is given.
  std::shared_ptr<image::Registry> registry;
  // Containers' network namespaces, links and routes. Null: veth pairs (network/veth_driver.h).
  // Unused when networking is off, as are the two below.
  std::shared_ptr<network::NetworkDriver> networkDriver;
  // Applies the security groups' nftables scripts. Null: libnftables.
  std::shared_ptr<network::RulesetApplier> firewall;
  // Answers the metadata proxy's requests for a task's role credentials and identity token.
  // Null: skiffd (metadata::SkiffdIdentityProvider).
  std::shared_ptr<metadata::IdentityProvider> identity;
  // Opens the metadata proxy's listener for a task, bound to address:port in the namespace at
  // netnsPath; returns the descriptor. Empty: inside that namespace (needs CAP_SYS_ADMIN).
  std::function<Result<int>(const std::string& netnsPath, const std::string& address,
                            uint16_t port)>
      metadataListener;
  // What health probes, instance credentials and address quarantine measure time by; outlives
  // the agent.
  const Clock* clock = nullptr;
};

class Agent {
 public:
  // Checks the options; opens nothing yet.
  static Result<std::unique_ptr<Agent>> create(AgentOptions options, AgentDeps deps = {});
  // Stops the threads (containers keep running).
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Opens the image store, detects the cgroup layout and runtime, re-adopts containers and
  // starts the threads. Registration happens in the background and is retried until skiffd
  // answers. Fails on local problems only (state directory, runtime, image store lock).
  Status start();

  // Stops heartbeats, polling and reporting and waits for the task threads. Task threads in the
  // middle of a pull finish it first. Running containers are left running, to be re-adopted by
  // the next start. Idempotent.
  void stop();

  const std::string& nodeId() const;
  // The advertised log server address ("http://IP:PORT"), empty before start() or without one.
  std::string logAddress() const;
  // Where the container of `taskId` writes its stdout (rotated copies get .1, .2, ...).
  std::string stdoutPath(const std::string& taskId) const;
  std::string stderrPath(const std::string& taskId) const;

 private:
  struct Impl;
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::agent
