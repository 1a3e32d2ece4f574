// skiff-monitor: one small process per container (the role conmon plays for CRI-O).
//
// It detaches from the agent (setsid + fork) so the agent can die and restart, becomes
// a child subreaper so the container's init is re-parented to it once `runc run --detach` exits,
// and then: copies the container's stdout/stderr into size-rotated files, waits for the init to
// exit, reads the memory cgroup's OOM-kill counter, writes the `exit` file atomically and
// deletes the container. The file protocol is in monitor_protocol.h.
//
// It must stay well under 1 MB RSS, so it is C-style C++: no iostreams, no exceptions, no
// containers, statically linked; every buffer is on the stack.

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agent/runtime/monitor_protocol.h"

namespace {

namespace files = skiff::agent::runtime::monitor_files;

constexpr int kMaxArgs = 64;

struct Options {
  const char* dir = nullptr;
  const char* id = nullptr;
  const char* bundle = nullptr;
  const char* oomFile = nullptr;
  long long logMaxBytes = 10LL << 20;
  int logKeep = 3;
  char* runtime[kMaxArgs] = {};  // The runtime binary and its global arguments.
  int runtimeCount = 0;
};

long long nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

bool writeAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Relative names: the monitor's cwd is the container directory. Only `durable` files are synced:
// an exit status must survive a host crash; the pid and start markers only matter while the host
// stays up (a host crash takes the container with them), and syncing them would sit on the start
// path.
bool writeFileAtomic(const char* name, const char* text, bool durable) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", name);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = writeAll(fd, text, strlen(text)) && (!durable || fsync(fd) == 0);
  close(fd);
  return ok && rename(tmp, name) == 0;
}

// A log file that rotates to NAME.1 .. NAME.keep when the next write would pass maxBytes.
struct LogFile {
  const char* name;
  int fd = -1;
  long long size = 0;
};

