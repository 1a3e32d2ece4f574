#pragma once

// Internal to the agent: `Agent::Impl`, the state every part of the agent shares, and the task
// record. The agent's work is split by concern, one .cpp each:
//   task_state.cpp    task records, their state files and the report outbox
//   task_start.cpp    the start pipeline: pull, network, rootfs, bundle, container start
//   gpu_allocator.cpp GPUs for a task and their device nodes
//   task_watch.cpp    waiting for exits, health probes, retention of exited containers
//   control_link.cpp  registration, heartbeats, assignment polls and reports (client/node_api.h)
//   agent.cpp         the facade, opening the back ends and recovery
//
// Locking: `mutex` guards the fields listed after it and every TaskRecord's fields except those
// marked otherwise. File writes and calls into back ends never happen under `mutex`.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/health/prober.h"
#include "agent/image/image_service.h"
#include "agent/log_server.h"
#include "agent/metadata/metadata_proxy.h"
#include "agent/network/network_manager.h"
#include "agent/runtime/bundle.h"
#include "agent/runtime/cgroup.h"
#include "agent/runtime/container_runtime.h"
#include "agent/runtime/oci_runtime.h"
#include "agent/runtime/process_runner.h"
#include "agent/runtime/writable_layer.h"
#include "client/node_api.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent {

// Where a task is in its life on this node. Persisted with every report.
enum class Phase { kStarting, kLaunching, kRunning, kFinished };

// Persisted as tasks/ID.json (task_state.cpp) with every report.
struct TaskRecord : std::enable_shared_from_this<TaskRecord> {
  std::string taskId;
  std::string jobId;
  int64_t seq = 0;  // The last seq given to a report.
  Phase phase = Phase::kStarting;
  std::vector<nlohmann::json> outbox;  // Reports not yet acknowledged, in seq order.
  std::vector<int> gpus;
  bool writableLayer = false;
  // What the metadata proxy serves the task, and the namespace it listens in (networking only).
  nlohmann::json metadata;
  std::string netnsPath;
  // In memory only.
  uint64_t stateVersion = 0;  // Bumped by every snapshot of the fields above.
  int64_t durableSeq = 0;     // Reports up to this seq are on disk and may be sent.
  // Orders the writes of the task's state file; held without `mutex`.
  std::mutex fileMutex;
  uint64_t writtenVersion = 0;  // Guarded by fileMutex; max: the file is deleted for good.
  bool killRequested = false;
  int64_t createdGeneration = 0;  // The poll that created it (0: recovered).
  int64_t ackedGeneration = -1;   // Poll generation when its last report was acknowledged.
};

struct Agent::Impl {
  using json = nlohmann::json;

  AgentOptions options;
  std::string tasksDir;
  std::string rootfsBase;

  // The back ends as given; open() fills in the production ones for the empty members.
  AgentDeps deps;
  std::shared_ptr<runtime::ProcessRunner> runner;  // Never null.
  const Clock* clock;                              // Never null.
  // The OCI runtime under the production container runtime; null with an injected one.
  std::unique_ptr<runtime::RuncCompatibleRuntime> ociRuntime;
  std::shared_ptr<runtime::ContainerRuntime> containers;
  std::unique_ptr<runtime::WritableLayerPool> layerPool;
  // Exited containers still on disk, oldest exit first (guarded by `mutex`).
  std::deque<std::string> retired;
  std::set<std::string> retiredSet;
  std::shared_ptr<image::ImageService> images;
  std::unique_ptr<network::NetworkManager> network;  // Null when networking is off.
  // Serves 169.254.169.254 inside each container's namespace; null when networking is off.
  std::unique_ptr<metadata::MetadataProxy> metadataProxy;
  std::vector<int> gpuDevices;

  std::mutex mutex;  // Guards everything below.
  std::chrono::steady_clock::time_point lastImageGc{};
  std::condition_variable changed;
  bool started = false;
  bool stopping = false;
  bool registered = false;
  bool outboxDirty = false;
  std::map<std::string, std::shared_ptr<TaskRecord>> tasks;
  std::set<int> gpusInUse;
  int activeWorkers = 0;
  std::atomic<int64_t> pollGeneration{0};
  // The tasks skiffd assigns to this node as of the last answer (full answers replace it, deltas
  // add to it and take their `removed` out). Used by the poll thread only.
  std::set<std::string> assigned;

  std::vector<std::thread> threads;  // Heartbeat, poll, report.
  std::unique_ptr<LogServer> logServer;
  std::string logAddress;  // Set by start() before the threads run; constant after.

  Impl(AgentOptions o, AgentDeps d)
      : options(std::move(o)),
        deps(std::move(d)),
        runner(deps.runner ? deps.runner : std::make_shared<runtime::PosixProcessRunner>()),
        clock(deps.clock ? deps.clock : &SystemClock::instance()) {}

