#include "agent/network/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "agent/image/fs_util.h"

namespace skiff::agent::network {

Status prepareNetnsDir(const std::string& dir) {
  SKIFF_TRY_STATUS(image::fs::makeDirs(dir, 0755), "netns dir");
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) == 0) return {};
  if (errno != EINVAL) return std::unexpected(errnoError("make-shared " + dir, errno));
  // Not a mount point yet: bind it on itself first (what `ip netns` does with /run/netns).
  if (::mount(dir.c_str(), dir.c_str(), "none", MS_BIND | MS_REC, nullptr) != 0) {
    return std::unexpected(errnoError("bind " + dir, errno));
  }
  if (::mount("", dir.c_str(), "none", MS_SHARED | MS_REC, nullptr) != 0) {
    return std::unexpected(errnoError("make-shared " + dir, errno));
  }
  return {};
}

Status releaseNetnsDir(const std::string& dir) {
  // A directory prepared twice (an agent restarted without its namespaces gone) holds the bind
  // more than once; each unmount takes one off.
  for (int i = 0; i < 16; ++i) {
    if (::umount2(dir.c_str(), MNT_DETACH) == 0) continue;
    if (errno == EINVAL || errno == ENOENT) return {};
    return std::unexpected(errnoError("unmount " + dir, errno));
  }
  return {};
}

Result<CreatedNetns> createNetns(const std::string& path) {
  int file = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (file < 0) return std::unexpected(errnoError("create " + path, errno));
  ::close(file);
  // unshare() changes only the calling thread's namespace; a thread of its own keeps the
  // caller's untouched. The route socket opened there stays bound to the new namespace.
  Result<CreatedNetns> result = fail(ErrorCode::kInternal, "netns thread did not run");
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      result = std::unexpected(errnoError("unshare(CLONE_NEWNET)", errno));
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0) {
      result = std::unexpected(errnoError("bind netns at " + path, errno));
      return;
    }
    CreatedNetns created;
    created.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (created.fd < 0) {
      result = std::unexpected(errnoError("open " + path, errno));
      return;
    }
    auto socket = RouteSocket::open();
    if (!socket) {
      ::close(created.fd);
      result = std::unexpected(socket.error());
      return;
    }
    created.socket = std::move(*socket);
    result = std::move(created);
  });
  worker.join();
  if (!result) (void)deleteNetns(path);
  return result;
}

Result<std::unique_ptr<RouteSocket>> routeSocketIn(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errnoError("open " + path, errno));
  Result<std::unique_ptr<RouteSocket>> result = fail(ErrorCode::kInternal, "not run");
  std::thread worker([&] {
    if (::setns(fd, CLONE_NEWNET) != 0) {
      result = std::unexpected(errnoError("setns " + path, errno));
      return;
    }
    result = RouteSocket::open();
  });
  worker.join();
  ::close(fd);
  return result;
}

Status deleteNetns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return std::unexpected(errnoError("unmount " + path, errno));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return std::unexpected(errnoError("remove " + path, errno));
  }
  return {};
}

}  // namespace skiff::agent::network