void openLog(LogFile& log) {
  log.fd = open(log.name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st {};
  log.size = (log.fd >= 0 && fstat(log.fd, &st) == 0) ? st.st_size : 0;
}

void rotate(LogFile& log, int keep) {
  if (log.fd >= 0) close(log.fd);
  char from[256];
  char to[256];
  for (int i = keep; i >= 1; --i) {
    if (i == 1) {
      snprintf(from, sizeof from, "%s", log.name);
    } else {
      snprintf(from, sizeof from, "%s.%d", log.name, i - 1);
    }
    snprintf(to, sizeof to, "%s.%d", log.name, i);
    rename(from, to);
  }
  if (keep <= 0) unlink(log.name);
  openLog(log);
}

// Fills the current file up to maxBytes, preferring to cut after a newline, then rotates; a
// single read larger than the limit is spread over several files.
void appendLog(LogFile& log, const Options& options, const char* data, size_t size) {
  while (size > 0) {
    long long room = options.logMaxBytes - log.size;
    if (room <= 0) {
      rotate(log, options.logKeep);
      continue;
    }
    size_t take = size < static_cast<size_t>(room) ? size : static_cast<size_t>(room);
    if (take < size) {
      const char* cut = static_cast<const char*>(memrchr(data, '\n', take));
      if (cut != nullptr) {
        take = static_cast<size_t>(cut - data) + 1;
      } else if (log.size > 0) {
        rotate(log, options.logKeep);  // The line fits better in a fresh file.
        continue;
      }
    }
    if (log.fd < 0 || !writeAll(log.fd, data, take)) return;
    log.size += static_cast<long long>(take);
    data += take;
    size -= take;
  }
}

// Puts this process's root at the top of a mount namespace of its own when it is chrooted, and
// does nothing otherwise (or when it cannot tell). Returns false when it is chrooted and could not,
// with the root and working directory as they were.
//
// Why: the runtime's pivot_root puts the container's root where the caller's root is mounted.
// Outside a chroot that is the top of the container's mount namespace; inside a chroot (a
// debootstrap tree bind-mounted on itself) it is the chroot's mount point, below the host's
// "/". setns(CLONE_NEWNS) gives a joining process the namespace's top as its root, so
// `crun exec` (exec health checks) would run the command in the host's "/" and not see the
// container's files. With the chroot's root moved to the top of a private (slave) copy of the
// mount namespace first, the container's root is the top of its namespace here too.
bool rootAtNamespaceTop(const char* dir) {
  int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  struct statx chrootRoot;
  if (root < 0 || cwd < 0 || ns < 0 ||
      statx(root, "", AT_EMPTY_PATH, STATX_INO | STATX_MNT_ID, &chrootRoot) != 0) {
    return true;
  }
  // Joining our own mount namespace moves our root to its top (and our working directory).
  if (setns(ns, CLONE_NEWNS) != 0) return true;
  auto restore = [&] {
    if (fchdir(root) != 0 || chroot(".") != 0) _exit(127);  // Never run the runtime outside.
    if (fchdir(cwd) != 0) _exit(127);
    return false;
  };
  // The same directory on the same mount: not chrooted. (A chroot into a bind mount of "/" has
  // the same inode as the top but another mount.)
  struct statx top;
  if (statx(AT_FDCWD, "/", 0, STATX_INO | STATX_MNT_ID, &top) != 0) return restore();
  if (top.stx_dev_major == chrootRoot.stx_dev_major &&
      top.stx_dev_minor == chrootRoot.stx_dev_minor && top.stx_ino == chrootRoot.stx_ino &&
      ((top.stx_mask & chrootRoot.stx_mask & STATX_MNT_ID) == 0 ||
       top.stx_mnt_id == chrootRoot.stx_mnt_id)) {
    restore();  // The same root, but never risk running the runtime outside it.
    return true;
  }
  // The chroot's path seen from the top, before the namespace copy changes what `root` names.
  char link[64];
  char path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", root);
  ssize_t length = readlink(link, path, sizeof path - 1);
  if (length <= 0 || path[0] != '/') return restore();
  path[length] = '\0';
  if (unshare(CLONE_NEWNS) != 0) return restore();
  // Mounts made by the host still reach us; ours do not reach the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) return restore();
  // pivot_root needs the new root to be a mount point.
  if (mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) != 0 || chdir(path) != 0) {
    return restore();
  }
  if (syscall(SYS_pivot_root, ".", ".") != 0) return restore();
  // The old top is stacked on the new root now; detaching it leaves the chroot's tree on top.
  if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) _exit(127);
  if (dir[0] == '/' ? chdir(dir) != 0 : fchdir(cwd) != 0) _exit(127);
  return true;
}

