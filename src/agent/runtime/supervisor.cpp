#include "agent/runtime/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/runtime/monitor_protocol.h"
#include "agent/runtime/seccomp_bpf.h"
#include "agent/runtime/seccomp_profile.h"
#include "common/log.h"

namespace skiff::agent::runtime {
namespace {

namespace fs = std::filesystem;
namespace files = monitor_files;

// How often to look again when the kernel cannot notify us (no inotify or pidfd).
constexpr std::chrono::milliseconds kPollInterval{10};

// Inotify instances are reused: closing one that ever held a watch waits for the kernel to
// destroy its marks (an SRCU grace period, 8 ms median and up to 20 ms here), which sat on every
// container start. Removing a watch does not wait, so a finished waiter removes its watch, drains
// the instance and leaves it for the next one.
class InotifyPool {
 public:
  static InotifyPool& instance() {
    static InotifyPool* pool = new InotifyPool;  // Never destroyed: waiters may outlive statics.
    return *pool;
  }

  // An instance with no watch and no pending event; -1 when the kernel has none to give.
  int take() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        int fd = idle_.back();
        idle_.pop_back();
        return fd;
      }
    }
    return inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  }

  // Removes `watch` and keeps the instance (closes it beyond kMaxIdle).
  void give(int fd, int watch) {
    if (watch >= 0) inotify_rm_watch(fd, watch);
    char buffer[4096];
    while (read(fd, buffer, sizeof buffer) > 0) {
    }
    {
      std::lock_guard lock(mutex_);
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(fd);
        return;
      }
    }
    close(fd);
  }

 private:
  static constexpr size_t kMaxIdle = 64;
  std::mutex mutex_;
  std::vector<int> idle_;
};

// Blocks until something may have changed in a container directory: a file renamed or created
// there (the monitor writes `started` and `exit` by rename) or the monitor process exiting. The
// callers re-read the files after every wake-up, so a spurious wake-up is harmless; the watch is
// set up before the callers' first read, so no change is missed between read and wait.
class ChangeWaiter {
 public:
  ChangeWaiter(const std::string& dir, int monitorPid) {
    inotifyFd_ = InotifyPool::instance().take();
    if (inotifyFd_ >= 0) {
      watch_ = inotify_add_watch(inotifyFd_, dir.c_str(), IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF);
      if (watch_ < 0) {
        InotifyPool::instance().give(inotifyFd_, -1);
        inotifyFd_ = -1;
      }
    }
    if (monitorPid > 0) {
      pidFd_ = static_cast<int>(syscall(SYS_pidfd_open, monitorPid, 0));
    }
  }
  ~ChangeWaiter() {
    if (inotifyFd_ >= 0) InotifyPool::instance().give(inotifyFd_, watch_);
    if (pidFd_ >= 0) close(pidFd_);
  }
  ChangeWaiter(const ChangeWaiter&) = delete;
  ChangeWaiter& operator=(const ChangeWaiter&) = delete;

