#include "agent/node_info.h"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace skiff::agent {
namespace {

std::string readSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The CPU quota of the agent's own cgroup in cores, when one is set.
std::optional<double> cgroupCpuQuota() {
  // v2: "max 100000" or "50000 100000".
  std::istringstream v2(readSmallFile("/sys/fs/cgroup/cpu.max"));
  std::string quota;
  int64_t period = 0;
  if (v2 >> quota >> period && quota != "max" && period > 0) {
    try {
      return static_cast<double>(std::stoll(quota)) / static_cast<double>(period);
    } catch (...) {
      return std::nullopt;
    }
  }
  for (const char* dir : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
    std::istringstream q(readSmallFile(std::string(dir) + "/cpu.cfs_quota_us"));
    std::istringstream p(readSmallFile(std::string(dir) + "/cpu.cfs_period_us"));
    int64_t quotaUs = 0;
    int64_t periodUs = 0;
    if (q >> quotaUs && p >> periodUs && quotaUs > 0 && periodUs > 0) {
      return static_cast<double>(quotaUs) / static_cast<double>(periodUs);
    }
  }
  return std::nullopt;
}

}  // namespace

double detectCpus() {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  double cpus = online > 0 ? static_cast<double>(online) : 1.0;
  if (auto quota = cgroupCpuQuota(); quota && *quota > 0) cpus = std::min(cpus, *quota);
  return cpus;
}

int64_t detectMemoryMB() {
  std::istringstream in(readSmallFile("/proc/meminfo"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemTotal:", 0) == 0) {
      std::istringstream fields(line.substr(9));
      int64_t kb = 0;
      if (fields >> kb) return kb / 1024;
    }
  }
  return 0;
}

int64_t detectDiskMB(const std::string& path) {
  struct statvfs info {};
  if (statvfs(path.c_str(), &info) != 0) return 0;
  return static_cast<int64_t>(info.f_blocks) * static_cast<int64_t>(info.f_frsize) / (1 << 20);
}

std::vector<int> detectGpus(const std::string& devDir) {
  std::vector<int> gpus;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(devDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() <= 6 || name.rfind("nvidia", 0) != 0) continue;
    std::string digits = name.substr(6);
    if (!std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
      continue;
    struct stat st {};
    if (stat(entry.path().c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) continue;
    if (digits.size() > 4) continue;
    gpus.push_back(std::stoi(digits));
  }
  std::sort(gpus.begin(), gpus.end());
  return gpus;
}

NodeResources detectResources(const std::string& stateDir, const ResourceOverrides& overrides) {
  NodeResources r;
  r.cpu = overrides.cpu ? *overrides.cpu : detectCpus();
  r.memoryMB = overrides.memoryMB ? *overrides.memoryMB : detectMemoryMB();
  r.diskMB = overrides.diskMB ? *overrides.diskMB : detectDiskMB(stateDir);
  r.networkMbps = overrides.networkMbps ? *overrides.networkMbps : 1000;
  r.gpu = overrides.gpu ? *overrides.gpu : static_cast<int64_t>(detectGpus().size());
  return r;
}

std::string defaultNodeId() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "node";
  return name;
}

std::string defaultMonitorPath() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const char* candidate :
         {"skiff-monitor", "runtime/skiff-monitor", "../agent/runtime/skiff-monitor"}) {
      auto path = self.parent_path() / candidate;
      if (access(path.c_str(), X_OK) == 0) return path.lexically_normal().string();
    }
  }
  return "/usr/local/bin/skiff-monitor";
}

std::string regionOf(const NodeAttributes& attributes) {
  auto it = attributes.labels.find(std::string(kRegionLabel));
  return it == attributes.labels.end() ? std::string() : it->second;
}

nlohmann::json registrationBody(const std::string& nodeId, const NodeResources& resources,
                                const NodeAttributes& attributes) {
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [key, value] : attributes.labels) labels[key] = value;
  nlohmann::json attrs = {{"labels", labels}};
  if (!attributes.zone.empty()) attrs["zone"] = attributes.zone;
  if (!attributes.machineType.empty()) attrs["machineType"] = attributes.machineType;
  return {{"id", nodeId},
          {"resources",
           {{"cpu", resources.cpu},
            {"memoryMB", resources.memoryMB},
            {"diskMB", resources.diskMB},
            {"networkMbps", resources.networkMbps},
            {"gpu", resources.gpu}}},
          {"attributes", attrs}};
}

}  // namespace skiff::agent