  std::unique_ptr<client::NodeApi> makeClient(long requestTimeoutMs) const;

  // Waits up to `duration`; returns false when stopping.
  bool sleepFor(std::chrono::milliseconds duration);

  // ---- Task records ----

  std::string recordPath(const std::string& taskId) const;

  // A task's state as it was when snapshotted, to be written once `mutex` is released.
  struct StateWrite {
    std::shared_ptr<TaskRecord> task;
    std::string text;
    uint64_t version = 0;
    int64_t seq = 0;
  };

  // Caller holds `mutex`. File writes never happen under `mutex`: with dozens of tasks starting
  // at once they would serialize every task thread behind the disk.
  StateWrite snapshotLocked(TaskRecord& task);

  // Caller does not hold `mutex`. Writes the snapshot unless a newer one was written already,
  // then lets the reporter send the reports it covers. The file is written before any report in
  // it is sent, so a restarted agent never reuses a seq skiffd has seen. It is not fsynced: it
  // must survive kill -9 of the agent (the page cache does), and a host crash takes the
  // containers down with it.
  void writeState(const StateWrite& write);

  // Caller holds `mutex`. Deletes the state file; snapshots still in flight are not written.
  void removeStateLocked(TaskRecord& task);

  void setPhase(TaskRecord& task, Phase phase);

  // Queues a status report with the task's next seq; durable before it is sent.
  void report(TaskRecord& task, std::string_view state, const std::string& reason = "",
              const std::string& message = "", std::optional<int> exitCode = std::nullopt,
              const std::string& pinnedImage = "", const std::string& ip = "",
              std::optional<bool> ready = std::nullopt);

  void finish(TaskRecord& task, const std::string& reason, const std::string& message,
              std::optional<int> exitCode = std::nullopt);

  Status loadRecords();

  // ---- Task threads ----

  void spawn(std::shared_ptr<TaskRecord> task, json assignment);

  bool killRequested(const TaskRecord& task);

  std::string rootfsDir(const std::string& taskId) const { return rootfsBase + "/" + taskId; }

  void cleanupRootfs(const TaskRecord& task);

  // Trims the image store to its budget, at most once per `imageGcInterval`.
  void maybeCollectImages();

  // Picks `count` free GPUs; empty with an error when there are not enough.
  Result<std::vector<int>> allocateGpus(int64_t count);

  void addGpuDevices(runtime::BundleSpec& spec, const std::vector<int>& gpus);

  void runTask(TaskRecord& task, const json& assignment);

  std::string checksPath(const std::string& taskId) const;

  struct Probes {
    std::optional<health::Prober> liveness;
    std::optional<health::Prober> readiness;
  };

  // The task's liveness and readiness probers, from what runTask kept; none when it has no checks.
  Probes loadProbes(const TaskRecord& task);

  // An exec check: the command inside the container (the container runtime's `exec`).
  health::Attempt execCheck(const std::string& containerId, const std::vector<std::string>& command,
                            int64_t timeoutMs);

  // Waits for the container's exit (stopping it when asked) and reports it. Returns early, leaving
  // the container running, when the agent stops.
  void watch(TaskRecord& task);

  // Starts serving the task's metadata inside its namespace (before its process runs) and
  // records it, so a restarted agent serves it again.
  Status serveMetadata(TaskRecord& task, const json& assignment, const std::string& address,
                       const std::string& netnsPath, const std::string& pinnedImage);

  // Keeps the exited container's directory for its logs and deletes the oldest ones beyond
  // `keepFinishedContainers`.
  void retire(const std::string& taskId);

  // ---- Control plane threads ----

  struct CpuSample {
    uint64_t usageNs = 0;
    std::chrono::steady_clock::time_point at;
  };

  // The CPU each running container used since the previous heartbeat, in cores, from its
  // cgroup's CPU time: {"TASK": {"cpuCores": 0.48}}. A container's first sample only sets its
  // baseline; samples of containers no longer running are dropped.
  json sampleUsage(std::map<std::string, CpuSample>& previous);

  void heartbeatLoop();

  void pollLoop();

  // Applies one answer: a full list (skiffd before deltas sent only those) or a delta.
  void handleAssignments(const json& body, int64_t generation);

  void reportLoop();

  // ---- Start-up ----

  // Whether the container of `taskId` may still write output (for the log server's follow).
  bool mayWrite(const std::string& taskId);

  Status startLogServer();

  Status open();

  // The production container runtime: cgroup layout, crun or runc, the monitor's supervisor.
  Status openContainerRuntime();

  Status recover();
};

}  // namespace skiff::agent