  // Waits at most `timeout` for a change.
  void wait(std::chrono::milliseconds timeout) {
    if (timeout <= std::chrono::milliseconds::zero()) return;
    if (inotifyFd_ < 0) {
      std::this_thread::sleep_for(std::min(timeout, kPollInterval));
      return;
    }
    pollfd fds[2] = {{inotifyFd_, POLLIN, 0}, {pidFd_, POLLIN, 0}};
    nfds_t count = pidFd_ >= 0 ? 2 : 1;
    int ready = ::poll(fds, count, static_cast<int>(std::min<int64_t>(timeout.count(), 60'000)));
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      char buffer[4096];
      while (read(inotifyFd_, buffer, sizeof buffer) > 0) {
      }
    }
    if (ready > 0 && count == 2 && fds[1].revents != 0) {
      // The monitor is gone; from now on only the files can change, and they no longer will.
      close(pidFd_);
      pidFd_ = -1;
    }
  }

 private:
  int inotifyFd_ = -1;
  int watch_ = -1;
  int pidFd_ = -1;
};

// The default profile's program, compiled on first use; empty when libseccomp failed (the runtime
// then compiles the profile itself).
const std::string& defaultSeccompBpfBase64() {
  static const std::string program = [] {
    auto compiled = compileSeccompBpf(defaultSeccompProfile());
    if (!compiled) {
      log::warn("cannot precompile the seccomp profile; the runtime will compile it",
                {{"error", compiled.error().message()}});
      return std::string();
    }
    return base64Encode(*compiled);
  }();
  return program;
}

std::chrono::milliseconds untilDeadline(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  // Round up so a wait does not end just short of the deadline and spin.
  return left + std::chrono::milliseconds(1);
}

std::optional<std::string> readSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Status writeFileAtomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + tmp, errno));
  const char* data = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return std::unexpected(errnoError("write " + tmp, err));
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    int err = errno;
    close(fd);
    return std::unexpected(errnoError("fsync " + tmp, err));
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return std::unexpected(errnoError("rename " + path, errno));
  }
  return {};
}

int64_t fieldValue(std::string_view text, std::string_view key, int64_t fallback) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == '=') {
      std::string value(line.substr(key.size() + 1));
      char* parsedEnd = nullptr;
      long long parsed = std::strtoll(value.c_str(), &parsedEnd, 10);
      if (parsedEnd != value.c_str()) return parsed;
    }
    pos = end + 1;
  }
  return fallback;
}

// A monitor pid is trusted only while that pid still runs skiff-monitor (pids are reused).
bool monitorAlive(int pid) {
  if (pid <= 0) return false;
  auto comm = readSmallFile("/proc/" + std::to_string(pid) + "/comm");
  if (!comm) return false;
  // A zombie monitor (exited, not yet reaped by whoever adopted it) is not alive.
  auto stat = readSmallFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat) {
    size_t paren = stat->rfind(')');
    if (paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z') {
      return false;
    }
  }
  return comm->starts_with("skiff-monitor");
}

// The runtime's log is JSON lines; the last "error" message names what went wrong.
std::string runtimeErrorTail(const std::string& path) {
  auto text = readSmallFile(path);
  if (!text) return "no runtime log";
  std::string last;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    auto json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_object() && json.value("level", "") == "error") last = json.value("msg", line);
  }
  if (last.empty() && !text->empty())
    last = text->substr(text->size() > 500 ? text->size() - 500 : 0);
  return last;
}

}  // namespace

std::string_view exitReasonName(ExitReason reason) {
  switch (reason) {
    case ExitReason::kExited:
      return "Exited";
    case ExitReason::kOOMKilled:
      return "OOMKilled";
    case ExitReason::kStopped:
      return "Stopped";
    case ExitReason::kRuntimeLimitExceeded:
      return "RuntimeLimitExceeded";
    case ExitReason::kStartFailed:
      return "StartFailed";
    case ExitReason::kLost:
      return "Lost";
  }
  return "Unknown";
}

ContainerSupervisor::ContainerSupervisor(SupervisorOptions options, OciRuntime& runtime,
                                         ProcessRunner& runner, CgroupLayout layout,
                                         const Clock& clock)
    : options_(std::move(options)),
      runtime_(runtime),
      runner_(runner),
      layout_(std::move(layout)),
      clock_(clock) {}

std::string ContainerSupervisor::containerDir(const std::string& id) const {
  return options_.stateDir + "/" + id;
}
std::string ContainerSupervisor::stdoutPath(const std::string& id) const {
  return containerDir(id) + "/" + files::kStdout;
}
std::string ContainerSupervisor::stderrPath(const std::string& id) const {
  return containerDir(id) + "/" + files::kStderr;
}

Result<uint64_t> ContainerSupervisor::cpuUsageNs(const std::string& id) const {
  return readCpuUsageNs(layout_, options_.cgroupParent + "/" + id);
}

