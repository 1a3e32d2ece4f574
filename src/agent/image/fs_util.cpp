#include "agent/image/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

namespace skiff::agent::image::fs {
namespace {

// Removes everything inside the directory open as `dirFd` (which this function closes).
Status removeContents(int dirFd, const std::string& path) {
  DIR* dir = ::fdopendir(dirFd);
  if (dir == nullptr) {
    int err = errno;
    ::close(dirFd);
    return std::unexpected(errnoError("opendir " + path, err));
  }
  Status result;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    if (::unlinkat(dirFd, entry->d_name, 0) == 0) {
      continue;
    }
    if (errno != EISDIR && errno != EPERM) {
      if (errno == ENOENT) {
        continue;
      }
      result = std::unexpected(errnoError("unlink " + path + "/" + entry->d_name, errno));
      break;
    }
    int child = ::openat(dirFd, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) {
      result = std::unexpected(errnoError("open " + path + "/" + entry->d_name, errno));
      break;
    }
    // A directory left without any permission bits (overlayfs's work/work) still opens as root;
    // nothing else needs fixing up before its contents go.
    Status inner = removeContents(child, path + "/" + entry->d_name);
    if (!inner) {
      result = inner;
      break;
    }
    if (::unlinkat(dirFd, entry->d_name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
      result = std::unexpected(errnoError("rmdir " + path + "/" + entry->d_name, errno));
      break;
    }
  }
  ::closedir(dir);
  return result;
}

Result<int64_t> usage(int dirFd, const std::string& path, std::set<std::pair<dev_t, ino_t>>& seen) {
  DIR* dir = ::fdopendir(dirFd);
  if (dir == nullptr) {
    int err = errno;
    ::close(dirFd);
    return std::unexpected(errnoError("opendir " + path, err));
  }
  int64_t total = 0;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    struct stat st {};
    if (::fstatat(dirFd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode)) {
      if (!seen.insert({st.st_dev, st.st_ino}).second) {
        continue;
      }
    }
    total += static_cast<int64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode)) {
      int child = ::openat(dirFd, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        continue;
      }
      auto sub = usage(child, path + "/" + entry->d_name, seen);
      if (!sub) {
        ::closedir(dir);
        return sub;
      }
      total += *sub;
    }
  }
  ::closedir(dir);
  return total;
}

std::string unescapeMountPath(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int value = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(value));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::string> allMountPoints() {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id;
    std::string parent;
    std::string devs;
    std::string root;
    std::string mountPoint;
    if (fields >> id >> parent >> devs >> root >> mountPoint) {
      out.push_back(unescapeMountPath(mountPoint));
    }
  }
  return out;
}

}  // namespace

Status makeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) {
    return {};
  }
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (prefix.empty()) {
      continue;
    }
    if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return std::unexpected(errnoError("mkdir " + prefix, errno));
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::kIo, "mkdir " + path + ": exists and is not a directory");
  }
  return {};
}

Status removeTree(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) {
    return {};
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  SKIFF_TRY_STATUS(removeContents(fd, path), "remove " + path);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
    return std::unexpected(errnoError("rmdir " + path, errno));
  }
  return {};
}

Result<int64_t> diskUsage(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return std::unexpected(errnoError("stat " + path, errno));
  }
  int64_t self = static_cast<int64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) {
    return self;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  std::set<std::pair<dev_t, ino_t>> seen;
  auto inner = usage(fd, path, seen);
  if (!inner) {
    return inner;
  }
  return self + *inner;
}

Status writeFileAtomic(const std::string& path, std::string_view content, Durability durability) {
  bool sync = durability == Durability::kHostCrash;
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("create " + tmp, errno));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return std::unexpected(errnoError("write " + tmp, err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0 || (sync && ::fsync(fd) != 0)) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return std::unexpected(errnoError("fsync " + tmp, err));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return std::unexpected(errnoError("rename " + tmp, err));
  }
  return sync ? syncDir(path.substr(0, path.rfind('/'))) : Status{};
}

Result<std::string> readFile(const std::string& path, size_t maxBytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  std::string out;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      return std::unexpected(errnoError("read " + path, err));
    }
    if (n == 0) {
      break;
    }
    if (out.size() + static_cast<size_t>(n) > maxBytes) {
      ::close(fd);
      return fail(ErrorCode::kTooLarge,
                  "read " + path + ": larger than " + std::to_string(maxBytes) + " bytes");
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> listDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return out;
  }
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") {
      out.emplace_back(name);
    }
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000  // Linux 5.8; older glibc headers lack the name.
#endif

bool isMountPoint(const std::string& path) {
  // statx answers from the dentry; reading /proc/self/mountinfo costs time proportional to the
  // number of mounts (several per container) and takes the mount namespace lock that every
  // container start and stop also needs.
  struct statx info {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &info) == 0 &&
      (info.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0) {
    return (info.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  }
  for (const std::string& mountPoint : allMountPoints()) {
    if (mountPoint == path) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> mountsUnder(const std::string& prefix) {
  std::vector<std::string> out;
  for (std::string& mountPoint : allMountPoints()) {
    if (mountPoint == prefix || mountPoint.starts_with(prefix + "/")) {
      out.push_back(std::move(mountPoint));
    }
  }
  // Mounts listed later sit on top of earlier ones; undo them first.
  std::reverse(out.begin(), out.end());
  return out;
}

Status syncDir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + dir, errno));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return std::unexpected(errnoError("fsync " + dir, err));
  }
  return {};
}

Status syncFilesystem(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return std::unexpected(errnoError("syncfs " + path, err));
  }
  return {};
}

std::optional<std::string> cleanArchivePath(std::string_view name) {
  std::string out;
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    std::string_view part =
        name.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (part == "..") {
      return std::nullopt;
    }
    if (!part.empty() && part != ".") {
      if (!out.empty()) {
        out.push_back('/');
      }
      out.append(part);
    }
    if (slash == std::string_view::npos) {
      break;
    }
    pos = slash + 1;
  }
  return out;
}

}  // namespace skiff::agent::image::fs
