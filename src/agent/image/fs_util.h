#pragma once

// Small filesystem helpers shared by the image store (internal to this library). All are
// thread-safe: they use no process-wide state such as the working directory.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace skiff::agent::image::fs {

// mkdir -p. Existing directories are fine.
Status makeDirs(const std::string& path, unsigned mode = 0755);
// rm -rf without following symlinks. A missing path is fine.
Status removeTree(const std::string& path);
// Bytes allocated on disk under `path` (st_blocks), counting hard-linked inodes once.
Result<int64_t> diskUsage(const std::string& path);
// Writes `content` to a temporary file beside `path`, fsyncs it, renames it over `path` and
// fsyncs the directory: after a crash `path` holds the old or the new content, never a mix.
// Durability::kProcessCrash skips both fsyncs: readers and a restarted process (after kill -9)
// still see the old or the new content, but a host crash may lose the write.
enum class Durability { kHostCrash, kProcessCrash };
Status writeFileAtomic(const std::string& path, std::string_view content,
                       Durability durability = Durability::kHostCrash);
Result<std::string> readFile(const std::string& path, size_t maxBytes = 64 << 20);
bool exists(const std::string& path);
// Turns an archive member name into a clean relative path: no leading '/', no "." components,
// no empty components. Returns nullopt for names with ".." (unsafe) and "" for the root itself.
std::optional<std::string> cleanArchivePath(std::string_view name);
// Names in `dir` (without "." and ".."); an empty list if it does not exist.
std::vector<std::string> listDir(const std::string& dir);
// Whether `path` (absolute, no symlinks) is a mount point in this mount namespace.
bool isMountPoint(const std::string& path);
// Every mount point at or below `prefix`, deepest first (for tests' cleanup).
std::vector<std::string> mountsUnder(const std::string& prefix);
// fsync of a directory, so entries renamed into it are durable.
Status syncDir(const std::string& dir);
// syncfs(2) of the filesystem holding `path`.
Status syncFilesystem(const std::string& path);

}  // namespace skiff::agent::image::fs
