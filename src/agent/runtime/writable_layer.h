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
#include <string>

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

}  // namespace skiff::agent::runtime
