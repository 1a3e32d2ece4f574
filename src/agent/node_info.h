#pragma once

// What a node offers: detected from the host, overridable from the command line so that one
// machine can act as several nodes in tests.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skiff::agent {

struct NodeResources {
  double cpu = 0;
  int64_t memoryMB = 0;
  int64_t diskMB = 0;
  int64_t networkMbps = 0;
  int64_t gpu = 0;
};

struct NodeAttributes {
  std::string zone;
  std::string machineType;
  std::map<std::string, std::string> labels;
};

// The label that holds a node's region (`--label region=...`); the metadata service answers
// `placement/region` with it and `placement/availability-zone` with the zone.
inline constexpr std::string_view kRegionLabel = "region";

// The node's region label, or "" when it has none.
std::string regionOf(const NodeAttributes& attributes);

// Explicit values that replace detected ones.
struct ResourceOverrides {
  std::optional<double> cpu;
  std::optional<int64_t> memoryMB;
  std::optional<int64_t> diskMB;
  std::optional<int64_t> networkMbps;
  std::optional<int64_t> gpu;
};

// CPUs online, capped by the CPU quota of the agent's cgroup (v2 cpu.max, v1 cfs quota) when
// one is set.
double detectCpus();
// MemTotal from /proc/meminfo, in MiB (0 when unreadable).
int64_t detectMemoryMB();
// The size of the filesystem holding `path`, in MiB (0 when statvfs fails).
int64_t detectDiskMB(const std::string& path);
// The indices N of the /dev/nvidiaN character devices under `devDir`, sorted.
std::vector<int> detectGpus(const std::string& devDir = "/dev");

// Detects everything (network defaults to 1000 Mbps) and applies `overrides`.
NodeResources detectResources(const std::string& stateDir, const ResourceOverrides& overrides);

// The hostname, or "node" when it has none.
std::string defaultNodeId();

// skiff-monitor next to the running binary (or in the build tree's agent/runtime/), else
// /usr/local/bin/skiff-monitor.
std::string defaultMonitorPath();

// The registration body of POST /v1/nodes.
nlohmann::json registrationBody(const std::string& nodeId, const NodeResources& resources,
                                const NodeAttributes& attributes);

}  // namespace skiff::agent
