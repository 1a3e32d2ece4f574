#pragma once

// Disk limit for a container's writable layer.
//
// XFS project quotas would be the cheapest limit but need an XFS filesystem mounted with
// prjquota, which agent hosts (this one included) do not have. Instead each container that asks
// for a limit gets its own small filesystem: a sparse image file of `limitBytes`, formatted ext4
// (no journal, no reserved blocks) and loop-mounted. The image library places the overlay's
// upperdir and workdir inside that mount, so every write to the container's root filesystem lands
// there and fails with ENOSPC past the limit. The sparse file only uses what is written; ext4
// metadata takes a few percent of the size, so the usable space is slightly below `limitBytes`.
// The loop device is created with autoclear, so unmounting releases it.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "agent/runtime/process_runner.h"
#include "common/error.h"

namespace skiff::agent::runtime {

struct WritableLayerPaths {
  std::string imageFile;   // The sparse ext4 image.
  std::string mountPoint;  // Where it is mounted; holds upper/ and work/ for overlayfs.
};

// Creates the image (at least 4 MiB), formats it with mkfs.ext4, mounts it (nodev, nosuid) and
// creates upper/ and work/ in it. Root only. On failure nothing is left mounted.
Status createWritableLayer(ProcessRunner& runner, const WritableLayerPaths& paths,
                           uint64_t limitBytes);

// Unmounts (lazily when busy) and deletes the image. Missing pieces are fine.
Status destroyWritableLayer(const WritableLayerPaths& paths);

// Keeps finished containers' writable layers, emptied, for the next container that asks for the
// same size, so a start in steady state runs neither mkfs.ext4 nor mount(8) (together ~8 ms and
// most of a container start's CPU here). A returned layer is emptied before it is kept: every
// file the container wrote is deleted, and the `discard` mount option hands the freed blocks back
// to the sparse image, so a kept layer costs its ext4 metadata only (~0.7 MB). At most
// `maxIdlePerSize` layers of each size are kept; the rest are destroyed. Thread-safe.
//
// Idle layers live in `poolDir` as ID.img plus the mount point ID/. A layer changes place by a
// bind mount and an unmount of the old place (a move mount is refused under shared mounts).
class WritableLayerPool {
 public:
  WritableLayerPool(ProcessRunner& runner, std::string poolDir, size_t maxIdlePerSize = 8);

  // Creates poolDir and destroys layers an earlier agent left there.
  Status open();

  // Gives `paths` a writable layer of `limitBytes` (as createWritableLayer): an idle one when the
  // pool has one of that size, else a new one.
  Status acquire(const WritableLayerPaths& paths, uint64_t limitBytes);

  // Takes back the layer at `paths` (its overlay must be unmounted). Destroys it when the pool is
  // full for its size or it cannot be emptied.
  Status release(const WritableLayerPaths& paths);

  // Destroys every idle layer (unmounts, deletes).
  void clear();

  size_t idleCount() const;

 private:
  ProcessRunner& runner_;
  std::string poolDir_;
  size_t maxIdlePerSize_;
  mutable std::mutex mutex_;
  std::map<uint64_t, std::vector<std::string>> idle_;  // Size -> pool entry paths (no ".img").
  uint64_t nextId_ = 0;
};

}  // namespace skiff::agent::runtime
