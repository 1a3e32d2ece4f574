#include "agent/runtime/cgroup.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

namespace skiff::agent::runtime {
namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescapeMountPath(std::string_view path) {
  std::string out;
  auto isOct = [](char c) { return c >= '0' && c <= '7'; };
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '\\' && i + 3 < path.size() && isOct(path[i + 1]) && isOct(path[i + 2]) &&
        isOct(path[i + 3])) {
      out.push_back(static_cast<char>((path[i + 1] - '0') * 64 + (path[i + 2] - '0') * 8 +
                                      (path[i + 3] - '0')));
      i += 3;
      continue;
    }
    out.push_back(path[i]);
  }
  return out;
}

std::string joinPath(std::string_view base, std::string_view rel) {
  std::string out(base);
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (rel.empty() || rel.front() != '/') out.push_back('/');
  out.append(rel);
  return out;
}

// Controllers that are options of a v1 mount rather than mount flags.
const std::set<std::string_view>& knownV1Controllers() {
  static const std::set<std::string_view> names = {
      "cpu",  "cpuacct", "cpuset",  "memory",   "devices",    "freezer", "blkio",
      "pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",    "misc"};
  return names;
}

}  // namespace

std::string_view cgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kV1:
      return "v1";
    case CgroupMode::kHybrid:
      return "hybrid";
    case CgroupMode::kV2:
      return "v2";
  }
  return "unknown";
}

Result<CgroupLayout> detectCgroupLayout(std::string_view mountinfo) {
  CgroupLayout layout;
  for (std::string_view line : split(mountinfo, '\n')) {
    if (line.empty()) continue;
    // Fields before " - " are variable in number (optional fields); fstype follows it.
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    std::vector<std::string_view> pre = split(line.substr(0, dash), ' ');
    std::vector<std::string_view> post = split(line.substr(dash + 3), ' ');
    if (pre.size() < 5 || post.size() < 3) continue;
    std::string mountPoint = unescapeMountPath(pre[4]);
    std::string_view fsType = post[0];
    if (fsType == "cgroup2") {
      // The first cgroup2 mount wins; bind mounts of it elsewhere do not matter.
      if (layout.v2Mount.empty()) layout.v2Mount = mountPoint;
    } else if (fsType == "cgroup") {
      for (std::string_view opt : split(post[2], ',')) {
        if (knownV1Controllers().contains(opt) || opt.starts_with("name=")) {
          layout.v1Mounts.emplace(std::string(opt), mountPoint);
        }
      }
    }
  }
  bool hasV1 = false;
  for (const auto& [name, path] : layout.v1Mounts) {
    if (!name.starts_with("name=")) hasV1 = true;
  }
  if (hasV1 && !layout.v2Mount.empty()) {
    layout.mode = CgroupMode::kHybrid;
  } else if (hasV1) {
    layout.mode = CgroupMode::kV1;
  } else if (!layout.v2Mount.empty()) {
    layout.mode = CgroupMode::kV2;
  } else {
    return fail(ErrorCode::kFailedPrecondition, "no cgroup controller is mounted on this host");
  }
  return layout;
}

