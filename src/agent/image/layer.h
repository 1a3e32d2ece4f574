#pragma once

// Unpacking one layer blob into a directory that overlayfs can use as a lower layer.
//
// The blob is a tar archive, uncompressed, gzip or zstd (detected from the bytes, so a mislabeled
// layer still works). Whiteouts are translated to overlayfs's form:
//   - `DIR/.wh.NAME`      → a character device 0/0 at `DIR/NAME` (the file is deleted);
//   - `DIR/.wh..wh..opq`  → the xattr `trusted.overlay.opaque=y` on `DIR` (hides lower contents).
// Other `.wh..wh.*` entries (aufs bookkeeping) are skipped. `trusted.overlay.*` xattrs carried by
// the archive itself are dropped, so a layer cannot plant redirects or metacopy markers.
//
// Safety: entries with ".." components are refused, absolute names are taken relative to the
// layer root, and nothing is written through a symlink (libarchive's secure-symlink check), so an
// archive cannot write outside `destDir`. Owners are numeric ids from the archive, never looked up
// in the host's user database.
//
// Needs root (CAP_MKNOD, CAP_CHOWN and CAP_SYS_ADMIN for trusted.* xattrs) for real layers.

#include <cstdint>
#include <string>

#include "common/error.h"

namespace skiff::agent::image {

struct UnpackStats {
  int64_t entries = 0;
  int64_t bytes = 0;  // Sum of regular file sizes.
};

// Unpacks `blobPath` into the existing directory `destDir`. On failure `destDir` holds a partial
// tree that the caller must remove (the store unpacks into a temporary directory and renames it
// into place only on success). Errors: kInvalidArgument for malformed or unsafe archives, kIo for
// filesystem failures.
Result<UnpackStats> unpackLayer(const std::string& blobPath, const std::string& destDir);

}  // namespace skiff::agent::image
