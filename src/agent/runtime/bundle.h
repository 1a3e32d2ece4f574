#pragma once

// OCI bundle generation: a `BundleSpec` (what Skiff decided about one container) becomes the
// bundle's config.json (OCI runtime spec 1.0.2) with Docker's default hardening applied.
//
// What every generated config contains, whatever the spec says:
//   - namespaces: pid, mount, uts, ipc, network (`netnsPath`, else a fresh one with loopback
//     only) and cgroup;
//   - capabilities: exactly Docker's 14 defaults (kDefaultCapabilities) in the bounding,
//     effective and permitted sets; none inheritable or ambient;
//   - process.noNewPrivileges = true;
//   - maskedPaths and readonlyPaths: Docker's defaults (kMaskedPaths, kReadonlyPaths);
//   - mounts: /proc (nosuid,noexec,nodev), /dev tmpfs 64 MiB, /dev/pts, /dev/shm 64 MiB,
//     /dev/mqueue, /sys read-only, /sys/fs/cgroup read-only;
//   - a device cgroup that denies everything but Docker's default devices (and the GPUs asked
//     for);
//   - the default seccomp allowlist (seccomp_profile.h) unless `seccomp` is false.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff::agent::runtime {

// Docker's default capability set, in the kernel's names.
extern const std::vector<std::string> kDefaultCapabilities;
// The same set as a CapEff bit mask (0x00000000a80425fb).
uint64_t defaultCapabilityMask();
extern const std::vector<std::string> kMaskedPaths;
extern const std::vector<std::string> kReadonlyPaths;

// Where the init binary appears inside every container that has one.
inline constexpr std::string_view kInitPathInContainer = "/.skiff/init";

// A character device passed through to the container (a GPU and its control nodes).
struct DeviceNode {
  std::string path;  // Path inside the container ("/dev/nvidia0").
  int64_t major = 0;
  int64_t minor = 0;
  uint32_t fileMode = 0666;
};

struct BundleSpec {
  // Absolute host path of the root filesystem: the overlay mount the image library prepared
  // (tests use a plain directory). It is used in place; the bundle does not copy it.
  std::string rootfsPath;
  // The process: argv[0] is resolved by the runtime inside the container (PATH from `env`).
  // Build it with `resolveArgs` from the image config and the task's overrides.
  std::vector<std::string> args;
  std::vector<std::string> env;  // "KEY=VALUE"; a PATH is added when missing.
  // Absolute, normalized, and not under /proc (a cwd of /proc/self/fd/N is how CVE-2024-21626
  // reached the host); "/" when empty.
  std::string cwd;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additionalGids;
  std::string hostname;  // UTS hostname; empty leaves the runtime's default.

  // Limits. Zero means "no limit" for each.
  double cpuCores = 0;         // -> cpu.shares = cores*1024 (min 2), cfs quota = cores*period.
  uint64_t memoryBytes = 0;    // -> memory limit; swap limit equal to it (no swap at all).
  bool swapAccounting = true;  // False on v1 hosts without memory.memsw.*: swap is then unset.
  int64_t pidsLimit = 0;
  uint64_t nofile = 1024;  // RLIMIT_NOFILE soft and hard.

  // Host path of a static init (tini-static) bind-mounted read-only at kInitPathInContainer and
  // run as pid 1: `init -- args...`. Empty runs `args` directly as pid 1 (no zombie reaping).
  std::string initPath;

  // The cgroup, relative to each hierarchy root ("/skiff/ID"); empty: the runtime's default.
  std::string cgroupsPath;

  // GPUs: the device nodes are created in the container and allowed in its device cgroup;
  // NVIDIA_VISIBLE_DEVICES is set to `gpuIndices` (comma separated) when non-empty.
  std::vector<DeviceNode> devices;
  std::string gpuIndices;

  bool seccomp = true;  // False only for tests that need to see a behaviour without it.
  // With `seccomp`: the default profile compiled to BPF and base64-encoded (seccomp_bpf.h). It
  // goes into the `run.oci.seccomp_bpf_data` annotation, which crun loads instead of compiling
  // the profile again; runc ignores it and uses the profile in `linux.seccomp`.
  std::string seccompBpfBase64;

  // An existing network namespace (a bound namespace file) the container joins; empty: a fresh
  // one with loopback only.
  std::string netnsPath;
  // Host files bound read-only into the container (its /etc/hosts and /etc/resolv.conf).
  struct FileBind {
    std::string source;       // Absolute host path.
    std::string destination;  // Absolute path in the container.
  };
  std::vector<FileBind> fileBinds;
};

// Docker's rule for combining the image config with the task's overrides: an overridden
// entrypoint drops the image's cmd; an overridden cmd replaces the image's cmd.
std::vector<std::string> resolveArgs(const std::vector<std::string>& imageEntrypoint,
                                     const std::vector<std::string>& imageCmd,
                                     const std::optional<std::vector<std::string>>& entrypoint,
                                     const std::optional<std::vector<std::string>>& cmd);

// Checks the spec (kInvalidArgument with the offending field named) and builds config.json.
Result<nlohmann::json> buildOciConfig(const BundleSpec& spec);

// Writes `bundleDir`/config.json (created 0600, renamed into place, not fsynced). `bundleDir`
// must exist.
Status writeBundle(const std::string& bundleDir, const BundleSpec& spec);

}  // namespace skiff::agent::runtime
