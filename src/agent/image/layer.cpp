#include "agent/image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "agent/image/fs_util.h"

namespace skiff::agent::image {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMeta = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

struct ReaderDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriterDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};

std::string archiveError(archive* a, std::string_view fallback) {
  const char* text = archive_error_string(a);
  return text != nullptr ? std::string(text) : std::string(fallback);
}

// Drops the xattrs that would let a layer steer overlayfs itself.
void filterXattrs(archive_entry* entry) {
  if (archive_entry_xattr_count(entry) == 0) {
    return;
  }
  std::vector<std::pair<std::string, std::string>> keep;
  archive_entry_xattr_reset(entry);
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  bool dropped = false;
  while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
    std::string_view n = name != nullptr ? name : "";
    if (n.starts_with("trusted.overlay.")) {
      dropped = true;
      continue;
    }
    keep.emplace_back(std::string(n), std::string(static_cast<const char*>(value), size));
  }
  if (!dropped) {
    return;
  }
  archive_entry_xattr_clear(entry);
  for (const auto& [n, v] : keep) {
    archive_entry_xattr_add_entry(entry, n.c_str(), v.data(), v.size());
  }
}

// Creates the directories of `rel` under `root` as needed, refusing any component that is a
// symlink or not a directory, so a whiteout can never act outside the layer.
Status safeDirs(const std::string& root, std::string_view rel) {
  std::string path = root;
  size_t pos = 0;
  while (pos < rel.size()) {
    size_t slash = rel.find('/', pos);
    std::string_view part =
        rel.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    path.append("/").append(part);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno != ENOENT || ::mkdir(path.c_str(), 0755) != 0) {
        return std::unexpected(errnoError("mkdir " + path, errno));
      }
    } else if (!S_ISDIR(st.st_mode)) {
      return fail(ErrorCode::kInvalidArgument,
                  "layer path " + path + " goes through a symlink or a file");
    }
    if (slash == std::string_view::npos) {
      break;
    }
    pos = slash + 1;
  }
  return {};
}

}  // namespace

Result<UnpackStats> unpackLayer(const std::string& blobPath, const std::string& destDir) {
  // libarchive's symlink check walks the whole destination path, so it must contain no symlink.
  char* resolved = ::realpath(destDir.c_str(), nullptr);
  if (resolved == nullptr) {
    return std::unexpected(errnoError("realpath " + destDir, errno));
  }
  std::string root = resolved;
  std::free(resolved);

  std::unique_ptr<archive, ReaderDeleter> reader(archive_read_new());
  std::unique_ptr<archive, WriterDeleter> writer(archive_write_disk_new());
  if (!reader || !writer) {
    return fail(ErrorCode::kInternal, "libarchive: out of memory");
  }
  // Only the filters OCI allows, all built in (no external programs), detected from the bytes.
  archive_read_support_filter_gzip(reader.get());
  archive_read_support_filter_zstd(reader.get());
  archive_read_support_filter_none(reader.get());
  archive_read_support_format_tar(reader.get());
  archive_write_disk_set_options(
      writer.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                        ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                        ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_UNLINK);
  if (archive_read_open_filename(reader.get(), blobPath.c_str(), 1 << 20) != ARCHIVE_OK) {
    return fail(ErrorCode::kInvalidArgument,
                "open layer " + blobPath + ": " + archiveError(reader.get(), "unreadable"));
  }

  UnpackStats stats;
  while (true) {
    archive_entry* entry = nullptr;
    int rc = archive_read_next_header(reader.get(), &entry);
    if (rc == ARCHIVE_EOF) {
      break;
    }
    if (rc < ARCHIVE_WARN) {
      return fail(ErrorCode::kInvalidArgument,
                  "read layer: " + archiveError(reader.get(), "bad archive header"));
    }
    const char* rawName = archive_entry_pathname(entry);
    std::string name = rawName != nullptr ? rawName : "";
    auto rel = fs::cleanArchivePath(name);
    if (!rel) {
      return fail(ErrorCode::kInvalidArgument, "layer entry '" + name + "' escapes the layer");
    }
    ++stats.entries;
    if (rel->empty()) {
      continue;  // The layer root; its directory already exists.
    }
    size_t slash = rel->rfind('/');
    std::string parent = slash == std::string::npos ? "" : rel->substr(0, slash);
    std::string base = slash == std::string::npos ? *rel : rel->substr(slash + 1);
    std::string parentPath = parent.empty() ? root : root + "/" + parent;

    // aufs bookkeeping (".wh..wh.plnk/...", ".wh..wh.aufs") is not part of the image.
    if (rel->starts_with(kWhiteoutMeta) && base != kOpaqueMarker) {
      continue;
    }
    if (base.starts_with(kWhiteoutPrefix)) {
      SKIFF_TRY_STATUS(safeDirs(root, parent), "layer entry '" + name + "'");
      if (base == kOpaqueMarker) {
        if (::lsetxattr(parentPath.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
          return std::unexpected(errnoError("set trusted.overlay.opaque on " + parentPath, errno));
        }
      } else if (!base.starts_with(kWhiteoutMeta)) {
        std::string target = parentPath + "/" + base.substr(kWhiteoutPrefix.size());
        SKIFF_TRY_STATUS(fs::removeTree(target), "whiteout '" + name + "'");
        if (::mknod(target.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
          return std::unexpected(errnoError("mknod whiteout " + target, errno));
        }
      }
      continue;
    }

    std::string full = root + "/" + *rel;
    archive_entry_set_pathname(entry, full.c_str());
    if (const char* link = archive_entry_hardlink(entry); link != nullptr) {
      auto linkRel = fs::cleanArchivePath(link);
      if (!linkRel || linkRel->empty()) {
        return fail(ErrorCode::kInvalidArgument,
                    "layer entry '" + name + "' links outside the layer");
      }
      std::string linkFull = root + "/" + *linkRel;
      archive_entry_set_hardlink(entry, linkFull.c_str());
    }
    filterXattrs(entry);
    rc = archive_write_header(writer.get(), entry);
    if (rc < ARCHIVE_WARN) {
      return fail(ErrorCode::kIo,
                  "unpack '" + name + "': " + archiveError(writer.get(), "write failed"));
    }
    if (archive_entry_size(entry) > 0 && archive_entry_filetype(entry) == AE_IFREG) {
      stats.bytes += archive_entry_size(entry);
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      while (true) {
        rc = archive_read_data_block(reader.get(), &block, &size, &offset);
        if (rc == ARCHIVE_EOF) {
          break;
        }
        if (rc < ARCHIVE_WARN) {
          return fail(ErrorCode::kInvalidArgument,
                      "read '" + name + "': " + archiveError(reader.get(), "bad data"));
        }
        if (archive_write_data_block(writer.get(), block, size, offset) < ARCHIVE_WARN) {
          return fail(ErrorCode::kIo,
                      "write '" + name + "': " + archiveError(writer.get(), "write failed"));
        }
      }
    }
    if (archive_write_finish_entry(writer.get()) < ARCHIVE_WARN) {
      return fail(ErrorCode::kIo,
                  "finish '" + name + "': " + archiveError(writer.get(), "write failed"));
    }
  }
  // Directory permissions and times are applied here, after their contents were written.
  if (archive_write_close(writer.get()) != ARCHIVE_OK) {
    return fail(ErrorCode::kIo, "unpack layer: " + archiveError(writer.get(), "close failed"));
  }
  return stats;
}

}  // namespace skiff::agent::image
