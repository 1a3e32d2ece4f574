#pragma once

// Cgroup host layout detection and the few cgroup reads the runtime needs.
//
// Hosts come in three shapes, told apart from /proc/self/mountinfo alone:
//   - kV2:     one cgroup2 mount (usually /sys/fs/cgroup) holding every controller.
//   - kHybrid: v1 controller hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
//              crun refuses such hosts ("cgroups in hybrid mode not supported") unless every
//              controller it needs, hugetlb included, is mounted as a v1 hierarchy; runc accepts
//              them and uses the v1 hierarchies.
//   - kV1:     v1 hierarchies only.
// Detection is a pure function of the mountinfo text so tests can feed fake hosts.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace skiff::agent::runtime {

enum class CgroupMode { kV1, kHybrid, kV2 };

std::string_view cgroupModeName(CgroupMode mode);

struct CgroupLayout {
  CgroupMode mode = CgroupMode::kV1;
  // v1 controller name ("memory", "cpu", "hugetlb", "name=systemd", ...) -> mount point.
  // A co-mounted hierarchy ("cpu,cpuacct") is listed under each of its controllers.
  std::map<std::string, std::string> v1Mounts;
  // The cgroup2 mount point, empty when there is none.
  std::string v2Mount;

  bool hasV1Controller(const std::string& name) const { return v1Mounts.contains(name); }
};

// Parses mountinfo text (the format of proc(5) /proc/self/mountinfo). A host with no cgroup
// mount at all is an error (kFailedPrecondition).
Result<CgroupLayout> detectCgroupLayout(std::string_view mountinfo);

// Reads /proc/self/mountinfo and detects.
Result<CgroupLayout> detectHostCgroupLayout();

// Moving a process into a cgroup (what the runtime does for every container) waits for an RCU
// grace period whenever no move happened in the last moments: 7 ms here, on each start of an
// otherwise idle node. The cgroup2 mount option `favordynmods` (Linux 6.0+) keeps the lock behind
// it in its writer-friendly state, at a small cost to fork and exit (a shared counter instead of a
// per-CPU one), and moves take 0.2 ms.
//
// The data for remounting a cgroup2 mount whose superblock options are `superOptions` (the
// mountinfo field: "rw,nsdelegate,memory_recursiveprot") with favordynmods added and its other
// options kept; nullopt when it has it already.
std::optional<std::string> favorDynmodsRemountData(std::string_view superOptions);

// Remounts the host's cgroup2 mount (the only one on a v2 host, `unified` on a hybrid one) with
// favordynmods. Nothing to do on a v1 host or when it is set; kFailedPrecondition with the
// kernel's reason when it refuses (older kernel, no privilege). Needs root.
Status favorDynamicCgroupModifications(const CgroupLayout& layout);

// Which OCI runtime binary can run on this layout: crun needs a pure v1 or v2 host, or a hybrid
// host whose v1 hierarchies include hugetlb. Returns a reason when `crun` cannot be used.
std::optional<std::string> crunIncompatibility(const CgroupLayout& layout);

// Where a v1 hierarchy for `controller` would be mounted: beside the existing v1 hierarchies
// ("/sys/fs/cgroup/hugetlb"). Empty when the host has no v1 hierarchy to go beside.
std::string v1MountPointFor(const CgroupLayout& layout, std::string_view controller);

// Makes a hybrid host usable by crun: mounts `controller` (normally hugetlb, the one controller
// systemd leaves on the cgroup2 mount) as its own v1 hierarchy at `v1MountPointFor`. The kernel
// allows this only while no cgroup2 group has the controller enabled; otherwise the mount fails
// (kFailedPrecondition with the kernel's reason) and the host keeps using runc. Needs root.
Status mountV1Hierarchy(const CgroupLayout& layout, std::string_view controller);

// The file holding the kernel's OOM-kill counter for the cgroup `relPath` ("/skiff/ID"):
// v1 `<memory mount>/<relPath>/memory.oom_control`, v2 `<v2 mount>/<relPath>/memory.events`.
// Both carry an `oom_kill N` line. Fails when the host has no memory controller.
Result<std::string> oomCounterFile(const CgroupLayout& layout, std::string_view relPath);

// Parses the `oom_kill N` line of memory.oom_control / memory.events text; nullopt if absent.
std::optional<uint64_t> parseOomKillCount(std::string_view text);

// The value of the first `KEY N` line of a flat-keyed cgroup file (memory.events, cpu.stat);
// nullopt when absent or not a number.
std::optional<uint64_t> parseKeyedCounter(std::string_view text, std::string_view key);

// The CPU time the cgroup `relPath` has used, in nanoseconds: v1 `cpuacct.usage` of the cpuacct
// hierarchy (hybrid hosts too), v2 `usage_usec` of `cpu.stat`. kNotFound when the cgroup is gone,
// kFailedPrecondition when the host has no CPU accounting.
Result<uint64_t> readCpuUsageNs(const CgroupLayout& layout, std::string_view relPath);

// Every directory the cgroup `relPath` may occupy on this host (one per v1 hierarchy, or the v2
// one). Used for cleanup.
std::vector<std::string> cgroupDirs(const CgroupLayout& layout, std::string_view relPath);

// Removes the (empty) cgroup `relPath` and its empty descendants from every hierarchy; missing
// directories are fine. Used by tests and when a container's parent cgroup is retired.
void removeCgroupTree(const CgroupLayout& layout, std::string_view relPath);

}  // namespace skiff::agent::runtime
