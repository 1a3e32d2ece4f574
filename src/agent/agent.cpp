#include "agent/agent.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/health/prober.h"
#include "agent/image/fs_util.h"
#include "agent/image/image_store.h"
#include "agent/image/registry_client.h"
#include "agent/log_server.h"
#include "agent/metadata/metadata_proxy.h"
#include "agent/metadata/task_metadata.h"
#include "agent/network/network_manager.h"
#include "agent/runtime/bundle.h"
#include "agent/runtime/cgroup.h"
#include "agent/runtime/oci_runtime.h"
#include "agent/runtime/process_runner.h"
#include "agent/runtime/supervisor.h"
#include "agent/runtime/writable_layer.h"
#include "api/job.h"
#include "client/node_api.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/log.h"

namespace skiff::agent {
namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// Where a task is in its life on this node. Persisted with every report.
enum class Phase { kStarting, kLaunching, kRunning, kFinished };

std::string_view phaseName(Phase phase) {
  switch (phase) {
    case Phase::kStarting:
      return "starting";
    case Phase::kLaunching:
      return "launching";
    case Phase::kRunning:
      return "running";
    case Phase::kFinished:
      return "finished";
  }
  return "finished";
}

Phase parsePhase(std::string_view name) {
  if (name == "starting") return Phase::kStarting;
  if (name == "launching") return Phase::kLaunching;
  if (name == "running") return Phase::kRunning;
  return Phase::kFinished;
}

struct TaskRecord : std::enable_shared_from_this<TaskRecord> {
  std::string taskId;
  std::string jobId;
  int64_t seq = 0;  // The last seq given to a report.
  Phase phase = Phase::kStarting;
  std::vector<json> outbox;  // Reports not yet acknowledged, in seq order.
  std::vector<int> gpus;
  bool writableLayer = false;
  // What the metadata proxy serves the task, and the namespace it listens in (networking only).
  json metadata;
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

struct Outcome {
  std::string reason;
  std::string message;
  std::optional<int> exitCode;
};

Outcome outcomeOf(const runtime::ExitStatus& exit) {
  using runtime::ExitReason;
  switch (exit.reason) {
    case ExitReason::kExited:
      if (exit.exitCode == 0) return {"normal", "", 0};
      return {"failed", "exit code " + std::to_string(exit.exitCode), exit.exitCode};
    case ExitReason::kOOMKilled:
      return {"failed", "OOMKilled", exit.exitCode};
    case ExitReason::kStopped:
      return {"killed", "stopped", exit.exitCode};
    case ExitReason::kRuntimeLimitExceeded:
      return {"runtimeLimitExceeded", "runtime limit exceeded", exit.exitCode};
    case ExitReason::kStartFailed:
      return {"localSystemError", "the OCI runtime could not start the container", std::nullopt};
    case ExitReason::kLost:
      return {"lost", "the container's monitor died without recording an exit", std::nullopt};
  }
  return {"lost", "", std::nullopt};
}

// Errors of the node's image store are the platform's, not the user's program's.
std::string imageErrorReason(const Error& error) {
  return error.code() == ErrorCode::kUnavailable || error.code() == ErrorCode::kIo
             ? "transientSystemError"
             : "localSystemError";
}

// A registry's definitive answer about the job's image ends the task with a reason of its own,
// which skiffd does not retry; anything else is the platform's.
std::string pullErrorReason(const Error& error) {
  switch (image::classifyPullError(error)) {
    case image::PullFailure::kNotFound:
      return "imageNotFound";
    case image::PullFailure::kDenied:
      return "imageDenied";
    case image::PullFailure::kTransient:
      return "transientSystemError";
    case image::PullFailure::kLocal:
      break;
  }
  return "localSystemError";
}

// Resolves an image config `user` ("uid[:gid]" or names) against the root filesystem.
Result<std::pair<uint32_t, uint32_t>> resolveUser(const std::string& user,
                                                  const std::string& rootfs) {
  if (user.empty()) return std::pair<uint32_t, uint32_t>{0, 0};
  std::string name = user;
  std::string group;
  if (auto colon = user.find(':'); colon != std::string::npos) {
    name = user.substr(0, colon);
    group = user.substr(colon + 1);
  }
  auto numeric = [](const std::string& s) -> std::optional<uint32_t> {
    if (s.empty() || s.size() > 9 ||
        !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(std::stoul(s));
  };
  // Looks up NAME in an /etc/passwd or /etc/group style file: field 3 is the id, field 4 (passwd)
  // the primary group.
  auto lookup = [&](const std::string& file, const std::string& key,
                    int field) -> std::optional<uint32_t> {
    std::ifstream in(rootfs + file);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> fields;
      std::stringstream split(line);
      std::string item;
      while (std::getline(split, item, ':')) fields.push_back(item);
      if (fields.size() > static_cast<size_t>(field) && fields[0] == key) {
        return numeric(fields[field]);
      }
    }
    return std::nullopt;
  };
  std::optional<uint32_t> uid = numeric(name);
  std::optional<uint32_t> gid;
  if (!uid) {
    uid = lookup("/etc/passwd", name, 2);
    if (!uid) return fail(ErrorCode::kInvalidArgument, "user " + name + " not found in the image");
    gid = lookup("/etc/passwd", name, 3);
  }
  if (!group.empty()) {
    gid = numeric(group);
    if (!gid) gid = lookup("/etc/group", group, 2);
    if (!gid)
      return fail(ErrorCode::kInvalidArgument, "group " + group + " not found in the image");
  }
  return std::pair<uint32_t, uint32_t>{*uid, gid.value_or(0)};
}

std::vector<std::string> mergeEnv(const std::vector<std::string>& imageEnv,
                                  const std::map<std::string, std::string>& taskEnv,
                                  const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  std::map<std::string, size_t> positions;
  auto set = [&](const std::string& key, const std::string& value) {
    auto it = positions.find(key);
    if (it != positions.end()) {
      env[it->second] = key + "=" + value;
    } else {
      positions[key] = env.size();
      env.push_back(key + "=" + value);
    }
  };
  for (const std::string& entry : imageEnv) {
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    set(entry.substr(0, eq), entry.substr(eq + 1));
  }
  for (const auto& [key, value] : taskEnv) set(key, value);
  for (const auto& [key, value] : extra) set(key, value);
  return env;
}

// The local address the kernel would use to reach `server` ("http://HOST:PORT"): how skiffd sees
// this machine. A UDP connect sends nothing. Falls back to 127.0.0.1.
std::string localAddressToward(const std::string& server) {
  std::string_view rest = server;
  if (auto scheme = rest.find("://"); scheme != std::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  auto hostPort = http::parseHostPort(rest);
  if (!hostPort) return "127.0.0.1";
  std::string host = hostPort->first;
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(hostPort->second).c_str(), &hints, &found) != 0) {
    return "127.0.0.1";
  }
  std::string address = "127.0.0.1";
  int fd = socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    char text[INET6_ADDRSTRLEN] = {};
    if (local.ss_family == AF_INET &&
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, text, sizeof text)) {
      address = text;
    } else if (local.ss_family == AF_INET6 &&
               inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, text,
                         sizeof text)) {
      address = "[" + std::string(text) + "]";
    }
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return address;
}

}  // namespace

