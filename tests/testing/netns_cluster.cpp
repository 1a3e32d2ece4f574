#include "testing/netns_cluster.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "testing/missing.h"

extern char** environ;

namespace skiff::testing {

ShellResult run(const std::vector<std::string>& argv) {
  ShellResult result;
  char path[] = "/tmp/skiff-netns-cmd-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ) == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  ::lseek(fd, 0, SEEK_SET);
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) result.output.append(buffer, n);
  ::close(fd);
  ::unlink(path);
  return result;
}

bool runInNetns(const std::string& netnsPath, const std::function<void()>& fn, std::string* error) {
  bool ok = false;
  std::thread worker([&] {
    int fd = ::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      if (error) *error = "setns " + netnsPath + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    fn();
    ok = true;
  });
  worker.join();
  return ok;
}

std::string NetnsCluster::skipReason() {
  return firstMissing(
      {missingRoot("network namespaces"), missingProgram("ip"), missingProgram("nsenter")});
}

std::string NetnsCluster::hostAddress(int host) {
  return "10.213.0." + std::to_string(11 + host);
}

std::string NetnsCluster::name(int host) const {
  return prefix_ + (host < 0 ? "-fabric" : "-h" + std::to_string(host));
}

std::string NetnsCluster::netnsPath(int host) const {
  return "/run/netns/" + name(host);
}

Result<std::unique_ptr<NetnsCluster>> NetnsCluster::create(int hosts, const std::string& prefix) {
  std::unique_ptr<NetnsCluster> cluster(new NetnsCluster(hosts, prefix));
  auto must = [&](const std::vector<std::string>& argv) -> Status {
    auto result = run(argv);
    if (result.exitCode != 0) {
      std::string command;
      for (const auto& arg : argv) command += arg + " ";
      return fail(ErrorCode::kIo, command + "failed: " + result.output);
    }
    return {};
  };
  std::string fabric = cluster->name(-1);
  auto build = [&]() -> Status {
    SKIFF_TRY_STATUS(must({"ip", "netns", "add", fabric}), "fabric");
    SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "link", "set", "lo", "up"}), "fabric");
    SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "link", "add", "br0", "type", "bridge"}), "bridge");
    SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "addr", "add", std::string(kFabricAddress) + "/24",
                           "dev", "br0"}),
                     "bridge");
    SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "link", "set", "br0", "up"}), "bridge");
    for (int i = 0; i < hosts; ++i) {
      std::string host = cluster->name(i);
      std::string port = "p" + std::to_string(i);
      SKIFF_TRY_STATUS(must({"ip", "netns", "add", host}), "host");
      SKIFF_TRY_STATUS(must({"ip", "-n", host, "link", "set", "lo", "up"}), "host");
      SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "link", "add", port, "type", "veth", "peer",
                             "name", "eth0", "netns", host}),
                       "host link");
      SKIFF_TRY_STATUS(must({"ip", "-n", fabric, "link", "set", port, "master", "br0", "up"}),
                       "host link");
      SKIFF_TRY_STATUS(
          must({"ip", "-n", host, "addr", "add", hostAddress(i) + "/24", "dev", "eth0"}), "addr");
      SKIFF_TRY_STATUS(must({"ip", "-n", host, "link", "set", "eth0", "up"}), "host link");
      SKIFF_TRY_STATUS(must({"ip", "-n", host, "route", "add", "default", "via", kFabricAddress}),
                       "route");
    }
    return {};
  };
  if (auto built = build(); !built) return std::unexpected(built.error());
  return cluster;
}

Result<pid_t> NetnsCluster::spawn(int host, const std::vector<std::string>& argv,
                                  const std::string& logPath, const std::vector<std::string>& env) {
  return spawnIn(netnsPath(host), argv, logPath, env);
}

Result<pid_t> NetnsCluster::spawnIn(const std::string& netnsPath,
                                    const std::vector<std::string>& argv,
                                    const std::string& logPath,
                                    const std::vector<std::string>& env) {
  std::vector<std::string> full = {"nsenter", "--net=" + netnsPath, "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(errnoError("fork", errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    int out = ::open(logPath.empty() ? "/dev/null" : logPath.c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    for (const auto& assignment : env) ::putenv(const_cast<char*>(assignment.c_str()));
    std::vector<char*> args;
    for (const auto& arg : full) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  children_.push_back(pid);
  return pid;
}

void NetnsCluster::stop(pid_t pid, int graceMs) {
  ::kill(-pid, SIGTERM);
  for (int waited = 0; waited < graceMs; waited += 20) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      ::kill(-pid, SIGKILL);
      std::erase(children_, pid);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  std::erase(children_, pid);
}

void NetnsCluster::destroy() {
  for (pid_t pid : children_) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  children_.clear();
  for (int i = hosts_ - 1; i >= -1; --i) run({"ip", "netns", "del", name(i)});
}

NetnsCluster::~NetnsCluster() {
  destroy();
}

}  // namespace skiff::testing
