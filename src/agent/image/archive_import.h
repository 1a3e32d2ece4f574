#pragma once

// Reading `docker save` tarballs and OCI image layout archives into a staging directory, and the
// blob-source abstraction the store assembles images from (internal to this library).

#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/image/digest.h"
#include "agent/image/manifest.h"
#include "agent/image/reference.h"
#include "agent/image/registry.h"
#include "common/error.h"

namespace skiff::agent::image {

// Where the store gets verified blobs from: a registry or an unpacked archive.
struct BlobFetcher {
  // Places the verified blob `d` at `dest`.
  std::function<Status(const Descriptor& d, const std::string& dest)> fetchOne;
  // Places several, calling `onFetched(i)` after each (see `Registry::fetchBlobs`).
  std::function<Status(std::span<const BlobRequest>, const std::function<Status(size_t)>&)>
      fetchMany;
};

// One image found in an archive, with a manifest whose bytes are known (synthesized for
// `docker save`, which has none).
struct ArchiveImage {
  std::vector<std::string> names;
  FetchedManifest manifestDoc;
  Manifest manifest;
  std::optional<FetchedManifest> indexDoc;
};

struct ImageArchive {
  struct File {
    Digest digest;
    int64_t size = 0;
  };
  std::string stagingDir;
  std::map<std::string, File> files;       // Relative path → content digest.
  std::map<Digest, std::string> byDigest;  // Content digest → relative path.
  std::vector<ArchiveImage> images;

  // Hard-links (or copies) the staged file with content `d` to `dest`. A digest mismatch if the
  // archive has no file with that content; kInvalidArgument if its size differs from `d.size`.
  Status placeBlob(const Descriptor& d, const std::string& dest) const;
};

// Extracts the regular files of the archive at `path` into `stagingDir` (hashing each) and finds
// its images: `docker save` (manifest.json) or OCI layout (index.json). Images for other
// platforms than `platform` are skipped.
Result<ImageArchive> readImageArchive(const std::string& path, const std::string& stagingDir,
                                      const Platform& platform, const ReferenceOptions& references);

}  // namespace skiff::agent::image