// Starts the runtime with `verb...` appended to its global arguments; stdout/stderr go to
// outFd/errFd and nothing else of ours is inherited. `ownRoot`: see rootAtNamespaceTop.
pid_t spawnRuntime(const Options& options, const char* const* verb, int outFd, int errFd,
                   bool ownRoot = false) {
  char* argv[kMaxArgs + 16];
  int n = 0;
  for (int i = 0; i < options.runtimeCount; ++i) argv[n++] = options.runtime[i];
  for (int i = 0; verb[i] != nullptr && n < kMaxArgs + 15; ++i)
    argv[n++] = const_cast<char*>(verb[i]);
  argv[n] = nullptr;
  static char envPath[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  static char* envp[] = {envPath, nullptr};
  pid_t pid = fork();
  if (pid != 0) return pid;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  int devNull = open("/dev/null", O_RDWR);
  if (devNull < 0 || dup2(devNull, 0) < 0 || dup2(outFd, 1) < 0 || dup2(errFd, 2) < 0) _exit(127);
  syscall(SYS_close_range, 3U, ~0U, 0U);
  if (ownRoot && !rootAtNamespaceTop(options.dir)) {
    static const char kWarning[] =
        "skiff-monitor: cannot move a chroot's root to the top of a mount namespace; exec "
        "checks will not see the container's files\n";
    writeAll(2, kWarning, sizeof kWarning - 1);
  }
  execve(argv[0], argv, envp);
  _exit(127);
}

int waitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

long long readOomKillCount(const char* path) {
  if (path == nullptr) return 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[1024];
  ssize_t n = read(fd, buffer, sizeof buffer - 1);
  close(fd);
  if (n <= 0) return 0;
  buffer[n] = '\0';
  // "oom_kill N" is its own line in both v1 memory.oom_control and v2 memory.events.
  for (char* line = buffer; line != nullptr && *line != '\0';) {
    if (strncmp(line, "oom_kill ", 9) == 0) return atoll(line + 9);
    char* next = strchr(line, '\n');
    line = next != nullptr ? next + 1 : nullptr;
  }
  return 0;
}

void writeExit(int exitCode, int sig, long long oomKills, bool startError) {
  char text[256];
  snprintf(text, sizeof text,
           "exitCode=%d\nsignal=%d\noomKillCount=%lld\nstartError=%d\nfinishedAtMs=%lld\n",
           exitCode, sig, oomKills, startError ? 1 : 0, nowMs());
  writeFileAtomic(files::kExit, text, true);
}

void deleteContainer(const Options& options, int devNull) {
  const char* verb[] = {"delete", "--force", options.id, nullptr};
  pid_t pid = spawnRuntime(options, verb, devNull, devNull);
  if (pid > 0) waitChild(pid);
}

bool parseOptions(int argc, char** argv, Options& options) {
  int i = 1;
  for (; i < argc; ++i) {
    const char* arg = argv[i];
    if (strcmp(arg, "--") == 0) {
      ++i;
      break;
    }
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (strcmp(arg, "--dir") == 0) {
      options.dir = value;
    } else if (strcmp(arg, "--id") == 0) {
      options.id = value;
    } else if (strcmp(arg, "--bundle") == 0) {
      options.bundle = value;
    } else if (strcmp(arg, "--oom-file") == 0) {
      options.oomFile = value;
    } else if (strcmp(arg, "--log-max-bytes") == 0) {
      options.logMaxBytes = atoll(value);
    } else if (strcmp(arg, "--log-keep") == 0) {
      options.logKeep = atoi(value);
    } else {
      return false;
    }
  }
  for (; i < argc && options.runtimeCount < kMaxArgs; ++i) {
    options.runtime[options.runtimeCount++] = argv[i];
  }
  return options.dir != nullptr && options.id != nullptr && options.bundle != nullptr &&
         options.runtimeCount > 0 && options.runtime[0][0] == '/' && options.logMaxBytes > 0 &&
         options.logKeep >= 0 && options.logKeep < 100;
}

int runMonitor(const Options& options) {
  int devNull = open("/dev/null", O_RDWR | O_CLOEXEC);
  char text[64];
  snprintf(text, sizeof text, "%d\n", static_cast<int>(getpid()));
  writeFileAtomic(files::kMonitorPid, text, false);

  // The container init becomes our child once the runtime that forked it exits.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sigFd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  // The agent stops containers through the runtime, never by signalling us: we must live to
  // record the exit.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  int outPipe[2];
  int errPipe[2];
  if (pipe2(outPipe, O_CLOEXEC) != 0 || pipe2(errPipe, O_CLOEXEC) != 0) {
    writeExit(-1, 0, 0, true);
    return 1;
  }
  // `run --detach` is `create` and `start` in one runtime process: one exec less per container.
  const char* createVerb[] = {"run",        "--detach",           "--bundle", options.bundle,
                              "--pid-file", files::kContainerPid, options.id, nullptr};
  pid_t createPid = spawnRuntime(options, createVerb, outPipe[1], errPipe[1], /*ownRoot=*/true);
  close(outPipe[1]);
  close(errPipe[1]);
  int status = createPid > 0 ? waitChild(createPid) : -1;
  pid_t initPid = 0;
  if (status == 0) {
    int fd = open(files::kContainerPid, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buffer[32] = {};
      if (read(fd, buffer, sizeof buffer - 1) > 0) initPid = static_cast<pid_t>(atoi(buffer));
      close(fd);
    }
  }
  if (initPid <= 0) {
    deleteContainer(options, devNull);
    writeExit(-1, 0, 0, true);
    return 1;
  }
  snprintf(text, sizeof text, "%lld\n", nowMs());
  writeFileAtomic(files::kStarted, text, false);

  LogFile logs[2] = {{files::kStdout}, {files::kStderr}};
  openLog(logs[0]);
  openLog(logs[1]);
  int pipes[2] = {outPipe[0], errPipe[0]};
  bool exited = false;
  int exitStatus = 0;
  long long exitedAt = 0;
  char buffer[16384];
  // Output is drained until both pipes close; the pid namespace dies with its init, so they
  // close right after the exit. The grace bounds a descendant that escaped with a copy.
  while (pipes[0] >= 0 || pipes[1] >= 0 || !exited) {
    if (exited && nowMs() - exitedAt > 2000) break;
    pollfd fds[3];
    nfds_t count = 0;
    fds[count++] = pollfd{sigFd, POLLIN, 0};
    for (int fd : pipes) {
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    }
    int ready = poll(fds, count, exited ? 100 : 1000);
    if (ready < 0 && errno != EINTR) break;
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      signalfd_siginfo info;
      while (read(sigFd, &info, sizeof info) > 0) {
      }
    }
    // Reap everything: the init and any runtime helper re-parented to us.
    while (true) {
      int childStatus = 0;
      pid_t pid = waitpid(-1, &childStatus, WNOHANG);
      if (pid <= 0) break;
      if (pid == initPid) {
        exited = true;
        exitStatus = childStatus;
        exitedAt = nowMs();
      }
    }
    for (nfds_t i = 1; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      int which = fds[i].fd == pipes[0] ? 0 : 1;
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        close(pipes[which]);
        pipes[which] = -1;
        continue;
      }
      appendLog(logs[which], options, buffer, static_cast<size_t>(n));
    }
  }
  int exitCode = -1;
  int sig = 0;
  if (WIFEXITED(exitStatus)) exitCode = WEXITSTATUS(exitStatus);
  if (WIFSIGNALED(exitStatus)) {
    sig = WTERMSIG(exitStatus);
    exitCode = 128 + sig;
  }
  // Read the kernel's counter before `delete` removes the cgroup.
  long long oomKills = readOomKillCount(options.oomFile);
  writeExit(exitCode, sig, oomKills, false);
  deleteContainer(options, devNull);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parseOptions(argc, argv, options)) {
    static const char kUsage[] =
        "usage: skiff-monitor --dir DIR --id ID --bundle DIR [--oom-file PATH] "
        "[--log-max-bytes N] [--log-keep N] -- RUNTIME [ARGS...]\n";
    writeAll(2, kUsage, sizeof kUsage - 1);
    return 2;
  }
  if (chdir(options.dir) != 0) {
    perror("skiff-monitor: chdir");
    return 2;
  }
  // Detach: this process (spawned by the agent, so no process group leader) starts a session and
  // forks the monitor, then exits, so the monitor is no child of the agent, no member of its
  // session or process group, and no session leader that could acquire a terminal.
  if (setsid() < 0) {
    // A process group leader (started from a shell) cannot start a session; a child can.
    pid_t first = fork();
    if (first < 0) return 1;
    if (first > 0) {
      int status = waitChild(first);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (setsid() < 0) _exit(1);
  }
  pid_t monitor = fork();
  if (monitor < 0) return 1;
  if (monitor > 0) return 0;
  int devNull = open("/dev/null", O_RDWR);
  if (devNull >= 0) {
    dup2(devNull, 0);
    dup2(devNull, 1);
    dup2(devNull, 2);
  }
  syscall(SYS_close_range, 3U, ~0U, 0U);
  umask(027);
  return runMonitor(options);
}
