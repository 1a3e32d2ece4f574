#include "agent/runtime/bundle.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

#include "agent/runtime/seccomp_bpf.h"
#include "agent/runtime/seccomp_profile.h"

namespace skiff::agent::runtime {

const std::vector<std::string> kDefaultCapabilities = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

uint64_t defaultCapabilityMask() {
  // Bit numbers from linux/capability.h.
  constexpr int kBits[] = {0 /*CHOWN*/,
                           1 /*DAC_OVERRIDE*/,
                           4 /*FSETID*/,
                           3 /*FOWNER*/,
                           27 /*MKNOD*/,
                           13 /*NET_RAW*/,
                           6 /*SETGID*/,
                           7 /*SETUID*/,
                           31 /*SETFCAP*/,
                           8 /*SETPCAP*/,
                           10 /*NET_BIND_SERVICE*/,
                           18 /*SYS_CHROOT*/,
                           5 /*KILL*/,
                           29 /*AUDIT_WRITE*/};
  uint64_t mask = 0;
  for (int bit : kBits) mask |= uint64_t{1} << bit;
  return mask;
}

const std::vector<std::string> kMaskedPaths = {
    "/proc/asound",      "/proc/acpi",          "/proc/interrupts", "/proc/kcore",
    "/proc/keys",        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi",          "/sys/firmware",    "/sys/devices/virtual/powercap",
};

const std::vector<std::string> kReadonlyPaths = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

namespace {

constexpr int64_t kCfsPeriodUs = 100'000;

bool isCleanAbsolutePath(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "." || part == "..") return false;
    if (part.empty() && end != path.size()) return false;  // "//"
    start = end + 1;
  }
  return path.find('\0') == std::string_view::npos;
}

nlohmann::json mount(std::string destination, std::string type, std::string source,
                     std::vector<std::string> options) {
  return {{"destination", std::move(destination)},
          {"type", std::move(type)},
          {"source", std::move(source)},
          {"options", std::move(options)}};
}

nlohmann::json deviceRule(bool allow, std::string type, int64_t major, int64_t minor,
                          std::string access) {
  nlohmann::json rule = {
      {"allow", allow}, {"type", std::move(type)}, {"access", std::move(access)}};
  if (major >= 0) rule["major"] = major;
  if (minor >= 0) rule["minor"] = minor;
  return rule;
}

}  // namespace

std::vector<std::string> resolveArgs(const std::vector<std::string>& imageEntrypoint,
                                     const std::vector<std::string>& imageCmd,
                                     const std::optional<std::vector<std::string>>& entrypoint,
                                     const std::optional<std::vector<std::string>>& cmd) {
  std::vector<std::string> args = entrypoint ? *entrypoint : imageEntrypoint;
  const std::vector<std::string>& tail =
      cmd ? *cmd : (entrypoint ? std::vector<std::string>{} : imageCmd);
  args.insert(args.end(), tail.begin(), tail.end());
  return args;
}

