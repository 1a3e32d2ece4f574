#pragma once

// The node's images as the agent uses them: pull an image, mount a container's root filesystem
// over it, release the mount, and trim the store. `ImageStore` (image_store.h) is the
// implementation; tests substitute a fake (tests/testing/fake_images.h).
//
// Thread safety: every method may be called from any thread concurrently. Methods block
// (network, disk, mount).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/digest.h"
#include "agent/image/manifest.h"
#include "common/error.h"

namespace skiff::agent::image {

struct Image {
  Digest digest;                         // Manifest digest: the image's identity.
  std::vector<std::string> names;        // "registry/repository:tag" that point to it.
  std::vector<std::string> repoDigests;  // "registry/repository@sha256:..." it was pulled as.
  std::vector<Digest> indexDigests;      // Indexes it was selected from.
  std::string manifestMediaType;
  Digest configDigest;
  ImageConfig config;
  std::vector<Descriptor> layers;      // Base layer first.
  std::vector<std::string> layerDirs;  // Unpacked layer directories, base layer first.
  int64_t diskBytes = 0;               // Its blobs and layers (shared layers counted fully).
  int64_t lastUsedMs = 0;
};

struct PulledImage {
  Image image;
  // "registry/repository@sha256:..." — the digest the reference resolved to (the index's, when
  // the tag named an index). Record this on the task: it pulls the same image again.
  std::string pinnedReference;
  // Whether anything was downloaded (false when every blob and layer was already here).
  bool downloaded = false;
};

struct RootfsMount {
  std::string rootfs;                  // containerDir/rootfs: the overlay mount.
  std::string upperDir;                // containerDir/upper: where the container's writes land.
  std::string workDir;                 // containerDir/work: overlayfs's scratch directory.
  std::vector<std::string> lowerDirs;  // Topmost layer first, as in the mount options.
  std::string mountOptions;
  Digest image;
  ImageConfig config;
};

struct GcReport {
  std::vector<Digest> removedImages;
  int64_t freedBytes = 0;
  int64_t usageBytes = 0;  // After collection.
  int64_t budgetBytes = 0;
  // Images kept although the store is over budget, because containers use them.
  std::vector<Digest> keptInUse;
};

class ImageService {
 public:
  virtual ~ImageService() = default;

  // Resolves `reference` and makes the image available locally. A registry's answer keeps its
  // error code, so `classifyPullError` (registry.h) tells a definitive answer from a transient one.
  virtual Result<PulledImage> pull(std::string_view reference) = 0;

  // Mounts the root filesystem for a container of `image` at `containerDir`/rootfs and keeps the
  // image from garbage collection until `releaseRootfs(containerDir)`.
  virtual Result<RootfsMount> prepareRootfs(const Digest& image,
                                            const std::string& containerDir) = 0;

  // Unmounts `containerDir`/rootfs and drops its hold on the image. Releasing an unknown or
  // already released directory succeeds.
  virtual Status releaseRootfs(const std::string& containerDir) = 0;

  // Removes least recently used images not in use until the store fits `budgetBytes` (default:
  // the store's own budget).
  virtual Result<GcReport> collectGarbage(std::optional<int64_t> budgetBytes = std::nullopt) = 0;
};

}  // namespace skiff::agent::image
