#include "agent/runtime/process_runner.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
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
  // Everything the child needs is built before fork: after fork in a multithreaded process only
  // async-signal-safe calls are allowed, so no allocation happens in the child.
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

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    for (int* fd : {&outPipe[0], &outPipe[1], &errPipe[0], &errPipe[1], &devNull}) closeFd(*fd);
    return std::unexpected(errnoError("fork", err));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    int outFd = spec.captureOutput ? outPipe[1] : devNull;
    int errFd = spec.captureOutput ? errPipe[1] : devNull;
    // dup2 clears O_CLOEXEC on the new descriptor.
    if (dup2(devNull, 0) < 0 || dup2(outFd, 1) < 0 || dup2(errFd, 2) < 0) _exit(127);
    // Reset signal state the agent may have changed; the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP}) signal(sig, SIG_DFL);
    // Belt and braces over O_CLOEXEC: nothing but 0-2 survives exec.
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
      for (int fd = 3; fd < 65536; ++fd) close(fd);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
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