Result<CgroupLayout> detectHostCgroupLayout() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return std::unexpected(errnoError("open /proc/self/mountinfo", errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return detectCgroupLayout(buffer.str());
}

std::optional<std::string> crunIncompatibility(const CgroupLayout& layout) {
  if (layout.mode != CgroupMode::kHybrid) return std::nullopt;
  if (layout.hasV1Controller("hugetlb")) return std::nullopt;
  return "hybrid cgroup host without a v1 hugetlb hierarchy (crun: \"cgroups in hybrid mode not "
         "supported\")";
}

std::string v1MountPointFor(const CgroupLayout& layout, std::string_view controller) {
  for (const auto& [name, mountPoint] : layout.v1Mounts) {
    if (name.starts_with("name=")) continue;
    size_t slash = mountPoint.rfind('/');
    if (slash == std::string::npos || slash == 0) continue;
    return mountPoint.substr(0, slash) + "/" + std::string(controller);
  }
  return "";
}

Status mountV1Hierarchy(const CgroupLayout& layout, std::string_view controller) {
  if (!knownV1Controllers().contains(controller)) {
    return fail(ErrorCode::kInvalidArgument,
                "unknown cgroup controller " + std::string(controller));
  }
  std::string target = v1MountPointFor(layout, controller);
  if (target.empty()) {
    return fail(ErrorCode::kFailedPrecondition, "no v1 cgroup hierarchy to mount beside");
  }
  if (mkdir(target.c_str(), 0755) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("mkdir " + target, errno));
  }
  std::string data(controller);
  if (mount("cgroup", target.c_str(), "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, data.c_str()) !=
      0) {
    int err = errno;
    rmdir(target.c_str());
    return fail(ErrorCode::kFailedPrecondition,
                "mount the " + data + " cgroup hierarchy at " + target + ": " + strerror(err));
  }
  return {};
}

Result<std::string> oomCounterFile(const CgroupLayout& layout, std::string_view relPath) {
  if (layout.mode == CgroupMode::kV2) {
    return joinPath(joinPath(layout.v2Mount, relPath), "memory.events");
  }
  auto it = layout.v1Mounts.find("memory");
  if (it == layout.v1Mounts.end()) {
    return fail(ErrorCode::kFailedPrecondition, "no v1 memory hierarchy is mounted");
  }
  return joinPath(joinPath(it->second, relPath), "memory.oom_control");
}

std::optional<std::string> favorDynmodsRemountData(std::string_view superOptions) {
  std::string data;
  for (std::string_view option : split(superOptions, ',')) {
    if (option == "favordynmods") return std::nullopt;
    // Read-only or read-write is the mount's flag, not superblock data.
    if (option.empty() || option == "rw" || option == "ro") continue;
    if (!data.empty()) data += ',';
    data += option;
  }
  if (!data.empty()) data += ',';
  return data + "favordynmods";
}

Status favorDynamicCgroupModifications(const CgroupLayout& layout) {
  if (layout.v2Mount.empty()) return {};
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return std::unexpected(errnoError("open /proc/self/mountinfo", errno));
  for (std::string line; std::getline(in, line);) {
    // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
    std::vector<std::string_view> fields = split(line, ' ');
    if (fields.size() < 10 || unescapeMountPath(fields[4]) != layout.v2Mount) continue;
    size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 3 >= fields.size() || fields[dash + 1] != "cgroup2") continue;
    auto data = favorDynmodsRemountData(fields[dash + 3]);
    if (!data) return {};
    unsigned long flags = MS_REMOUNT;
    for (std::string_view option : split(fields[5], ',')) {
      if (option == "ro") flags |= MS_RDONLY;
      if (option == "nosuid") flags |= MS_NOSUID;
      if (option == "nodev") flags |= MS_NODEV;
      if (option == "noexec") flags |= MS_NOEXEC;
      if (option == "relatime") flags |= MS_RELATIME;
    }
    if (::mount(nullptr, layout.v2Mount.c_str(), nullptr, flags, data->c_str()) != 0) {
      return fail(ErrorCode::kFailedPrecondition,
                  "remount " + layout.v2Mount + " with favordynmods: " + std::strerror(errno));
    }
    return {};
  }
  return fail(ErrorCode::kNotFound, "no cgroup2 mount at " + layout.v2Mount);
}

std::optional<uint64_t> parseOomKillCount(std::string_view text) {
  return parseKeyedCounter(text, "oom_kill");
}

std::optional<uint64_t> parseKeyedCounter(std::string_view text, std::string_view key) {
  for (std::string_view line : split(text, '\n')) {
    if (line.size() <= key.size() || !line.starts_with(key) || line[key.size()] != ' ') continue;
    std::string_view digits = line.substr(key.size() + 1);
    uint64_t value = 0;
    auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

Result<uint64_t> readCpuUsageNs(const CgroupLayout& layout, std::string_view relPath) {
  std::string path;
  if (auto it = layout.v1Mounts.find("cpuacct"); it != layout.v1Mounts.end()) {
    path = joinPath(joinPath(it->second, relPath), "cpuacct.usage");
  } else if (!layout.v2Mount.empty()) {
    path = joinPath(joinPath(layout.v2Mount, relPath), "cpu.stat");
  } else {
    return fail(ErrorCode::kFailedPrecondition, "the host has no cpuacct hierarchy");
  }
  std::ifstream in(path);
  if (!in) {
    return fail(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                "cannot read " + path + ": " + std::strerror(errno));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (path.ends_with("cpu.stat")) {
    auto usec = parseKeyedCounter(text, "usage_usec");
    if (!usec) return fail(ErrorCode::kIo, path + " has no usage_usec line");
    return *usec * 1000;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  uint64_t nanos = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), nanos);
  if (error != std::errc() || end != text.data() + text.size()) {
    return fail(ErrorCode::kIo, path + " does not hold a number");
  }
  return nanos;
}

std::vector<std::string> cgroupDirs(const CgroupLayout& layout, std::string_view relPath) {
  std::set<std::string> mounts;
  for (const auto& [name, path] : layout.v1Mounts) mounts.insert(path);
  if (!layout.v2Mount.empty()) mounts.insert(layout.v2Mount);
  std::vector<std::string> out;
  for (const std::string& mount : mounts) out.push_back(joinPath(mount, relPath));
  return out;
}

namespace {
void removeDirTree(const std::string& dir) {
  // Cgroup directories are removed with rmdir, children first; their files cannot be unlinked.
  if (DIR* d = opendir(dir.c_str())) {
    std::vector<std::string> children;
    while (dirent* entry = readdir(d)) {
      std::string_view name = entry->d_name;
      if (entry->d_type == DT_DIR && name != "." && name != "..") {
        children.push_back(joinPath(dir, name));
      }
    }
    closedir(d);
    for (const std::string& child : children) removeDirTree(child);
    rmdir(dir.c_str());
  }
}
}  // namespace

void removeCgroupTree(const CgroupLayout& layout, std::string_view relPath) {
  if (relPath.empty() || relPath == "/") return;  // Never the root cgroup.
  for (const std::string& dir : cgroupDirs(layout, relPath)) removeDirTree(dir);
}

}  // namespace skiff::agent::runtime
