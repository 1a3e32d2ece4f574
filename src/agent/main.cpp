// skiff-agent: the node agent. It registers a node with skiffd, receives assignments and runs
// them as containers (see agent.h and docs/agent.md). This file only parses flags and waits for
// SIGINT/SIGTERM; containers keep running when the agent exits.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "agent/instance.h"
#include "agent/node_info.h"
#include "client/address.h"
#include "common/log.h"

int main(int argc, char** argv) {
  // One thread per task: glibc would give each its own malloc arena (up to 8 per core), and the
  // arenas' touched pages made the agent's RSS with 100 containers 57 MB instead of 33 MB.
  mallopt(M_ARENA_MAX, 2);
  std::string server = "http://127.0.0.1:7070";
  std::string joinTokenFile = "/var/lib/skiff/join.token";
  std::string runtimeName = "auto";
  std::string logLevel = "info";
  std::vector<std::string> labels;
  skiff::agent::AgentOptions options;
  options.nodeId = skiff::agent::defaultNodeId();
  options.monitorPath = skiff::agent::defaultMonitorPath();
  skiff::agent::ResourceOverrides overrides;
  double cpu = 0;
  int64_t memoryMB = 0, diskMB = 0, networkMbps = 0, gpu = 0;
  int64_t heartbeatMs = options.heartbeatInterval.count();
  int64_t pollWaitMs = options.pollWait.count();
  int64_t stopGraceSec = options.stopGrace.count() / 1000;
  bool noDiskLimits = false;

  CLI::App app{"skiff-agent: the Skiff node agent"};
  app.add_option("--server", server, "Address of skiffd's REST API");
  app.add_option("--join-token-file", joinTokenFile, "File holding skiffd's join token");
  app.add_option("--node-id", options.nodeId, "This node's id (default: the hostname)");
  auto* stateDirOpt =
      app.add_option("--state-dir", options.stateDir,
                     "Directory for images, containers, task state (default: "
                     "/var/lib/skiff-agent, or /var/lib/skiff-agent-NAME with --instance NAME)");
  app.add_option("--instance", options.instance,
                 "Instance name: names the agent's nftables table (skiff-NAME), host links, "
                 "cgroup parent (/skiff-NAME) and default state directory, so several agents "
                 "can share a host");
  auto* cpuOpt = app.add_option("--cpu", cpu, "Advertised cores (default: detected)");
  auto* memOpt = app.add_option("--memory-mb", memoryMB, "Advertised memory in MiB");
  auto* diskOpt = app.add_option("--disk-mb", diskMB, "Advertised disk in MiB");
  auto* netOpt = app.add_option("--network-mbps", networkMbps, "Advertised bandwidth (Mbps)");
  auto* gpuOpt = app.add_option("--gpu", gpu, "Advertised GPUs (default: /dev/nvidiaN count)");
  app.add_option("--zone", options.attributes.zone, "Zone attribute");
  std::string region;
  app.add_option("--region", region, "Region (sets the label region)");
  app.add_option("--machine-type", options.attributes.machineType, "Machine type attribute");
  app.add_option("--label", labels, "Label k=v (repeatable)");
  app.add_option("--runtime", runtimeName, "OCI runtime: runc, crun or auto")
      ->check(CLI::IsMember({"auto", "runc", "crun"}));
  app.add_option("--insecure-registry", options.insecureRegistries,
                 "HOST:PORT of a registry reachable over plain HTTP (repeatable)");
  int64_t imageBudgetMb = options.imageDiskBudgetBytes >> 20;
  app.add_option("--image-disk-budget-mb", imageBudgetMb,
                 "Unused images are removed, oldest use first, above this size");
  app.add_option("--keep-finished-containers", options.keepFinishedContainers,
                 "Exited containers whose logs are kept; older ones are deleted");
  app.add_option("--monitor", options.monitorPath, "The skiff-monitor binary");
  app.add_option("--init", options.initPath, "Static init run as each container's pid 1");
  app.add_option("--cgroup-parent", options.cgroupParent,
                 "Parent cgroup of the containers (default: /skiff, or /skiff-NAME with "
                 "--instance NAME)");
  app.add_option("--heartbeat-ms", heartbeatMs, "Milliseconds between heartbeats");
  app.add_option("--poll-wait-ms", pollWaitMs, "waitMs of the assignments long poll");
  app.add_option("--stop-grace-sec", stopGraceSec, "Seconds between SIGTERM and SIGKILL");
  app.add_flag("--no-disk-limits", noDiskLimits, "Do not give containers a size-limited layer");
  bool noNetwork = false;
  app.add_flag("--no-network", noNetwork,
               "Containers get a network namespace with loopback only: no address, security "
               "groups, shaping or metadata proxy");
  bool keepHybridCgroups = false;
  app.add_flag("--keep-hybrid-cgroups", keepHybridCgroups,
               "On a hybrid cgroup host, do not mount hugetlb as a v1 hierarchy (crun then "
               "cannot run and runc is used)");
  bool keepCgroupMountOptions = false;
  app.add_flag("--keep-cgroup-mount-options", keepCgroupMountOptions,
               "Do not remount the host's cgroup2 mount with favordynmods (which saves each "
               "container start a ~7 ms wait in the kernel)");
  app.add_option("--log-listen", options.logListen,
                 "HOST:PORT of the log server skiffd reads task logs from (port 0: any free one)");
  app.add_option("--log-level", logLevel, "debug, info, warn or error");
  app.set_version_flag("--version", SKIFF_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  skiff::log::init("agent", skiff::log::parseLevel(logLevel, skiff::log::Level::kInfo));
  if (auto valid = skiff::agent::validateInstance(options.instance); !valid) {
    std::fprintf(stderr, "skiff-agent: --instance: %s\n", valid.error().message().c_str());
    return 2;
  }
  if (stateDirOpt->count() == 0) options.stateDir = skiff::agent::defaultStateDir(options.instance);
  options.imageDiskBudgetBytes = imageBudgetMb << 20;
  options.mountHugetlbForCrun = !keepHybridCgroups;
  options.favorDynamicCgroups = !keepCgroupMountOptions;
  options.networking = !noNetwork;

  if (cpuOpt->count() > 0) overrides.cpu = cpu;
  if (memOpt->count() > 0) overrides.memoryMB = memoryMB;
  if (diskOpt->count() > 0) overrides.diskMB = diskMB;
  if (netOpt->count() > 0) overrides.networkMbps = networkMbps;
  if (gpuOpt->count() > 0) overrides.gpu = gpu;
  for (const std::string& label : labels) {
    auto eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fputs("skiff-agent: --label wants KEY=VALUE\n", stderr);
      return 2;
    }
    options.attributes.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  if (!region.empty()) options.attributes.labels[std::string(skiff::agent::kRegionLabel)] = region;
  auto address = skiff::client::normalizeAddress(server);
  if (!address) {
    skiff::log::error("bad --server", {{"error", address.error().message()}});
    return 2;
  }
  options.server = *address;
  auto token = skiff::client::readTokenFile(joinTokenFile);
  if (!token) {
    skiff::log::error("cannot read the join token", {{"error", token.error().message()}});
    return 2;
  }
  options.joinToken = *token;
  if (runtimeName == "runc") options.runtimeBinary = "/usr/sbin/runc";
  if (runtimeName == "crun") options.runtimeBinary = "/usr/bin/crun";
  options.heartbeatInterval = std::chrono::milliseconds(std::max<int64_t>(heartbeatMs, 100));
  options.pollWait = std::chrono::milliseconds(std::clamp<int64_t>(pollWaitMs, 0, 300'000));
  options.stopGrace = std::chrono::seconds(std::max<int64_t>(stopGraceSec, 0));
  options.diskLimits = !noDiskLimits;
  std::error_code ec;
  std::filesystem::create_directories(options.stateDir, ec);
  options.resources = skiff::agent::detectResources(options.stateDir, overrides);

  // Block the stop signals before any thread starts, so only sigwait sees them.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto agent = skiff::agent::Agent::create(std::move(options));
  if (!agent) {
    skiff::log::error("bad options", {{"error", agent.error().message()}});
    return 2;
  }
  if (auto started = (*agent)->start(); !started) {
    skiff::log::error("agent failed to start", {{"error", started.error().message()}});
    return 1;
  }
  int received = 0;
  sigwait(&stopSignals, &received);
  skiff::log::info("stopping; containers keep running", {{"signal", received}});
  (*agent)->stop();
  return 0;
}