Result<nlohmann::json> buildOciConfig(const BundleSpec& spec) {
  if (!isCleanAbsolutePath(spec.rootfsPath)) {
    return fail(ErrorCode::kInvalidArgument, "rootfsPath: must be a clean absolute path");
  }
  if (spec.args.empty() || spec.args[0].empty()) {
    return fail(ErrorCode::kInvalidArgument, "args: the container has nothing to run");
  }
  std::string cwd = spec.cwd.empty() ? "/" : spec.cwd;
  if (!isCleanAbsolutePath(cwd)) {
    return fail(ErrorCode::kInvalidArgument, "cwd: must be a clean absolute path");
  }
  if (cwd == "/proc" || cwd.starts_with("/proc/")) {
    // Defence in depth against CVE-2024-21626: a cwd through /proc/self/fd can name a host fd.
    return fail(ErrorCode::kInvalidArgument, "cwd: must not be under /proc");
  }
  bool hasPath = false;
  for (const std::string& entry : spec.env) {
    size_t eq = entry.find('=');
    if (eq == 0 || eq == std::string::npos || entry.find('\0') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument, "env: entries must be KEY=VALUE");
    }
    if (entry.starts_with("PATH=")) hasPath = true;
  }
  if (!spec.initPath.empty() && spec.initPath.front() != '/') {
    return fail(ErrorCode::kInvalidArgument, "initPath: must be absolute");
  }
  if (!spec.cgroupsPath.empty() && !isCleanAbsolutePath(spec.cgroupsPath)) {
    return fail(ErrorCode::kInvalidArgument, "cgroupsPath: must be a clean absolute path");
  }
  if (spec.cpuCores < 0 || !std::isfinite(spec.cpuCores)) {
    return fail(ErrorCode::kInvalidArgument, "cpuCores: must be a non-negative number");
  }

  std::vector<std::string> env = spec.env;
  if (!hasPath) env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (!spec.gpuIndices.empty()) env.push_back("NVIDIA_VISIBLE_DEVICES=" + spec.gpuIndices);

  std::vector<std::string> args;
  if (!spec.initPath.empty()) {
    // tini: `--` ends its own options; -s is not needed since it is pid 1 of its namespace.
    args = {std::string(kInitPathInContainer), "--"};
  }
  args.insert(args.end(), spec.args.begin(), spec.args.end());

  nlohmann::json user = {{"uid", spec.uid}, {"gid", spec.gid}};
  if (!spec.additionalGids.empty()) user["additionalGids"] = spec.additionalGids;

  nlohmann::json process = {
      {"terminal", false},
      {"user", user},
      {"args", args},
      {"env", env},
      {"cwd", cwd},
      {"capabilities",
       {{"bounding", kDefaultCapabilities},
        {"effective", kDefaultCapabilities},
        {"permitted", kDefaultCapabilities}}},
      {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", spec.nofile}, {"soft", spec.nofile}}}},
      {"noNewPrivileges", true},
  };

  nlohmann::json mounts = nlohmann::json::array({
      mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}),
      mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
      mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
      mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
      mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
      mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
      mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"}),
  });
  if (!spec.initPath.empty()) {
    mounts.push_back(mount(std::string(kInitPathInContainer), "bind", spec.initPath,
                           {"bind", "ro", "nosuid", "nodev"}));
  }

  for (const BundleSpec::FileBind& bind : spec.fileBinds) {
    if (!isCleanAbsolutePath(bind.source) || !isCleanAbsolutePath(bind.destination)) {
      return fail(ErrorCode::kInvalidArgument, "fileBinds: paths must be clean and absolute");
    }
    mounts.push_back(
        mount(bind.destination, "bind", bind.source, {"rbind", "ro", "nosuid", "nodev", "noexec"}));
  }

  // Docker's device cgroup: deny all, then the standard nodes, mknod of anything, and ptys.
  nlohmann::json deviceRules = nlohmann::json::array({
      deviceRule(false, "a", -1, -1, "rwm"), deviceRule(true, "c", -1, -1, "m"),
      deviceRule(true, "b", -1, -1, "m"), deviceRule(true, "c", 1, 3, "rwm"),  // null
      deviceRule(true, "c", 1, 5, "rwm"),                                      // zero
      deviceRule(true, "c", 1, 7, "rwm"),                                      // full
      deviceRule(true, "c", 1, 8, "rwm"),                                      // random
      deviceRule(true, "c", 1, 9, "rwm"),                                      // urandom
      deviceRule(true, "c", 5, 0, "rwm"),                                      // tty
      deviceRule(true, "c", 5, 1, "rwm"),                                      // console
      deviceRule(true, "c", 5, 2, "rwm"),                                      // ptmx
      deviceRule(true, "c", 136, -1, "rwm"),                                   // pts
  });
  nlohmann::json devices = nlohmann::json::array();
  for (const DeviceNode& device : spec.devices) {
    if (!isCleanAbsolutePath(device.path) || !device.path.starts_with("/dev/")) {
      return fail(ErrorCode::kInvalidArgument, "devices: path must be under /dev");
    }
    devices.push_back({{"path", device.path},
                       {"type", "c"},
                       {"major", device.major},
                       {"minor", device.minor},
                       {"fileMode", device.fileMode},
                       {"uid", 0},
                       {"gid", 0}});
    deviceRules.push_back(deviceRule(true, "c", device.major, device.minor, "rwm"));
  }

  nlohmann::json resources = {{"devices", deviceRules}};
  if (spec.memoryBytes > 0) {
    nlohmann::json memory = {{"limit", spec.memoryBytes}};
    // limit+swap == limit: the container may not swap at all.
    if (spec.swapAccounting) memory["swap"] = spec.memoryBytes;
    resources["memory"] = memory;
  }
  if (spec.cpuCores > 0) {
    auto shares = std::max<uint64_t>(2, static_cast<uint64_t>(std::llround(spec.cpuCores * 1024)));
    auto quota = std::max<int64_t>(1000, std::llround(spec.cpuCores * kCfsPeriodUs));
    resources["cpu"] = {{"shares", shares}, {"quota", quota}, {"period", kCfsPeriodUs}};
  }
  if (spec.pidsLimit > 0) resources["pids"] = {{"limit", spec.pidsLimit}};

  nlohmann::json linuxSection = {
      {"namespaces",
       {{{"type", "pid"}},
        {{"type", "mount"}},
        {{"type", "uts"}},
        {{"type", "ipc"}},
        spec.netnsPath.empty() ? nlohmann::json{{"type", "network"}}
                               : nlohmann::json{{"type", "network"}, {"path", spec.netnsPath}},
        {{"type", "cgroup"}}}},
      {"maskedPaths", kMaskedPaths},
      {"readonlyPaths", kReadonlyPaths},
      {"resources", resources},
      {"devices", devices},
  };
  if (!spec.cgroupsPath.empty()) linuxSection["cgroupsPath"] = spec.cgroupsPath;
  if (spec.seccomp) linuxSection["seccomp"] = defaultSeccompProfile();

  nlohmann::json config = {
      {"ociVersion", "1.0.2"}, {"root", {{"path", spec.rootfsPath}, {"readonly", false}}},
      {"process", process},    {"mounts", mounts},
      {"linux", linuxSection},
  };
  if (!spec.hostname.empty()) config["hostname"] = spec.hostname;
  if (spec.seccomp && !spec.seccompBpfBase64.empty()) {
    config["annotations"] = {{std::string(kSeccompBpfAnnotation), spec.seccompBpfBase64}};
  }
  return config;
}

Status writeBundle(const std::string& bundleDir, const BundleSpec& spec) {
  auto config = buildOciConfig(spec);
  if (!config) return std::unexpected(config.error());
  // Compact: the file is read by the runtime, not people (`jq . config.json` shows it), and the
  // seccomp program makes it large.
  std::string text = config->dump();
  std::string tmp = bundleDir + "/config.json.tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + tmp, errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return std::unexpected(errnoError("write " + tmp, err));
    }
    done += static_cast<size_t>(n);
  }
  // Not fsynced: a bundle is only used while its container lives, and a host crash ends both.
  if (close(fd) != 0) return std::unexpected(errnoError("close " + tmp, errno));
  std::string path = bundleDir + "/config.json";
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return std::unexpected(errnoError("rename " + path, errno));
  }
  return {};
}

}  // namespace skiff::agent::runtime