struct Agent::Impl {
  AgentOptions options;
  std::string tasksDir;
  std::string rootfsBase;

  runtime::PosixProcessRunner runner;
  runtime::CgroupLayout layout;
  std::unique_ptr<runtime::RuncCompatibleRuntime> ociRuntime;
  std::unique_ptr<runtime::ContainerSupervisor> supervisor;
  std::unique_ptr<runtime::WritableLayerPool> layerPool;
  // Exited containers still on disk, oldest exit first (guarded by `mutex`).
  std::deque<std::string> retired;
  std::set<std::string> retiredSet;
  std::unique_ptr<image::ImageStore> images;
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

  explicit Impl(AgentOptions o) : options(std::move(o)) {}

  std::unique_ptr<client::NodeApi> makeClient(long requestTimeoutMs) const {
    client::ClientOptions clientOptions;
    clientOptions.connectTimeoutMs = 5000;
    clientOptions.requestTimeoutMs = requestTimeoutMs;
    clientOptions.userAgent = "skiff-agent/" SKIFF_VERSION;
    return std::make_unique<client::NodeApi>(options.server, options.joinToken, clientOptions);
  }

  // Waits up to `duration`; returns false when stopping.
  bool sleepFor(std::chrono::milliseconds duration) {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, duration, [&] { return stopping; });
    return !stopping;
  }

  // ---- Task records ----

  std::string recordPath(const std::string& taskId) const {
    return tasksDir + "/" + taskId + ".json";
  }

  // A task's state as it was when snapshotted, to be written once `mutex` is released.
  struct StateWrite {
    std::shared_ptr<TaskRecord> task;
    std::string text;
    uint64_t version = 0;
    int64_t seq = 0;
  };

  // Caller holds `mutex`. File writes never happen under `mutex`: with dozens of tasks starting
  // at once they would serialize every task thread behind the disk.
  StateWrite snapshotLocked(TaskRecord& task) {
    json outbox = json::array();
    for (const json& update : task.outbox) outbox.push_back(update);
    json doc = {{"taskId", task.taskId},
                {"jobId", task.jobId},
                {"seq", task.seq},
                {"phase", phaseName(task.phase)},
                {"outbox", outbox},
                {"gpus", task.gpus},
                {"writableLayer", task.writableLayer},
                {"metadata", task.metadata},
                {"netnsPath", task.netnsPath}};
    return {task.shared_from_this(), doc.dump(), ++task.stateVersion, task.seq};
  }

  // Caller does not hold `mutex`. Writes the snapshot unless a newer one was written already,
  // then lets the reporter send the reports it covers. The file is written before any report in
  // it is sent, so a restarted agent never reuses a seq skiffd has seen. It is not fsynced: it
  // must survive kill -9 of the agent (the page cache does), and a host crash takes the
  // containers down with it.
  void writeState(const StateWrite& write) {
    TaskRecord& task = *write.task;
    {
      std::lock_guard fileLock(task.fileMutex);
      if (write.version <= task.writtenVersion) return;
      if (auto written = image::fs::writeFileAtomic(recordPath(task.taskId), write.text,
                                                    image::fs::Durability::kProcessCrash);
          !written) {
        log::error("cannot persist task state",
                   {{"taskId", task.taskId}, {"error", written.error().message()}});
      }
      task.writtenVersion = write.version;
    }
    std::lock_guard lock(mutex);
    if (write.seq > task.durableSeq) {
      task.durableSeq = write.seq;
      outboxDirty = true;
      changed.notify_all();
    }
  }

  // Caller holds `mutex`. Deletes the state file; snapshots still in flight are not written.
  void removeStateLocked(TaskRecord& task) {
    std::lock_guard fileLock(task.fileMutex);
    task.writtenVersion = std::numeric_limits<uint64_t>::max();
    std::error_code ec;
    stdfs::remove(recordPath(task.taskId), ec);
    stdfs::remove(checksPath(task.taskId), ec);
  }

  void setPhase(TaskRecord& task, Phase phase) {
    StateWrite write;
    {
      std::lock_guard lock(mutex);
      task.phase = phase;
      write = snapshotLocked(task);
    }
    writeState(write);
  }

  // Queues a status report with the task's next seq; durable before it is sent.
  void report(TaskRecord& task, std::string_view state, const std::string& reason = "",
              const std::string& message = "", std::optional<int> exitCode = std::nullopt,
              const std::string& pinnedImage = "", const std::string& ip = "",
              std::optional<bool> ready = std::nullopt) {
    std::unique_lock lock(mutex);
    json update = {{"taskId", task.taskId}, {"seq", ++task.seq}, {"state", state}};
    if (!reason.empty()) update["reason"] = reason;
    if (!message.empty()) update["message"] = message;
    if (exitCode) update["exitCode"] = *exitCode;
    if (!pinnedImage.empty()) update["image"] = pinnedImage;
    if (!ip.empty()) update["ip"] = ip;
    if (ready) update["ready"] = *ready;
    task.outbox.push_back(std::move(update));
    if (state == "Finished") {
      task.phase = Phase::kFinished;
      for (int gpu : task.gpus) gpusInUse.erase(gpu);
    }
    StateWrite write = snapshotLocked(task);
    log::info("task status", {{"taskId", task.taskId},
                              {"seq", task.seq},
                              {"state", state},
                              {"reason", reason},
                              {"message", message}});
    lock.unlock();
    writeState(write);
  }

  void finish(TaskRecord& task, const std::string& reason, const std::string& message,
              std::optional<int> exitCode = std::nullopt) {
    report(task, "Finished", reason, message, exitCode);
  }

  Status loadRecords() {
    for (const std::string& name : image::fs::listDir(tasksDir)) {
      if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
      auto text = image::fs::readFile(tasksDir + "/" + name);
      if (!text) return std::unexpected(text.error());
      json doc = json::parse(*text, nullptr, false);
      if (!doc.is_object() || !doc.contains("taskId")) {
        log::error("skipping corrupt task record", {{"file", name}});
        continue;
      }
      auto task = std::make_shared<TaskRecord>();
      task->taskId = doc.value("taskId", "");
      task->jobId = doc.value("jobId", "");
      task->seq = doc.value("seq", int64_t{0});
      task->durableSeq = task->seq;  // Read from disk: every report in it may be sent.
      task->phase = parsePhase(doc.value("phase", "finished"));
      for (const json& update : doc.value("outbox", json::array())) task->outbox.push_back(update);
      task->gpus = doc.value("gpus", std::vector<int>{});
      task->writableLayer = doc.value("writableLayer", false);
      if (doc.contains("metadata")) task->metadata = doc["metadata"];
      task->netnsPath = doc.value("netnsPath", "");
      if (task->phase != Phase::kFinished) gpusInUse.insert(task->gpus.begin(), task->gpus.end());
      if (!task->outbox.empty()) outboxDirty = true;
      tasks[task->taskId] = task;
    }
    return {};
  }

  // ---- Task threads ----

  void spawn(std::shared_ptr<TaskRecord> task, json assignment) {
    {
      std::lock_guard lock(mutex);
      ++activeWorkers;
    }
    std::thread([this, task = std::move(task), assignment = std::move(assignment)]() mutable {
      if (assignment.is_null()) {
        watch(*task);
      } else {
        runTask(*task, assignment);
      }
      std::lock_guard lock(mutex);
      --activeWorkers;
      changed.notify_all();
    }).detach();
  }

  bool killRequested(const TaskRecord& task) {
    std::lock_guard lock(mutex);
    return task.killRequested;
  }

  std::string rootfsDir(const std::string& taskId) const { return rootfsBase + "/" + taskId; }

  void cleanupRootfs(const TaskRecord& task) {
    if (metadataProxy && metadataProxy->hasTask(task.taskId)) {
      (void)metadataProxy->removeTask(task.taskId);
    }
    if (network) network->detach(task.taskId);
    std::string dir = rootfsDir(task.taskId);
    if (auto released = images->releaseRootfs(dir); !released) {
      log::warn("release rootfs", {{"taskId", task.taskId}, {"error", released.error().message()}});
    }
    if (task.writableLayer) {
      if (auto kept = layerPool->release({dir + ".img", dir}); !kept) {
        log::warn("writable layer", {{"taskId", task.taskId}, {"error", kept.error().message()}});
      }
    }
    std::error_code ec;
    stdfs::remove_all(dir, ec);
    stdfs::remove(dir + ".img", ec);
    maybeCollectImages();
  }

  // Trims the image store to its budget, at most once per `imageGcInterval`.
  void maybeCollectImages() {
    auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex);
      if (now - lastImageGc < options.imageGcInterval) return;
      lastImageGc = now;
    }
    auto collected = images->collectGarbage();
    if (!collected) {
      log::warn("image garbage collection", {{"error", collected.error().message()}});
    }
  }

  // Picks `count` free GPUs; empty with an error when there are not enough.
  Result<std::vector<int>> allocateGpus(int64_t count) {
    std::lock_guard lock(mutex);
    std::vector<int> picked;
    for (int gpu : gpuDevices) {
      if (static_cast<int64_t>(picked.size()) == count) break;
      if (!gpusInUse.contains(gpu)) picked.push_back(gpu);
    }
    if (static_cast<int64_t>(picked.size()) < count) {
      return fail(ErrorCode::kUnavailable, "not enough free GPUs on this node");
    }
    gpusInUse.insert(picked.begin(), picked.end());
    return picked;
  }

  void addGpuDevices(runtime::BundleSpec& spec, const std::vector<int>& gpus) {
    std::string indices;
    std::vector<std::string> paths;
    for (int gpu : gpus) {
      paths.push_back("/dev/nvidia" + std::to_string(gpu));
      if (!indices.empty()) indices += ",";
      indices += std::to_string(gpu);
    }
    if (gpus.empty()) return;
    for (const char* extra : {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}) {
      paths.push_back(extra);
    }
    for (const std::string& path : paths) {
      struct stat st {};
      if (stat(path.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;
      spec.devices.push_back({path, static_cast<int64_t>(major(st.st_rdev)),
                              static_cast<int64_t>(minor(st.st_rdev)), 0666});
    }
    spec.gpuIndices = indices;
  }

  void runTask(TaskRecord& task, const json& assignment) {
    // Where start latency goes, logged with the Started report.
    auto phaseStart = std::chrono::steady_clock::now();
    json timings = json::object();
    auto lap = [&](const char* phase) {
      auto now = std::chrono::steady_clock::now();
      timings[phase] = std::chrono::duration<double, std::milli>(now - phaseStart).count();
      phaseStart = now;
    };
    report(task, "StartInitiated");
    auto descriptor = api::validateJobDescriptor(assignment["job"].value("descriptor", json()));
    if (!descriptor) {
      std::string message = "invalid job descriptor";
      if (!descriptor.error().empty()) message += ": " + descriptor.error().front().toString();
      finish(task, "invalidRequest", message);
      return;
    }
    const api::Container& container = descriptor->container;
    if (!runtime::isValidContainerId(task.taskId)) {
      finish(task, "localSystemError", "task id is not usable as a container id");
      return;
    }
    if (killRequested(task)) return finish(task, "killed", "killed before it started");

    std::string reference = container.image.reference();
    lap("acceptMs");
    // The network does not depend on the image: its namespace and links are made while the
    // image reference is resolved. Every return below waits for it (the future's destructor)
    // and, through failStart's cleanup, takes it down again.
    auto attachNetwork = [this, &task, &container] {
      return network->attach(task.taskId, container.securityProfile.securityGroups,
                             container.resources.networkMbps);
    };
    std::future<Result<network::Attachment>> attaching;
    if (network) {
      try {
        attaching = std::async(std::launch::async, attachNetwork);
      } catch (const std::system_error&) {
        // No thread to spare: the network is attached in turn below.
      }
    }
    auto abandon = [&](const std::string& reason, const std::string& message) {
      if (attaching.valid()) {
        attaching.wait();
        network->detach(task.taskId);
      }
      finish(task, reason, message);
    };
    auto pulled = images->pull(reference);
    lap("pullMs");
    if (!pulled) {
      log::warn("image pull failed",
                {{"taskId", task.taskId}, {"error", pulled.error().message()}});
      return abandon(pullErrorReason(pulled.error()), "image: " + pulled.error().message());
    }
    if (killRequested(task)) return abandon("killed", "killed before it started");

    auto gpus = allocateGpus(container.resources.gpu);
    if (!gpus) return abandon("localSystemError", gpus.error().message());
    StateWrite gpuWrite;
    {
      std::lock_guard lock(mutex);
      task.gpus = *gpus;
      task.writableLayer = options.diskLimits && container.resources.diskMB > 0;
      gpuWrite = snapshotLocked(task);
    }
    writeState(gpuWrite);

    std::string dir = rootfsDir(task.taskId);
    auto failStart = [&](const std::string& reason, const std::string& message) {
      if (attaching.valid()) attaching.wait();  // cleanupRootfs detaches what it made.
      cleanupRootfs(task);
      finish(task, reason, message);
    };
    if (task.writableLayer) {
      auto layer = layerPool->acquire({dir + ".img", dir},
                                      static_cast<uint64_t>(container.resources.diskMB) << 20);
      if (!layer)
        return failStart("localSystemError", "writable layer: " + layer.error().message());
    }
    lap("writableLayerMs");
    auto mount = images->prepareRootfs(pulled->image.digest, dir);
    if (!mount) {
      return failStart(imageErrorReason(mount.error()), "rootfs: " + mount.error().message());
    }
    lap("rootfsMs");

    const image::ImageConfig& config = pulled->image.config;
    runtime::ContainerConfig cc;
    cc.id = task.taskId;
    cc.bundle.rootfsPath = mount->rootfs;
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    if (!container.entryPoint.empty()) entrypoint = container.entryPoint;
    if (!container.command.empty()) cmd = container.command;
    cc.bundle.args = runtime::resolveArgs(config.entrypoint, config.cmd, entrypoint, cmd);
    if (cc.bundle.args.empty()) {
      return failStart("failed", "no command: the image has no entrypoint or cmd and the job none");
    }
    cc.bundle.env = mergeEnv(config.env, container.env,
                             {{"SKIFF_TASK_ID", task.taskId}, {"SKIFF_JOB_ID", task.jobId}});
    cc.bundle.cwd = config.workingDir.empty() ? "/" : config.workingDir;
    auto user = resolveUser(config.user, mount->rootfs);
    if (!user) return failStart("failed", user.error().message());
    cc.bundle.uid = user->first;
    cc.bundle.gid = user->second;
    cc.bundle.cpuCores = container.resources.cpu;
    cc.bundle.memoryBytes = static_cast<uint64_t>(container.resources.memoryMB) << 20;
    cc.bundle.pidsLimit = options.pidsLimit;
    addGpuDevices(cc.bundle, task.gpus);
    cc.stopGrace = options.stopGrace;
    if (descriptor->batch) {
      cc.runtimeLimit = std::chrono::seconds(descriptor->batch->runtimeLimitSec);
    }

    std::string address;
    lap("specMs");
    if (network) {
      auto attached = attaching.valid() ? attaching.get() : attachNetwork();
      if (!attached) {
        return failStart(attached.error().code() == ErrorCode::kUnavailable ? "transientSystemError"
                                                                            : "localSystemError",
                         "network: " + attached.error().message());
      }
      address = attached->address;
      cc.bundle.netnsPath = attached->netnsPath;
      for (const auto& file : attached->files) {
        cc.bundle.fileBinds.push_back({file.source, file.destination});
      }
      lap("networkMs");
      if (auto served = serveMetadata(task, assignment, address, attached->netnsPath,
                                      pulled->pinnedReference);
          !served) {
        return failStart("transientSystemError", "metadata proxy: " + served.error().message());
      }
    }

    if (killRequested(task)) return failStart("killed", "killed before it started");
    lap("metadataMs");
    setPhase(task, Phase::kLaunching);
    lap("launchingStateMs");
    if (auto started = supervisor->start(cc); !started) {
      log::warn("container start failed",
                {{"taskId", task.taskId}, {"error", started.error().message()}});
      bool userError = started.error().code() == ErrorCode::kInvalidArgument;
      return failStart(userError ? "failed" : "localSystemError",
                       "start: " + started.error().message());
    }
    lap("containerStartMs");
    setPhase(task, Phase::kRunning);
    report(task, "Started", "", "image " + pulled->pinnedReference, std::nullopt,
           pulled->pinnedReference, address);
    lap("reportMs");
    log::info("start timings", {{"taskId", task.taskId}, {"timings", timings}});
    if (container.liveness || container.readiness) {
      // Kept beside the task's state so a restarted agent probes the container again.
      json checks = {{"descriptor", assignment["job"].value("descriptor", json())},
                     {"ip", address}};
      if (auto saved = image::fs::writeFileAtomic(checksPath(task.taskId), checks.dump(),
                                                  image::fs::Durability::kProcessCrash);
          !saved) {
        log::warn("cannot keep health checks",
                  {{"taskId", task.taskId}, {"error", saved.error().message()}});
      }
    }
    watch(task);
  }

  std::string checksPath(const std::string& taskId) const {
    return tasksDir + "/" + taskId + ".checks";
  }

  struct Probes {
    std::optional<health::Prober> liveness;
    std::optional<health::Prober> readiness;
  };

  // The task's liveness and readiness probers, from what runTask kept; none when it has no checks.
  Probes loadProbes(const TaskRecord& task) {
    Probes probes;
    auto text = image::fs::readFile(checksPath(task.taskId));
    if (!text) return probes;
    auto doc = json::parse(*text, nullptr, false);
    if (!doc.is_object()) return probes;
    auto descriptor = api::validateJobDescriptor(doc.value("descriptor", json()));
    if (!descriptor) return probes;
    health::Target target{doc.value("ip", ""), task.taskId};
    auto checker = std::make_shared<health::NetworkChecker>(
        [this](const std::string& id, const std::vector<std::string>& command, int64_t timeoutMs) {
          return execCheck(id, command, timeoutMs);
        });
    int64_t now = SystemClock::instance().nowMs();
    const api::Container& container = descriptor->container;
    if (container.liveness)
      probes.liveness.emplace(*container.liveness, target, checker, now, true);
    if (container.readiness) {
      probes.readiness.emplace(*container.readiness, target, checker, now, false);
    }
    return probes;
  }

  // An exec check: the command inside the container through the OCI runtime's `exec`.
  health::Attempt execCheck(const std::string& containerId, const std::vector<std::string>& command,
                            int64_t timeoutMs) {
    runtime::ProcessSpec spec;
    spec.argv = ociRuntime->commandPrefix();
    spec.argv.push_back("exec");
    spec.argv.push_back(containerId);
    spec.argv.insert(spec.argv.end(), command.begin(), command.end());
    spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    spec.timeout = std::chrono::milliseconds(timeoutMs);
    auto ran = runner.run(spec);
    if (!ran) return {false, ran.error().message()};
    std::string output = ran->out + ran->err;
    if (ran->timedOut) output = "timed out after " + std::to_string(timeoutMs) + " ms";
    if (output.size() > 1024) output.resize(1024);
    if (!ran->ok() && output.empty()) output = "exit code " + std::to_string(ran->exitCode);
    return {ran->ok(), output};
  }

  // Waits for the container's exit (stopping it when asked) and reports it. Returns early, leaving
  // the container running, when the agent stops.
  void watch(TaskRecord& task) {
    bool stopSent = false;
    Probes probes = loadProbes(task);
    std::string livenessFailure;  // Set when a failed liveness check stopped the container.
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      if (!stopSent && killRequested(task)) {
        stopSent = true;
        if (auto stopped = supervisor->stop(task.taskId); !stopped) {
          log::warn("stop failed", {{"taskId", task.taskId}, {"error", stopped.error().message()}});
        }
      }
      auto waitFor = std::chrono::milliseconds(300);
      int64_t now = SystemClock::instance().nowMs();
      for (const auto* prober : {&probes.liveness, &probes.readiness}) {
        if (*prober && !stopSent) {
          waitFor = std::min(waitFor, std::chrono::milliseconds(std::max<int64_t>(
                                          1, (*prober)->state().nextAttemptMs() - now)));
        }
      }
      auto exit = supervisor->wait(task.taskId, waitFor);
      if (exit && !livenessFailure.empty()) {
        // The container was stopped because its liveness check failed: a failure of the task.
        cleanupRootfs(task);
        finish(task, "failed", "liveness check failed: " + livenessFailure,
               exit->exitCode >= 0 ? std::optional<int>(exit->exitCode) : std::nullopt);
        retire(task.taskId);
        return;
      }
      if (exit) {
        Outcome outcome = outcomeOf(*exit);
        cleanupRootfs(task);
        finish(task, outcome.reason, outcome.message, outcome.exitCode);
        retire(task.taskId);
        return;
      }
      if (exit.error().code() != ErrorCode::kUnavailable) {
        log::error("lost track of container",
                   {{"taskId", task.taskId}, {"error", exit.error().message()}});
        cleanupRootfs(task);
        finish(task, "lost", exit.error().message());
        retire(task.taskId);
        return;
      }
      if (stopSent) continue;
      now = SystemClock::instance().nowMs();
      if (probes.readiness) {
        if (auto ready = probes.readiness->tick(now)) {
          report(task, "Started", "",
                 *ready ? "ready" : "not ready: " + probes.readiness->state().lastFailure(),
                 std::nullopt, "", "", *ready);
        }
      }
      if (probes.liveness) {
        if (auto alive = probes.liveness->tick(now); alive && !*alive) {
          livenessFailure = probes.liveness->state().lastFailure();
          if (livenessFailure.empty()) livenessFailure = "no detail";
          log::info("liveness check failed; stopping the container",
                    {{"taskId", task.taskId}, {"output", livenessFailure}});
          stopSent = true;
          if (auto stopped = supervisor->stop(task.taskId); !stopped) {
            log::warn("stop failed",
                      {{"taskId", task.taskId}, {"error", stopped.error().message()}});
          }
        }
      }
    }
  }

  // Starts serving the task's metadata inside its namespace (before its process runs) and
  // records it, so a restarted agent serves it again.
  Status serveMetadata(TaskRecord& task, const json& assignment, const std::string& address,
                       const std::string& netnsPath, const std::string& pinnedImage) {
    if (!metadataProxy) return {};
    metadata::TaskMetadata md = metadata::taskMetadataFromAssignment(
        assignment, address, options.nodeId, options.attributes.zone, regionOf(options.attributes),
        options.attributes.machineType,
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    md.imageId = pinnedImage;
    StateWrite write;
    {
      std::lock_guard lock(mutex);
      task.metadata = metadata::toJson(md);
      task.netnsPath = netnsPath;
      write = snapshotLocked(task);
    }
    writeState(write);
    return metadataProxy->addTask(std::move(md), netnsPath);
  }

  // Keeps the exited container's directory for its logs and deletes the oldest ones beyond
  // `keepFinishedContainers`.
  void retire(const std::string& taskId) {
    std::vector<std::string> expired;
    {
      std::lock_guard lock(mutex);
      if (!retiredSet.insert(taskId).second) return;
      retired.push_back(taskId);
      while (retired.size() > options.keepFinishedContainers) {
        retiredSet.erase(retired.front());
        expired.push_back(std::move(retired.front()));
        retired.pop_front();
      }
    }
    for (const std::string& id : expired) {
      if (auto removed = supervisor->remove(id); !removed) {
        log::warn("cannot remove exited container",
                  {{"taskId", id}, {"error", removed.error().message()}});
      }
    }
  }

  // ---- Control plane threads ----

  struct CpuSample {
    uint64_t usageNs = 0;
    std::chrono::steady_clock::time_point at;
  };

  // The CPU each running container used since the previous heartbeat, in cores, from its
  // cgroup's CPU time: {"TASK": {"cpuCores": 0.48}}. A container's first sample only sets its
  // baseline; samples of containers no longer running are dropped.
  json sampleUsage(std::map<std::string, CpuSample>& previous) {
    std::vector<std::string> running;
    if (!supervisor) return json::object();
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, task] : tasks) {
        if (task->phase == Phase::kRunning && !task->killRequested) running.push_back(id);
      }
    }
    std::map<std::string, CpuSample> current;
    json usage = json::object();
    for (const std::string& id : running) {
      auto nanos = supervisor->cpuUsageNs(id);
      if (!nanos) continue;
      CpuSample sample{*nanos, std::chrono::steady_clock::now()};
      if (auto it = previous.find(id);
          it != previous.end() && sample.usageNs >= it->second.usageNs) {
        double seconds = std::chrono::duration<double>(sample.at - it->second.at).count();
        if (seconds > 0.05) {
          double cores = static_cast<double>(sample.usageNs - it->second.usageNs) / 1e9 / seconds;
          usage[id] = {{"cpuCores", std::round(cores * 1000) / 1000}};
        }
      }
      current.emplace(id, sample);
    }
    previous = std::move(current);
    return usage;
  }

  void heartbeatLoop() {
    auto client = makeClient(10'000);
    json body = registrationBody(options.nodeId, options.resources, options.attributes);
    if (!logAddress.empty()) body["attributes"]["logAddress"] = logAddress;
    bool warned = false;
    std::map<std::string, CpuSample> cpuSamples;
    while (true) {
      bool isRegistered;
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
        isRegistered = registered;
      }
      if (!isRegistered) {
        auto response = client->registerNode(body);
        if (response && response->ok()) {
          log::info("registered", {{"nodeId", options.nodeId}, {"server", options.server}});
          if (network) {
            if (auto configured = network->configure(response->body); !configured) {
              log::error("network setup", {{"error", configured.error().message()}});
            }
          }
          std::lock_guard lock(mutex);
          registered = true;
          changed.notify_all();
          warned = false;
          continue;
        }
        if (!warned) {
          warned = true;
          log::warn("registration failed; retrying",
                    {{"error", response ? client::describeServerError(*response).message
                                        : response.error().message()}});
        }
        if (!sleepFor(1s)) return;
        continue;
      }
      auto response = client->heartbeat(options.nodeId, sampleUsage(cpuSamples));
      if (response && response->status == 404) {
        log::warn("skiffd does not know this node; registering again");
        std::lock_guard lock(mutex);
        registered = false;
        continue;
      }
      if (!response || !response->ok()) {
        log::warn("heartbeat failed",
                  {{"error", response ? client::describeServerError(*response).message
                                      : response.error().message()}});
      }
      if (!sleepFor(options.heartbeatInterval)) return;
    }
  }

  void pollLoop() {
    auto client = makeClient(options.pollWait.count() + 30'000);
    int64_t revision = 0;
    while (true) {
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return stopping || registered; });
        if (stopping) return;
      }
      int64_t generation = ++pollGeneration;
      // Revision 0 (at start, and after registering again) asks for the full list; later
      // answers are deltas whenever skiffd still remembers the changes since `revision`.
      auto response = client->pollAssignments(options.nodeId, revision, options.pollWait);
      if (!response || !response->ok()) {
        if (response && response->status == 404) {
          std::lock_guard lock(mutex);
          registered = false;
          revision = 0;
        }
        if (!sleepFor(1s)) return;
        continue;
      }
      const json& body = response->body;
      if (!body.is_object() || !body.contains("assignments") || !body["assignments"].is_array()) {
        log::warn("malformed assignments answer");
        if (!sleepFor(1s)) return;
        continue;
      }
      revision = body.value("revision", revision);
      handleAssignments(body, generation);
    }
  }

  // Applies one answer: a full list (skiffd before deltas sent only those) or a delta.
  void handleAssignments(const json& body, int64_t generation) {
    const json& list = body["assignments"];
    if (body.value("full", true)) {
      assigned.clear();
    } else if (auto removed = body.find("removed"); removed != body.end() && removed->is_array()) {
      for (const json& id : *removed) {
        if (id.is_string()) assigned.erase(id.get<std::string>());
      }
    }
    std::vector<std::pair<std::shared_ptr<TaskRecord>, json>> toStart;
    std::vector<std::shared_ptr<TaskRecord>> toKillUnknown;
    std::vector<StateWrite> writes;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      for (const json& assignment : list) {
        if (!assignment.is_object() || !assignment.contains("task")) continue;
        std::string taskId = assignment["task"].value("id", "");
        if (taskId.empty()) continue;
        assigned.insert(taskId);
        bool kill = assignment.value("desiredState", "") == "Killed";
        auto it = tasks.find(taskId);
        if (it == tasks.end()) {
          auto task = std::make_shared<TaskRecord>();
          task->taskId = taskId;
          task->jobId = assignment["task"].value("jobId", "");
          task->createdGeneration = generation;
          task->killRequested = kill;
          tasks[taskId] = task;
          writes.push_back(snapshotLocked(*task));
          if (kill) {
            toKillUnknown.push_back(task);
          } else {
            toStart.emplace_back(task, assignment);
          }
        } else if (kill && !it->second->killRequested) {
          it->second->killRequested = true;
          log::info("kill requested", {{"taskId", taskId}});
        }
      }
      // Forget finished tasks once skiffd stopped assigning them after their last report landed;
      // stop running ones that skiffd no longer assigns here.
      for (auto it = tasks.begin(); it != tasks.end();) {
        TaskRecord& task = *it->second;
        if (assigned.contains(task.taskId) || generation <= task.createdGeneration) {
          ++it;
          continue;
        }
        if (task.phase == Phase::kFinished && task.outbox.empty() && task.ackedGeneration >= 0 &&
            generation > task.ackedGeneration) {
          removeStateLocked(task);
          it = tasks.erase(it);
          continue;
        }
        if (task.phase != Phase::kFinished && !task.killRequested) {
          log::warn("task no longer assigned here; stopping it", {{"taskId", task.taskId}});
          task.killRequested = true;
        }
        ++it;
      }
    }
    for (const StateWrite& write : writes) writeState(write);
    for (auto& task : toKillUnknown) finish(*task, "killed", "killed before it started");
    for (auto& [task, assignment] : toStart) spawn(task, std::move(assignment));
  }

  void reportLoop() {
    auto client = makeClient(15'000);
    std::chrono::milliseconds backoff = 200ms;
    while (true) {
      json updates = json::array();
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return stopping || (outboxDirty && registered); });
        if (stopping) return;
        outboxDirty = false;
        for (const auto& [id, task] : tasks) {
          for (const json& update : task->outbox) {
            if (update["seq"].get<int64_t>() > task->durableSeq) break;  // Not on disk yet.
            updates.push_back(update);
          }
        }
      }
      if (updates.empty()) continue;
      auto response = client->reportTaskStatus(options.nodeId, updates);
      bool delivered = response && response->ok();
      bool refused = response && !response->ok() && response->status >= 400 &&
                     response->status < 500 && response->status != 401 && response->status != 404;
      if (refused) {
        log::error("skiffd refused task status reports; dropping them",
                   {{"error", client::describeServerError(*response).message}});
      }
      if (delivered || refused) {
        std::vector<StateWrite> writes;
        std::unique_lock lock(mutex);
        std::map<std::string, int64_t> sent;
        for (const json& update : updates) {
          int64_t& top = sent[update["taskId"].get<std::string>()];
          top = std::max(top, update["seq"].get<int64_t>());
        }
        for (const auto& [taskId, seq] : sent) {
          auto it = tasks.find(taskId);
          if (it == tasks.end()) continue;
          TaskRecord& task = *it->second;
          std::erase_if(task.outbox, [&](const json& u) { return u["seq"].get<int64_t>() <= seq; });
          if (task.outbox.empty()) task.ackedGeneration = pollGeneration.load();
          writes.push_back(snapshotLocked(task));
          if (!task.outbox.empty()) outboxDirty = true;
        }
        lock.unlock();
        for (const StateWrite& write : writes) writeState(write);
        backoff = 200ms;
        continue;
      }
      if (response && response->status == 404) {
        std::lock_guard lock(mutex);
        registered = false;
        changed.notify_all();
      }
      log::warn("sending task status failed; retrying",
                {{"error", response ? client::describeServerError(*response).message
                                    : response.error().message()}});
      {
        std::lock_guard lock(mutex);
        outboxDirty = true;
      }
      if (!sleepFor(backoff)) return;
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
    }
  }

  // ---- Start-up ----

  // Whether the container of `taskId` may still write output (for the log server's follow).
  bool mayWrite(const std::string& taskId) {
    std::lock_guard lock(mutex);
    auto it = tasks.find(taskId);
    return it != tasks.end() && it->second->phase != Phase::kFinished;
  }

  Status startLogServer() {
    if (options.logListen.empty()) return {};
    auto address = http::parseHostPort(options.logListen);
    if (!address) return std::unexpected(address.error().wrap("log listen address"));
    LogServerOptions logOptions;
    logOptions.host = address->first;
    logOptions.port = address->second;
    logOptions.token = options.joinToken;
    logOptions.containersDir = options.stateDir + "/containers";
    logOptions.mayWrite = [this](const std::string& taskId) { return mayWrite(taskId); };
    auto server = LogServer::start(std::move(logOptions));
    if (!server) return std::unexpected(server.error());
    logServer = std::move(*server);
    std::string host = address->first;
    if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
      host = localAddressToward(options.server);
    } else if (host.find(':') != std::string::npos && host.front() != '[') {
      host = "[" + host + "]";
    }
    logAddress = "http://" + host + ":" + std::to_string(logServer->port());
    return {};
  }

  Status open() {
    std::error_code ec;
    stdfs::create_directories(options.stateDir, ec);
    if (ec) return fail(ErrorCode::kIo, "create " + options.stateDir + ": " + ec.message());
    options.stateDir = stdfs::canonical(options.stateDir, ec).string();
    if (ec) return fail(ErrorCode::kIo, "resolve state dir: " + ec.message());
    tasksDir = options.stateDir + "/tasks";
    rootfsBase = options.stateDir + "/rootfs";
    for (const std::string& dir : {tasksDir, rootfsBase}) {
      stdfs::create_directories(dir, ec);
      if (ec) return fail(ErrorCode::kIo, "create " + dir + ": " + ec.message());
    }

    auto detected = runtime::detectHostCgroupLayout();
    if (!detected) return std::unexpected(detected.error().wrap("cgroups"));
    layout = *detected;
    std::string binary = options.runtimeBinary;
    bool wantsCrun = binary.empty() || stdfs::path(binary).filename() == "crun";
    if (wantsCrun && options.mountHugetlbForCrun && runtime::crunIncompatibility(layout)) {
      if (auto mounted = runtime::mountV1Hierarchy(layout, "hugetlb"); !mounted) {
        log::warn("hybrid cgroup host: cannot mount hugetlb as a v1 hierarchy for crun",
                  {{"error", mounted.error().message()}});
      } else {
        log::info("hybrid cgroup host: mounted hugetlb as a v1 hierarchy for crun",
                  {{"path", runtime::v1MountPointFor(layout, "hugetlb")}});
        auto redetected = runtime::detectHostCgroupLayout();
        if (!redetected) return std::unexpected(redetected.error().wrap("cgroups"));
        layout = *redetected;
      }
    }
    if (options.favorDynamicCgroups) {
      if (auto favored = runtime::favorDynamicCgroupModifications(layout); !favored) {
        log::warn("cannot remount cgroup2 with favordynmods; container starts wait for the kernel",
                  {{"error", favored.error().message()}});
      }
    }
    if (binary.empty()) {
      auto choice = runtime::chooseRuntime(true, layout);
      if (!choice) return std::unexpected(choice.error().wrap("OCI runtime"));
      binary = choice->binary;
      if (!choice->note.empty()) log::info("runtime choice", {{"note", choice->note}});
    }
    log::info("runtime", {{"binary", binary}, {"cgroups", runtime::cgroupModeName(layout.mode)}});
    ociRuntime = std::make_unique<runtime::RuncCompatibleRuntime>(
        runtime::RuncOptions{.binary = binary, .root = options.stateDir + "/runtime"}, runner);
    layerPool =
        std::make_unique<runtime::WritableLayerPool>(runner, options.stateDir + "/layer-pool");
    if (options.diskLimits) SKIFF_TRY_STATUS(layerPool->open(), "writable layer pool");
    supervisor = std::make_unique<runtime::ContainerSupervisor>(
        runtime::SupervisorOptions{.stateDir = options.stateDir + "/containers",
                                   .monitorPath = options.monitorPath,
                                   .initPath = options.initPath,
                                   .cgroupParent = options.cgroupParent,
                                   .precompileSeccomp = stdfs::path(binary).filename() == "crun"},
        *ociRuntime, runner, layout);

    image::RegistryClientOptions registryOptions;
    registryOptions.insecureRegistries = options.insecureRegistries;
    image::ImageStoreOptions storeOptions;
    storeOptions.root = options.stateDir + "/images";
    storeOptions.diskBudgetBytes = options.imageDiskBudgetBytes;
    auto store = image::ImageStore::open(
        storeOptions, std::make_shared<image::RegistryClient>(std::move(registryOptions)));
    if (!store) return std::unexpected(store.error().wrap("image store"));
    images = std::move(*store);
    if (options.networking) {
      auto net = network::NetworkManager::createDefault({.stateDir = options.stateDir,
                                                         .server = options.server,
                                                         .token = options.joinToken,
                                                         .nodeId = options.nodeId});
      if (!net) return std::unexpected(net.error().wrap("networking"));
      network = std::move(*net);
      auto identity = std::make_shared<metadata::SkiffdIdentityProvider>(
          options.server, options.joinToken, SystemClock::instance());
      auto proxy = metadata::MetadataProxy::create({}, std::move(identity));
      if (!proxy) return std::unexpected(proxy.error().wrap("metadata proxy"));
      metadataProxy = std::move(*proxy);
    }
    gpuDevices = detectGpus();
    if (static_cast<int64_t>(gpuDevices.size()) > options.resources.gpu) {
      gpuDevices.resize(static_cast<size_t>(std::max<int64_t>(options.resources.gpu, 0)));
    }
    return {};
  }

  Status recover() {
    SKIFF_TRY_STATUS(loadRecords(), "task records");
    auto adopted = supervisor->adopt();
    if (!adopted) return std::unexpected(adopted.error().wrap("adopt containers"));
    std::set<std::string> containers(adopted->begin(), adopted->end());
    std::vector<std::shared_ptr<TaskRecord>> list;
    {
      std::lock_guard lock(mutex);
      for (const auto& [id, task] : tasks) list.push_back(task);
    }
    std::set<std::string> live;
    for (auto& task : list) {
      if (task->phase == Phase::kFinished) continue;
      if (containers.contains(task->taskId)) {
        log::info("re-adopting container", {{"taskId", task->taskId}});
        if (task->phase == Phase::kLaunching) {
          setPhase(*task, Phase::kRunning);
          report(*task, "Started");
        }
        live.insert(task->taskId);
        if (metadataProxy && !task->metadata.is_null() && !task->netnsPath.empty()) {
          auto served = metadataProxy->addTask(metadata::taskMetadataFromJson(task->metadata),
                                               task->netnsPath);
          if (!served) {
            log::warn("metadata proxy for a re-adopted container",
                      {{"taskId", task->taskId}, {"error", served.error().message()}});
          }
        }
        spawn(task, json());
      } else {
        cleanupRootfs(*task);
        finish(*task, "transientSystemError", "the agent restarted before the container started");
      }
    }
    if (network) network->keepOnly(live);
    // Exited containers of finished tasks (or of tasks no longer known) join the retention queue
    // in exit order; the watch threads add the others when they report them.
    std::vector<std::pair<int64_t, std::string>> exited;
    for (const std::string& id : containers) {
      if (live.contains(id)) continue;
      auto status = supervisor->poll(id);
      if (status && *status) exited.emplace_back((*status)->finishedAtMs, id);
    }
    std::sort(exited.begin(), exited.end());
    for (const auto& [finishedAtMs, id] : exited) retire(id);
    return {};
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() {
  stop();
}

Result<std::unique_ptr<Agent>> Agent::create(AgentOptions options) {
  if (options.nodeId.empty()) return fail(ErrorCode::kInvalidArgument, "node id is required");
  if (options.monitorPath.empty()) {
    return fail(ErrorCode::kInvalidArgument, "the skiff-monitor path is required");
  }
  if (options.stateDir.empty() || options.stateDir.front() != '/') {
    return fail(ErrorCode::kInvalidArgument, "the state directory must be an absolute path");
  }
  if (!(options.resources.cpu > 0) || options.resources.memoryMB <= 0) {
    return fail(ErrorCode::kInvalidArgument, "cpu and memory must be greater than 0");
  }
  return std::unique_ptr<Agent>(new Agent(std::make_unique<Impl>(std::move(options))));
}

Status Agent::start() {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    if (impl.started) return fail(ErrorCode::kFailedPrecondition, "agent already started");
    impl.started = true;
  }
  SKIFF_TRY_STATUS(impl.open(), "agent");
  SKIFF_TRY_STATUS(impl.recover(), "agent recovery");
  SKIFF_TRY_STATUS(impl.startLogServer(), "agent");
  impl.threads.emplace_back([&impl] { impl.heartbeatLoop(); });
  impl.threads.emplace_back([&impl] { impl.pollLoop(); });
  impl.threads.emplace_back([&impl] { impl.reportLoop(); });
  log::info("agent started", {{"nodeId", impl.options.nodeId},
                              {"stateDir", impl.options.stateDir},
                              {"server", impl.options.server},
                              {"logAddress", impl.logAddress}});
  return {};
}

void Agent::stop() {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    if (impl.stopping) return;
    impl.stopping = true;
    impl.changed.notify_all();
  }
  if (impl.logServer) impl.logServer->stop();
  for (std::thread& thread : impl.threads) thread.join();
  impl.threads.clear();
  std::unique_lock lock(impl.mutex);
  impl.changed.wait(lock, [&] { return impl.activeWorkers == 0; });
  lock.unlock();
  // Listeners close; containers keep running and a restarted agent serves them again.
  impl.metadataProxy.reset();
  if (impl.network) impl.network->stop();
  // Idle writable layers hold mounts and loop devices that no container uses.
  if (impl.layerPool) impl.layerPool->clear();
}

const std::string& Agent::nodeId() const {
  return impl_->options.nodeId;
}

std::string Agent::logAddress() const {
  return impl_->logAddress;
}

std::string Agent::stdoutPath(const std::string& taskId) const {
  return impl_->options.stateDir + "/containers/" + taskId + "/stdout.log";
}

std::string Agent::stderrPath(const std::string& taskId) const {
  return impl_->options.stateDir + "/containers/" + taskId + "/stderr.log";
}

}  // namespace skiff::agent
