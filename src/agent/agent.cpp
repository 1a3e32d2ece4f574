#include "agent/agent.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "agent/agent_impl.h"
#include "agent/container_env.h"
#include "agent/image/image_store.h"
#include "agent/image/registry_client.h"
#include "agent/instance.h"
#include "agent/metadata/identity_provider.h"
#include "agent/metadata/task_metadata.h"
#include "agent/runtime/supervisor.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/log.h"

namespace skiff::agent {

namespace stdfs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

bool Agent::Impl::mayWrite(const std::string& taskId) {
  std::lock_guard lock(mutex);
  auto it = tasks.find(taskId);
  return it != tasks.end() && it->second->phase != Phase::kFinished;
}

Status Agent::Impl::startLogServer() {
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

Status Agent::Impl::open() {
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

  containers = deps.runtime;
  if (!containers) SKIFF_TRY_STATUS(openContainerRuntime(), "container runtime");
  // The writable layers run their tools through the process runner whatever the runtime.
  layerPool =
      std::make_unique<runtime::WritableLayerPool>(*runner, options.stateDir + "/layer-pool");
  if (options.diskLimits) SKIFF_TRY_STATUS(layerPool->open(), "writable layer pool");

  images = deps.images;
  if (!images) {
    std::shared_ptr<image::Registry> registry = deps.registry;
    if (!registry) {
      image::RegistryClientOptions registryOptions;
      registryOptions.insecureRegistries = options.insecureRegistries;
      registry = std::make_shared<image::RegistryClient>(std::move(registryOptions));
    }
    image::ImageStoreOptions storeOptions;
    storeOptions.root = options.stateDir + "/images";
    storeOptions.diskBudgetBytes = options.imageDiskBudgetBytes;
    auto store = image::ImageStore::open(storeOptions, std::move(registry));
    if (!store) return std::unexpected(store.error().wrap("image store"));
    images = std::move(*store);
  }
  if (options.networking) {
    auto net = network::NetworkManager::create({.stateDir = options.stateDir,
                                                .server = options.server,
                                                .token = options.joinToken,
                                                .nodeId = options.nodeId,
                                                .instance = options.instance,
                                                .pollWait = options.pollWait,
                                                .clock = clock},
                                               deps.networkDriver, deps.firewall);
    if (!net) return std::unexpected(net.error().wrap("networking"));
    network = std::move(*net);
    std::shared_ptr<metadata::IdentityProvider> identity = deps.identity;
    if (!identity) {
      identity = std::make_shared<metadata::SkiffdIdentityProvider>(options.server,
                                                                    options.joinToken, *clock);
    }
    metadata::MetadataProxyOptions proxyOptions;
    proxyOptions.listen = deps.metadataListener;
    auto proxy =
        metadata::MetadataProxy::create(std::move(proxyOptions), std::move(identity), *clock);
    if (!proxy) return std::unexpected(proxy.error().wrap("metadata proxy"));
    metadataProxy = std::move(*proxy);
  }
  gpuDevices = detectGpus();
  if (static_cast<int64_t>(gpuDevices.size()) > options.resources.gpu) {
    gpuDevices.resize(static_cast<size_t>(std::max<int64_t>(options.resources.gpu, 0)));
  }
  return {};
}

Status Agent::Impl::openContainerRuntime() {
  auto detected = runtime::detectHostCgroupLayout();
  if (!detected) return std::unexpected(detected.error().wrap("cgroups"));
  runtime::CgroupLayout layout = *detected;
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
      runtime::RuncOptions{.binary = binary, .root = options.stateDir + "/runtime"}, *runner);
  containers = std::make_shared<runtime::ContainerSupervisor>(
      runtime::SupervisorOptions{.stateDir = options.stateDir + "/containers",
                                 .monitorPath = options.monitorPath,
                                 .initPath = options.initPath,
                                 .cgroupParent = options.cgroupParent,
                                 .precompileSeccomp = stdfs::path(binary).filename() == "crun"},
      *ociRuntime, *runner, layout);
  return {};
}

Status Agent::Impl::recover() {
  SKIFF_TRY_STATUS(loadRecords(), "task records");
  auto adopted = containers->adopt();
  if (!adopted) return std::unexpected(adopted.error().wrap("adopt containers"));
  std::set<std::string> adoptedIds(adopted->begin(), adopted->end());
  std::vector<std::shared_ptr<TaskRecord>> list;
  {
    std::lock_guard lock(mutex);
    for (const auto& [id, task] : tasks) list.push_back(task);
  }
  std::set<std::string> live;
  for (auto& task : list) {
    if (task->phase == Phase::kFinished) continue;
    if (adoptedIds.contains(task->taskId)) {
      log::info("re-adopting container", {{"taskId", task->taskId}});
      if (task->phase == Phase::kLaunching) {
        setPhase(*task, Phase::kRunning);
        report(*task, "Started");
      }
      live.insert(task->taskId);
      if (metadataProxy && !task->metadata.is_null() && !task->netnsPath.empty()) {
        auto served =
            metadataProxy->addTask(metadata::taskMetadataFromJson(task->metadata), task->netnsPath);
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
  for (const std::string& id : adoptedIds) {
    if (live.contains(id)) continue;
    auto status = containers->poll(id);
    if (status && *status) exited.emplace_back((*status)->finishedAtMs, id);
  }
  std::sort(exited.begin(), exited.end());
  for (const auto& [finishedAtMs, id] : exited) retire(id);
  return {};
}

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Agent::~Agent() {
  stop();
}

Result<std::unique_ptr<Agent>> Agent::create(AgentOptions options, AgentDeps deps) {
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
  SKIFF_TRY_STATUS(validateInstance(options.instance), "agent");
  if (options.cgroupParent.empty()) options.cgroupParent = defaultCgroupParent(options.instance);
  return std::unique_ptr<Agent>(
      new Agent(std::make_unique<Impl>(std::move(options), std::move(deps))));
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