Result<ProcessResult> ContainerSupervisor::exec(const std::string& id,
                                                const std::vector<std::string>& command,
                                                std::chrono::milliseconds timeout) {
  ProcessSpec spec;
  spec.argv = runtime_.commandPrefix();
  spec.argv.push_back("exec");
  spec.argv.push_back(id);
  spec.argv.insert(spec.argv.end(), command.begin(), command.end());
  spec.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.timeout = timeout;
  return runner_.run(spec);
}

int ContainerSupervisor::monitorPid(const std::string& id) const {
  auto text = readSmallFile(containerDir(id) + "/" + files::kMonitorPid);
  return text ? std::atoi(text->c_str()) : 0;
}

std::vector<std::string> ContainerSupervisor::containerIds() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& [id, entry] : entries_) ids.push_back(id);
  return ids;
}

Status ContainerSupervisor::saveCheckpoint(const std::string& id, const Entry& entry) {
  nlohmann::json json = {{"id", id},
                         {"startedAtMs", entry.startedAtMs},
                         {"runtimeLimitMs", entry.runtimeLimitMs},
                         {"stopGraceMs", entry.stopGraceMs},
                         {"stopReason", entry.stopReason}};
  SKIFF_TRY_STATUS(writeFileAtomic(containerDir(id) + "/checkpoint.json", json.dump()),
                   "checkpoint " + id);
  std::lock_guard lock(mutex_);
  entries_[id] = entry;
  return {};
}

Result<ContainerSupervisor::Entry> ContainerSupervisor::loadCheckpoint(
    const std::string& id) const {
  auto text = readSmallFile(containerDir(id) + "/checkpoint.json");
  if (!text) return fail(ErrorCode::kNotFound, "no checkpoint for container " + id);
  auto json = nlohmann::json::parse(*text, nullptr, false);
  if (!json.is_object()) return fail(ErrorCode::kInternal, "corrupt checkpoint for " + id);
  Entry entry;
  entry.startedAtMs = json.value("startedAtMs", int64_t{0});
  entry.runtimeLimitMs = json.value("runtimeLimitMs", int64_t{0});
  entry.stopGraceMs = json.value("stopGraceMs", int64_t{0});
  entry.stopReason = json.value("stopReason", "");
  return entry;
}

Result<ContainerSupervisor::Entry> ContainerSupervisor::entry(const std::string& id) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return fail(ErrorCode::kNotFound, "unknown container " + id);
  return it->second;
}

