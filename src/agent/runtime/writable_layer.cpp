#include "agent/runtime/writable_layer.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

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
  // discard: deleted files give their blocks back to the sparse image (the pool reuses layers).
  mountSpec.argv = {
      "/usr/bin/mount", "-t", "ext4", "-o", "loop,nodev,nosuid,discard", paths.imageFile,
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

namespace {

namespace stdfs = std::filesystem;

// Makes the mounted filesystem at `from` appear at `to` (created) and unmounts `from`.
Status moveMount(const std::string& from, const std::string& to) {
  if (mkdir(to.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("mkdir " + to, errno));
  }
  if (mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    int err = errno;
    rmdir(to.c_str());
    return std::unexpected(errnoError("bind " + from + " to " + to, err));
  }
  if (umount2(from.c_str(), 0) != 0 && umount2(from.c_str(), MNT_DETACH) != 0) {
    return std::unexpected(errnoError("umount " + from, errno));
  }
  rmdir(from.c_str());
  return {};
}

// Deletes everything the container wrote and recreates empty upper/ and work/.
Status emptyLayer(const std::string& mountPoint) {
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(mountPoint, ec)) {
    if (entry.path().filename() == "lost+found") continue;
    stdfs::remove_all(entry.path(), ec);
    if (ec) return fail(ErrorCode::kIo, "empty " + entry.path().string() + ": " + ec.message());
  }
  if (ec) return fail(ErrorCode::kIo, "list " + mountPoint + ": " + ec.message());
  for (const char* sub : {"/upper", "/work"}) {
    std::string dir = mountPoint + sub;
    if (mkdir(dir.c_str(), 0755) != 0) return std::unexpected(errnoError("mkdir " + dir, errno));
  }
  return {};
}

}  // namespace

WritableLayerPool::WritableLayerPool(ProcessRunner& runner, std::string poolDir,
                                     size_t maxIdlePerSize)
    : runner_(runner), poolDir_(std::move(poolDir)), maxIdlePerSize_(maxIdlePerSize) {}

Status WritableLayerPool::open() {
  std::error_code ec;
  stdfs::create_directories(poolDir_, ec);
  if (ec) return fail(ErrorCode::kIo, "create " + poolDir_ + ": " + ec.message());
  // Idle layers of an earlier agent: nobody uses them, and their sizes are not recorded.
  for (const auto& entry : stdfs::directory_iterator(poolDir_, ec)) {
    std::string path = entry.path().string();
    if (entry.is_directory(ec)) {
      (void)destroyWritableLayer({path + ".img", path});
    } else if (path.ends_with(".img")) {
      unlink(path.c_str());
    }
  }
  return {};
}

Status WritableLayerPool::acquire(const WritableLayerPaths& paths, uint64_t limitBytes) {
  std::string entry;
  {
    std::lock_guard lock(mutex_);
    auto it = idle_.find(limitBytes);
    if (it != idle_.end() && !it->second.empty()) {
      entry = std::move(it->second.back());
      it->second.pop_back();
    }
  }
  if (entry.empty()) return createWritableLayer(runner_, paths, limitBytes);
  if (rename((entry + ".img").c_str(), paths.imageFile.c_str()) != 0) {
    (void)destroyWritableLayer({entry + ".img", entry});
    return createWritableLayer(runner_, paths, limitBytes);
  }
  if (auto moved = moveMount(entry, paths.mountPoint); !moved) {
    (void)destroyWritableLayer({paths.imageFile, entry});
    (void)destroyWritableLayer(paths);
    return createWritableLayer(runner_, paths, limitBytes);
  }
  return {};
}

Status WritableLayerPool::release(const WritableLayerPaths& paths) {
  struct stat st {};
  if (stat(paths.imageFile.c_str(), &st) != 0) return destroyWritableLayer(paths);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  std::string entry;
  {
    std::lock_guard lock(mutex_);
    if (idle_[size].size() >= maxIdlePerSize_) return destroyWritableLayer(paths);
    entry = poolDir_ + "/" + std::to_string(++nextId_);
  }
  Status kept = emptyLayer(paths.mountPoint);
  if (kept) kept = moveMount(paths.mountPoint, entry);
  if (kept && rename(paths.imageFile.c_str(), (entry + ".img").c_str()) != 0) {
    kept = std::unexpected(errnoError("rename " + paths.imageFile, errno));
  }
  if (!kept) {
    (void)destroyWritableLayer({entry + ".img", entry});
    (void)destroyWritableLayer(paths);
    return std::unexpected(kept.error().wrap("keep writable layer"));
  }
  std::lock_guard lock(mutex_);
  idle_[size].push_back(std::move(entry));
  return {};
}

void WritableLayerPool::clear() {
  std::map<uint64_t, std::vector<std::string>> idle;
  {
    std::lock_guard lock(mutex_);
    idle.swap(idle_);
  }
  for (const auto& [size, entries] : idle) {
    for (const std::string& entry : entries) (void)destroyWritableLayer({entry + ".img", entry});
  }
}

size_t WritableLayerPool::idleCount() const {
  std::lock_guard lock(mutex_);
  size_t count = 0;
  for (const auto& [size, entries] : idle_) count += entries.size();
  return count;
}

}  // namespace skiff::agent::runtime
