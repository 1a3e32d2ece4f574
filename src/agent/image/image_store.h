#pragma once

// `ImageStore`: the node's content-addressed image store, shared by all containers.
//
// Layout under `root`:
//   blobs/sha256/HEX      verified manifests, indexes and configs (layer blobs are deleted once
//                         unpacked; the unpacked tree is what containers use)
//   layers/HEX/           one unpacked layer, named by its blob digest; complete or absent
//   layers/HEX.size       its disk usage in bytes
//   images/HEX.json       one image (HEX = its manifest digest): names, layers, config, last use
//   leases/HASH.json      one mounted container root filesystem (protects its image from GC)
//   tmp/                  staging; emptied on open
//   lock                  flock(2): one store per root
//
// Guarantees:
//   - Every blob is verified against its digest before it is used (see registry.h); imported
//     archives are verified the same way (OCI layouts by their digests, `docker save` layers by
//     the config's diff_ids and files named after digests).
//   - Each layer is unpacked once, into tmp/, synced, and renamed into layers/ in one step, so a
//     crash leaves either the whole layer or none (the leftovers in tmp/ go at the next open).
//   - Concurrent pulls of one reference are done once; all callers get the same result. Images
//     that share layers download and unpack each shared layer once, even concurrently.
//   - A container's root filesystem is an overlay mount over the shared layers with its own upper
//     and work directories, never a copy.
//   - Garbage collection removes least recently used images first until the store fits its disk
//     budget, and never removes an image with a mounted root filesystem or a pull in flight.
//
// Thread safety: every method may be called from any thread concurrently. Methods block (network,
// disk, mount); callers with an event loop run them on a worker thread.
//
// Errors name the image, blob or layer they are about. A blob that does not match its digest is
// a digest-mismatch error (digest.h: `isDigestMismatch`).

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/digest.h"
#include "agent/image/image_service.h"
#include "agent/image/manifest.h"
#include "agent/image/reference.h"
#include "agent/image/registry.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::image {

struct ImageStoreOptions {
  // The store's directory; created if missing. Must be on a filesystem that supports overlayfs
  // lower layers (ext4, xfs) and trusted.* xattrs.
  std::string root;
  // `collectGarbage()` trims the store to this many bytes; 0 means no limit.
  int64_t diskBudgetBytes = 0;
  // The platform picked from image indexes.
  Platform platform;
  // Blob downloads in flight per pull.
  int parallelDownloads = 4;
  // syncfs(2) before a layer is renamed into place, so the layer survives a power loss and not
  // only a crash of the process. Benchmarks may turn it off.
  bool syncLayers = true;
  // For names in imported archives ("busybox:latest" → "docker.io/library/busybox:latest").
  ReferenceOptions references;
  // Time for last-use stamps; null means the system clock.
  Clock* clock = nullptr;
};

class ImageStore final : public ImageService {
 public:
  // Opens (creating if needed) the store at `options.root`. `registry` may be null for a store
  // that only imports archives. Recovers from a crash: removes staging leftovers and image
  // records whose layers are missing, and reloads leases. Fails with kUnavailable if another
  // store has the root open, kIo on filesystem errors.
  static Result<std::unique_ptr<ImageStore>> open(ImageStoreOptions options,
                                                  std::shared_ptr<Registry> registry);
  ~ImageStore() override;
  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  // Resolves `ref` and makes the image available locally: a tag is always resolved at the
  // registry (tags move); a digest already in the store needs no network. Picks the configured
  // platform from an index. Concurrent calls with the same reference share one pull.
  Result<PulledImage> pull(const ImageReference& ref);
  // Parses `reference` with `options.references` first.
  Result<PulledImage> pull(std::string_view reference) override;

  // Imports a `docker save` tarball or an OCI image layout archive (`skopeo copy ...
  // oci-archive:`, tar of an OCI layout; plain, gzip or zstd). Returns the images it held (for an
  // index, the configured platform's). kInvalidArgument if it is neither format or is
  // inconsistent; a digest mismatch if any blob differs from its digest.
  Result<std::vector<Image>> importArchive(const std::string& path);

  // The image with manifest digest `digest`, or kNotFound.
  Result<Image> image(const Digest& digest) const;
  // The image a name ("registry/repo:tag", parsed with `options.references`), a pinned reference
  // ("repo@sha256:...") or a bare digest ("sha256:...") points to, or kNotFound.
  Result<Image> find(std::string_view nameOrDigest) const;
  std::vector<Image> images() const;

  // Mounts the root filesystem for a container of `image` at `containerDir`/rootfs: overlayfs
  // with the image's layers as read-only lower directories and `containerDir`/upper and /work
  // (created here) for the container's writes. `containerDir` must be an absolute, normalized path
  // (no symlinks, no trailing '/'; the same string goes to `releaseRootfs`) without
  // ',', ':' or '\'. Records a durable lease so that GC keeps the image, even across restarts,
  // until `releaseRootfs`. Calling it again for a mounted `containerDir` of the same image returns
  // the existing mount; for another image it fails with kFailedPrecondition.
  Result<RootfsMount> prepareRootfs(const Digest& image, const std::string& containerDir) override;

  // Unmounts `containerDir`/rootfs (lazily if it is busy) and drops the lease. The upper and work
  // directories are left for the caller to inspect or delete. Releasing an unknown or already
  // released directory succeeds.
  Status releaseRootfs(const std::string& containerDir) override;

  // Removes least recently used images (and their layers and blobs, unless other images share
  // them) until the store uses at most `budgetBytes` (default: `options.diskBudgetBytes`; 0 means
  // no limit, so only orphaned layers and blobs go). Never removes images with a lease or a pull
  // in flight.
  Result<GcReport> collectGarbage(std::optional<int64_t> budgetBytes = std::nullopt) override;

  // Bytes used by layers and blobs.
  int64_t diskUsage() const;

  const std::string& root() const { return options_.root; }

 private:
  struct Impl;
  explicit ImageStore(ImageStoreOptions options, std::shared_ptr<Registry> registry);

  ImageStoreOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace skiff::agent::image