Status ContainerSupervisor::start(const ContainerConfig& config) {
  auto entered = std::chrono::steady_clock::now();
  if (!isValidContainerId(config.id)) {
    return fail(ErrorCode::kInvalidArgument, "invalid container id");
  }
  std::string dir = containerDir(config.id);
  std::error_code ec;
  fs::create_directories(options_.stateDir, ec);
  if (ec) return fail(ErrorCode::kIo, "create " + options_.stateDir + ": " + ec.message());
  if (mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return fail(ErrorCode::kAlreadyExists, "container " + config.id);
    return std::unexpected(errnoError("mkdir " + dir, errno));
  }
  // From here on a failure removes the directory, so a failed start leaves nothing behind.
  auto cleanup = [&](Error error) -> Status {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    removeCgroupTree(layout_, options_.cgroupParent + "/" + config.id);
    std::lock_guard lock(mutex_);
    entries_.erase(config.id);
    return std::unexpected(std::move(error));
  };

  BundleSpec spec = config.bundle;
  std::string cgroupPath = options_.cgroupParent + "/" + config.id;
  spec.cgroupsPath = cgroupPath;
  if (spec.initPath.empty()) spec.initPath = options_.initPath;
  if (options_.precompileSeccomp && spec.seccomp && spec.seccompBpfBase64.empty()) {
    spec.seccompBpfBase64 = defaultSeccompBpfBase64();
  }
  if (spec.hostname.empty()) spec.hostname = config.id.substr(0, 63);
  // v1 hosts without swap accounting have no memory.memsw.* and runc would fail to set it.
  if (layout_.mode != CgroupMode::kV2) {
    auto memory = layout_.v1Mounts.find("memory");
    spec.swapAccounting = memory != layout_.v1Mounts.end() &&
                          fs::exists(memory->second + "/memory.memsw.limit_in_bytes", ec);
  }
  auto t0 = std::chrono::steady_clock::now();
  if (auto written = writeBundle(dir, spec); !written) {
    return cleanup(written.error().wrap("bundle"));
  }
  auto t1 = std::chrono::steady_clock::now();
  Entry entry;
  entry.startedAtMs = clock_.nowMs();
  entry.runtimeLimitMs = config.runtimeLimit.count();
  entry.stopGraceMs = config.stopGrace.count();
  if (auto saved = saveCheckpoint(config.id, entry); !saved) return cleanup(saved.error());

  ProcessSpec monitor;
  monitor.argv = {options_.monitorPath,
                  "--dir",
                  dir,
                  "--id",
                  config.id,
                  "--bundle",
                  dir,
                  "--log-max-bytes",
                  std::to_string(options_.logMaxBytes),
                  "--log-keep",
                  std::to_string(options_.logKeep)};
  if (auto oomFile = oomCounterFile(layout_, cgroupPath)) {
    monitor.argv.push_back("--oom-file");
    monitor.argv.push_back(*oomFile);
  }
  monitor.argv.push_back("--");
  for (std::string& arg : runtime_.commandPrefix()) monitor.argv.push_back(std::move(arg));
  // The runtime log is per container so a failed create can be explained.
  monitor.argv.push_back("--log");
  monitor.argv.push_back(dir + "/" + files::kRuntimeLog);
  monitor.argv.push_back("--log-format");
  monitor.argv.push_back("json");
  monitor.timeout = std::chrono::seconds(10);
  ChangeWaiter waiter(dir, 0);
  auto spawned = runner_.run(monitor);
  auto t2 = std::chrono::steady_clock::now();
  if (!spawned) return cleanup(spawned.error().wrap("start monitor"));
  if (!spawned->ok()) {
    return cleanup(Error(ErrorCode::kInternal, "monitor refused to start: " + spawned->err));
  }

  auto deadline = std::chrono::steady_clock::now() + options_.startTimeout;
  std::string startedPath = dir + "/" + files::kStarted;
  std::string exitPath = dir + "/" + files::kExit;
  while (true) {
    if (fs::exists(startedPath, ec)) {
      auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
      log::info("supervisor start timings",
                {{"container", config.id},
                 {"prepareMs", ms(t0 - entered)},
                 {"bundleMs", ms(t1 - t0)},
                 {"spawnMs", ms(t2 - t1)},
                 {"runtimeMs", ms(std::chrono::steady_clock::now() - t2)}});
      return {};
    }
    if (auto exitText = readSmallFile(exitPath)) {
      if (fieldValue(*exitText, "startError", 0) != 0) {
        std::string why = runtimeErrorTail(dir + "/" + files::kRuntimeLog);
        return cleanup(Error(ErrorCode::kInternal, "runtime could not start container: " + why));
      }
      return {};  // It started and already exited; poll() reports it.
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      // The monitor is stuck; take the container down so the directory can go.
      (void)runtime_.remove(config.id, true);
      return cleanup(Error(ErrorCode::kUnavailable, "container did not start in time"));
    }
    // The monitor's pid is known only once it has detached; without it a monitor that dies
    // early is caught by the exit file it writes, or by the deadline.
    waiter.wait(std::min(untilDeadline(deadline), std::chrono::milliseconds(100)));
  }
}

