#include <chrono>
#include <filesystem>
#include <future>
#include <system_error>

#include "agent/agent_impl.h"
#include "agent/container_env.h"
#include "agent/image/fs_util.h"
#include "agent/image/registry_client.h"
#include "agent/metadata/task_metadata.h"
#include "api/job.h"
#include "common/log.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

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

}  // namespace

void Agent::Impl::spawn(std::shared_ptr<TaskRecord> task, json assignment) {
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

bool Agent::Impl::killRequested(const TaskRecord& task) {
  std::lock_guard lock(mutex);
  return task.killRequested;
}

void Agent::Impl::cleanupRootfs(const TaskRecord& task) {
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

void Agent::Impl::maybeCollectImages() {
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

void Agent::Impl::runTask(TaskRecord& task, const json& assignment) {
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
    log::warn("image pull failed", {{"taskId", task.taskId}, {"error", pulled.error().message()}});
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
    if (!layer) return failStart("localSystemError", "writable layer: " + layer.error().message());
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
    if (auto served =
            serveMetadata(task, assignment, address, attached->netnsPath, pulled->pinnedReference);
        !served) {
      return failStart("transientSystemError", "metadata proxy: " + served.error().message());
    }
  }

  if (killRequested(task)) return failStart("killed", "killed before it started");
  lap("metadataMs");
  setPhase(task, Phase::kLaunching);
  lap("launchingStateMs");
  if (auto started = containers->start(cc); !started) {
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
    json checks = {{"descriptor", assignment["job"].value("descriptor", json())}, {"ip", address}};
    if (auto saved = image::fs::writeFileAtomic(checksPath(task.taskId), checks.dump(),
                                                image::fs::Durability::kProcessCrash);
        !saved) {
      log::warn("cannot keep health checks",
                {{"taskId", task.taskId}, {"error", saved.error().message()}});
    }
  }
  watch(task);
}

Status Agent::Impl::serveMetadata(TaskRecord& task, const json& assignment,
                                  const std::string& address, const std::string& netnsPath,
                                  const std::string& pinnedImage) {
  if (!metadataProxy) return {};
  metadata::TaskMetadata md = metadata::taskMetadataFromAssignment(
      assignment, address, options.nodeId, options.attributes.zone, regionOf(options.attributes),
      options.attributes.machineType, clock->nowMs());
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

}  // namespace skiff::agent
