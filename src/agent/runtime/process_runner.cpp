#include "agent/runtime/process_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace skiff::agent::runtime {
namespace {

constexpr size_t kMaxCapture = 1 << 20;

void closeFd(int& fd) {
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
}

}  // namespace

Result<ProcessResult> PosixProcessRunner::run(const ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/') {
    return fail(ErrorCode::kInvalidArgument, "process argv[0] must be an absolute path");
  }
  std::vector<char*> argv;
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : spec.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  int outPipe[2] = {-1, -1};
  int errPipe[2] = {-1, -1};
  if (spec.captureOutput) {
    if (pipe2(outPipe, O_CLOEXEC) != 0) return std::unexpected(errnoError("pipe2", errno));
    if (pipe2(errPipe, O_CLOEXEC) != 0) {
      int err = errno;
      closeFd(outPipe[0]);
      closeFd(outPipe[1]);
      return std::unexpected(errnoError("pipe2", err));
    }
  }
  int devNull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devNull < 0) {
    int err = errno;
    for (int* fd : {&outPipe[0], &outPipe[1], &errPipe[0], &errPipe[1]}) closeFd(*fd);
    return std::unexpected(errnoError("open /dev/null", err));
  }

  // posix_spawn rather than fork: glibc spawns with CLONE_VM | CLONE_VFORK, so the agent's page
  // tables are not copied for every child (fork cost ~1 ms per runtime call with a few hundred
  // threads and mappings). The child gets /dev/null as stdin, the pipes (or /dev/null) as
  // stdout/stderr, default signal dispositions, an empty mask and no other descriptor.
  int outFd = spec.captureOutput ? outPipe[1] : devNull;
  int errFd = spec.captureOutput ? errPipe[1] : devNull;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, devNull, 0);
  posix_spawn_file_actions_adddup2(&actions, outFd, 1);
  posix_spawn_file_actions_adddup2(&actions, errFd, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&defaults, sig);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int spawnError = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (spawnError != 0) {
    for (int* fd : {&outPipe[0], &outPipe[1], &errPipe[0], &errPipe[1], &devNull}) closeFd(*fd);
    return std::unexpected(errnoError("spawn " + spec.argv[0], spawnError));
  }

  closeFd(devNull);
  closeFd(outPipe[1]);
  closeFd(errPipe[1]);

  ProcessResult result;
  auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  bool killed = false;
  while (outPipe[0] >= 0 || errPipe[0] >= 0) {
    pollfd fds[2];
    nfds_t count = 0;
    for (int fd : {outPipe[0], errPipe[0]}) {
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    }
    int waitMs = -1;
    if (spec.timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      waitMs = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int ready = poll(fds, count, waitMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0 && !killed) {
      kill(pid, SIGKILL);
      killed = true;
      result.timedOut = true;
      // Descendants may still hold the pipes; stop reading rather than wait for them.
      closeFd(outPipe[0]);
      closeFd(errPipe[0]);
      break;
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      bool isOut = fds[i].fd == outPipe[0];
      if (n <= 0) {
        closeFd(isOut ? outPipe[0] : errPipe[0]);
        continue;
      }
      std::string& sink = isOut ? result.out : result.err;
      if (sink.size() < kMaxCapture) {
        sink.append(buffer, std::min(static_cast<size_t>(n), kMaxCapture - sink.size()));
      }
    }
  }

  int status = 0;
  while (true) {
    pid_t waited = spec.timeout.count() > 0 && !killed ? waitpid(pid, &status, WNOHANG)
                                                       : waitpid(pid, &status, 0);
    if (waited < 0 && errno == EINTR) continue;
    if (waited < 0) return std::unexpected(errnoError("waitpid", errno));
    if (waited == pid) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      killed = true;
      result.timedOut = true;
      continue;
    }
    usleep(2000);
  }
  if (WIFEXITED(status)) result.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

}  // namespace skiff::agent::runtime