Result<std::optional<ExitStatus>> ContainerSupervisor::readExit(const std::string& id,
                                                                const Entry& entry) const {
  std::string exitPath = containerDir(id) + "/" + files::kExit;
  auto text = readSmallFile(exitPath);
  if (!text) {
    if (monitorAlive(monitorPid(id))) return std::optional<ExitStatus>{};
    // The monitor may have written the file between the two reads.
    text = readSmallFile(exitPath);
    if (!text) {
      ExitStatus lost;
      lost.reason = ExitReason::kLost;
      lost.finishedAtMs = clock_.nowMs();
      return std::optional<ExitStatus>{lost};
    }
  }
  ExitStatus status;
  status.exitCode = static_cast<int>(fieldValue(*text, "exitCode", -1));
  status.signal = static_cast<int>(fieldValue(*text, "signal", 0));
  status.oomKillCount = static_cast<uint64_t>(fieldValue(*text, "oomKillCount", 0));
  status.finishedAtMs = fieldValue(*text, "finishedAtMs", 0);
  if (fieldValue(*text, "startError", 0) != 0) {
    status.reason = ExitReason::kStartFailed;
  } else if (status.oomKillCount > 0) {
    // The kernel's counter, not a guess from exit code 137.
    status.reason = ExitReason::kOOMKilled;
  } else if (entry.stopReason == "runtimeLimit") {
    status.reason = ExitReason::kRuntimeLimitExceeded;
  } else if (entry.stopReason == "stopped") {
    status.reason = ExitReason::kStopped;
  } else {
    status.reason = ExitReason::kExited;
  }
  return std::optional<ExitStatus>{status};
}

Result<std::optional<ExitStatus>> ContainerSupervisor::waitExit(
    const std::string& id, const Entry& entry, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  ChangeWaiter waiter(containerDir(id), monitorPid(id));
  while (true) {
    auto exit = readExit(id, entry);
    if (!exit || *exit) return exit;
    if (std::chrono::steady_clock::now() >= deadline) return std::optional<ExitStatus>{};
    waiter.wait(untilDeadline(deadline));
  }
}

Status ContainerSupervisor::stopWithReason(const std::string& id, std::chrono::milliseconds grace,
                                           std::string_view reason) {
  auto current = entry(id);
  if (!current) return std::unexpected(current.error());
  auto exited = readExit(id, *current);
  if (!exited) return std::unexpected(exited.error());
  if (*exited) return {};
  // The reason is durable before any signal, so an agent that dies mid-stop still reports it.
  if (current->stopReason.empty()) {
    current->stopReason = std::string(reason);
    SKIFF_TRY_STATUS(saveCheckpoint(id, *current), "stop");
  }
  if (auto sent = runtime_.kill(id, SIGTERM, false); !sent) {
    if (sent.error().code() != ErrorCode::kNotFound &&
        sent.error().code() != ErrorCode::kFailedPrecondition) {
      log::warn("SIGTERM failed", {{"container", id}, {"error", sent.error().message()}});
    }
  }
  auto afterTerm = waitExit(id, *current, grace);
  if (!afterTerm) return std::unexpected(afterTerm.error());
  if (*afterTerm) return {};
  if (auto sent = runtime_.kill(id, SIGKILL, true); !sent) {
    if (sent.error().code() != ErrorCode::kNotFound &&
        sent.error().code() != ErrorCode::kFailedPrecondition) {
      return std::unexpected(sent.error().wrap("stop " + id));
    }
  }
  auto afterKill = waitExit(id, *current, options_.killTimeout);
  if (!afterKill) return std::unexpected(afterKill.error());
  if (!*afterKill) return fail(ErrorCode::kUnavailable, "container " + id + " survived SIGKILL");
  return {};
}

Status ContainerSupervisor::stop(const std::string& id,
                                 std::optional<std::chrono::milliseconds> grace) {
  auto current = entry(id);
  if (!current) return std::unexpected(current.error());
  return stopWithReason(id, grace.value_or(std::chrono::milliseconds(current->stopGraceMs)),
                        "stopped");
}

