#include "agent/runtime/writable_layer.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace skiff::agent::runtime {

Status createWritableLayer(ProcessRunner& runner, const WritableLayerPaths& paths,
                           uint64_t limitBytes) {
  constexpr uint64_t kMinBytes = 4 << 20;  // Below this ext4 has no room for its metadata.
  if (limitBytes < kMinBytes) {
    return fail(ErrorCode::kInvalidArgument, "disk limit below 4 MiB");
  }
  int fd = open(paths.imageFile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + paths.imageFile, errno));
  // Sparse: the file only occupies what the container writes.
  if (ftruncate(fd, static_cast<off_t>(limitBytes)) != 0) {
    int err = errno;
    close(fd);
    unlink(paths.imageFile.c_str());
    return std::unexpected(errnoError("truncate " + paths.imageFile, err));
  }
  close(fd);
  auto cleanupImage = [&](Error error) -> Status {
    unlink(paths.imageFile.c_str());
    return std::unexpected(std::move(error));
  };

  ProcessSpec mkfs;
  // -m 0: no blocks reserved for root (the container is root); no journal: it is scratch space
  // that does not survive the container anyway.
  mkfs.argv = {"/usr/sbin/mkfs.ext4", "-q",           "-F", "-m", "0", "-O", "^has_journal", "-E",
               "root_owner=0:0",      paths.imageFile};
  mkfs.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  mkfs.timeout = std::chrono::seconds(30);
  auto formatted = runner.run(mkfs);
  if (!formatted) return cleanupImage(formatted.error().wrap("mkfs.ext4"));
  if (!formatted->ok()) return cleanupImage(Error(ErrorCode::kIo, "mkfs.ext4: " + formatted->err));

  if (mkdir(paths.mountPoint.c_str(), 0700) != 0 && errno != EEXIST) {
    return cleanupImage(errnoError("mkdir " + paths.mountPoint, errno));
  }
  // mount(8) sets up the loop device with LO_FLAGS_AUTOCLEAR, so umount frees it.
  ProcessSpec mountSpec;
  mountSpec.argv = {"/usr/bin/mount", "-t", "ext4", "-o", "loop,nodev,nosuid", paths.imageFile,
                    paths.mountPoint};
  mountSpec.env = mkfs.env;
  mountSpec.timeout = std::chrono::seconds(30);
  auto mounted = runner.run(mountSpec);
  if (!mounted) return cleanupImage(mounted.error().wrap("mount"));
  if (!mounted->ok()) return cleanupImage(Error(ErrorCode::kIo, "mount: " + mounted->err));

  for (const char* sub : {"/upper", "/work"}) {
    std::string dir = paths.mountPoint + sub;
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      Error error = errnoError("mkdir " + dir, errno);
      (void)destroyWritableLayer(paths);
      return std::unexpected(std::move(error));
    }
  }
  return {};
}

Status destroyWritableLayer(const WritableLayerPaths& paths) {
  if (umount2(paths.mountPoint.c_str(), 0) != 0 && errno != EINVAL && errno != ENOENT) {
    if (errno != EBUSY || umount2(paths.mountPoint.c_str(), MNT_DETACH) != 0) {
      return std::unexpected(errnoError("umount " + paths.mountPoint, errno));
    }
  }
  rmdir(paths.mountPoint.c_str());
  if (unlink(paths.imageFile.c_str()) != 0 && errno != ENOENT) {
    return std::unexpected(errnoError("unlink " + paths.imageFile, errno));
  }
  return {};
}

}  // namespace skiff::agent::runtime
