#pragma once

// The back-end interface to an OCI Distribution registry, and what it returns.
//
// Implementations: `RegistryClient` (libcurl, the real one); tests wrap it to count or fail
// requests. Everything a `Registry` hands back has been verified: a manifest fetched by digest
// hashes to that digest, and a blob file exists at its destination only after its bytes hashed to
// the digest that named it.
//
// Thread safety: every method may be called from several threads at once.

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "agent/image/digest.h"
#include "agent/image/reference.h"
#include "common/error.h"

namespace skiff::agent::image {

struct FetchedManifest {
  std::string bytes;
  std::string mediaType;  // The Content-Type the registry sent (without parameters).
  Digest digest;          // sha256 of `bytes`.
};

struct BlobRequest {
  Digest digest;
  int64_t size = -1;     // Expected size from the descriptor; -1 if unknown. More bytes fail.
  std::string destPath;  // Where the verified blob ends up; its directory must exist.
};

class Registry {
 public:
  virtual ~Registry() = default;

  // Fetches the manifest `ref.manifestReference()` (a tag or a digest) from `ref`'s repository.
  // The result's digest is the sha256 of the bytes; when `ref` has a digest they must match
  // (else a digest mismatch error). kNotFound for an unknown tag or digest; kUnauthenticated or
  // kPermissionDenied when the registry refuses; kUnavailable or kIo for transport failures.
  virtual Result<FetchedManifest> fetchManifest(const ImageReference& ref) = 0;

  // Downloads one blob of `repo` into `blob.destPath`, hashing while it streams. On success the
  // file holds exactly the verified bytes; on any failure (a digest mismatch included) nothing is
  // left at `destPath`.
  virtual Status fetchBlob(const ImageReference& repo, const BlobRequest& blob) = 0;

  // Downloads `blobs` with up to `parallelism` transfers at a time. After each blob is verified
  // and in place, `onFetched(i)` runs on the thread that downloaded it, so callers can unpack one
  // layer while others still download. After the first failure (of a download or of
  // `onFetched`) no new download starts; running ones finish; the first error is returned.
  // The default implementation runs `fetchBlob` on a few threads.
  virtual Status fetchBlobs(const ImageReference& repo, std::span<const BlobRequest> blobs,
                            int parallelism, const std::function<Status(size_t)>& onFetched);
};

// What a failed pull means for the task that wanted the image.
enum class PullFailure {
  kNotFound,   // The registry's definitive answer: no such name or tag (HTTP 404 or 400).
  kDenied,     // The registry refused us after authentication (HTTP 401, 403).
  kTransient,  // The registry could not be reached or failed (refused, timeout, 429, 5xx, I/O).
  kLocal,      // Anything else: a bad digest, a malformed manifest, the node's own disk.
};

// Classifies an error from `Registry` or the image store by its code: kNotFound -> kNotFound,
// kUnauthenticated and kPermissionDenied -> kDenied, kUnavailable and kIo -> kTransient.
PullFailure classifyPullError(const Error& error);

}  // namespace skiff::agent::image