Result<std::optional<ExitStatus>> ContainerSupervisor::poll(const std::string& id) {
  auto current = entry(id);
  if (!current) return std::unexpected(current.error());
  auto exited = readExit(id, *current);
  if (!exited || *exited) return exited;
  if (current->runtimeLimitMs > 0 &&
      clock_.nowMs() >= current->startedAtMs + current->runtimeLimitMs) {
    SKIFF_TRY_STATUS(
        stopWithReason(id, std::chrono::milliseconds(current->stopGraceMs), "runtimeLimit"),
        "runtime limit");
    auto updated = entry(id);
    if (!updated) return std::unexpected(updated.error());
    return readExit(id, *updated);
  }
  return std::optional<ExitStatus>{};
}

Result<ExitStatus> ContainerSupervisor::wait(const std::string& id,
                                             std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // Watching starts before the first look, so an exit in between still wakes us.
  ChangeWaiter waiter(containerDir(id), monitorPid(id));
  while (true) {
    auto exited = poll(id);
    if (!exited) return std::unexpected(exited.error());
    if (*exited) return **exited;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return fail(ErrorCode::kUnavailable, "container " + id + " is still running");
    }
    // Wake up for the runtime limit too: poll() enforces it.
    auto wakeAt = deadline;
    auto current = entry(id);
    if (current && current->runtimeLimitMs > 0) {
      int64_t leftMs = current->startedAtMs + current->runtimeLimitMs - clock_.nowMs();
      wakeAt = std::min(wakeAt, now + std::chrono::milliseconds(std::max<int64_t>(leftMs, 0)));
    }
    waiter.wait(untilDeadline(wakeAt));
  }
}

Result<std::vector<std::string>> ContainerSupervisor::adopt() {
  std::vector<std::string> adopted;
  std::error_code ec;
  if (!fs::exists(options_.stateDir, ec)) return adopted;
  fs::directory_iterator it(options_.stateDir, ec);
  if (ec) return fail(ErrorCode::kIo, "list " + options_.stateDir + ": " + ec.message());
  for (const auto& dirEntry : it) {
    std::string id = dirEntry.path().filename().string();
    if (!dirEntry.is_directory(ec) || !isValidContainerId(id)) continue;
    auto checkpoint = loadCheckpoint(id);
    if (!checkpoint) {
      log::warn("skipping container directory without checkpoint", {{"container", id}});
      continue;
    }
    std::lock_guard lock(mutex_);
    entries_[id] = *checkpoint;
    adopted.push_back(id);
  }
  return adopted;
}

Status ContainerSupervisor::remove(const std::string& id) {
  auto current = entry(id);
  if (!current) return std::unexpected(current.error());
  auto exited = readExit(id, *current);
  if (!exited) return std::unexpected(exited.error());
  if (!*exited) return fail(ErrorCode::kFailedPrecondition, "container " + id + " is running");
  // The monitor deletes the container after recording the exit, and the runtime logs into the
  // container's directory while it does: let it finish (bounded) rather than race it over the
  // same state, cgroups and files. A lost monitor did not delete it; the calls below do.
  if (int pid = monitorPid(id); monitorAlive(pid)) {
    ChangeWaiter waiter(containerDir(id), pid);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (monitorAlive(pid) && std::chrono::steady_clock::now() < deadline) {
      waiter.wait(std::chrono::milliseconds(100));
    }
  }
  (void)runtime_.remove(id, true);
  removeCgroupTree(layout_, options_.cgroupParent + "/" + id);
  std::error_code ec;
  fs::remove_all(containerDir(id), ec);
  if (ec) return fail(ErrorCode::kIo, "remove " + containerDir(id) + ": " + ec.message());
  std::lock_guard lock(mutex_);
  entries_.erase(id);
  return {};
}

}  // namespace skiff::agent::runtime
