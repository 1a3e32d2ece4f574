#pragma once

// ImageStore's state, shared by its files: image_store.cpp (open, pull, import, lookups),
// image_store_records.cpp (blobs, layer unpacking, image records) and image_store_gc.cpp (root
// filesystems, leases, garbage collection). Internal to the image library.

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/image/image_store.h"

namespace skiff::agent::image {

// Everything mutable lives here, behind one mutex. Long work (network, unpacking, deleting
// trees, mounting) runs without it; the maps only record who is doing what.
struct ImageStore::Impl {
  ImageStoreOptions& options;
  std::shared_ptr<Registry> registry;
  Clock* clock;
  int lockFd = -1;

  mutable std::mutex mutex;
  std::map<Digest, Image> images;             // By manifest digest.
  std::map<std::string, Digest> names;        // Name or repo digest → manifest digest.
  std::map<std::string, int64_t> layerBytes;  // Layer hex → disk bytes (present layers).
  std::map<std::string, int64_t> blobBytes;   // Blob hex → bytes (present blobs).
  std::map<std::string, Digest> leases;       // Container dir → image digest.
  std::map<std::string, std::shared_future<Result<PulledImage>>> pulls;  // By reference.
  std::map<std::string, std::shared_future<Status>> layerJobs;  // Layer hex → unpack in flight.
  std::map<std::string, int> pinnedLayers;  // Layer/blob hex → pulls relying on it.
  uint64_t graves = 0;                      // Names layers on their way out unique.

  explicit Impl(ImageStoreOptions& o) : options(o) {}

  std::string blobPath(const Digest& d) const {
    return options.root + "/blobs/sha256/" + std::string(d.hex());
  }
  std::string layerPath(const Digest& d) const {
    return options.root + "/layers/" + std::string(d.hex());
  }
  std::string imagePath(const Digest& d) const {
    return options.root + "/images/" + std::string(d.hex()) + ".json";
  }
  std::string leasePath(const std::string& containerDir) const {
    return options.root + "/leases/" + std::string(sha256Of(containerDir).hex()) + ".json";
  }
  std::string tmpDir() const { return options.root + "/tmp"; }

  // Caller holds `mutex`.
  void fillDerived(Image& image) const;

  // The blobs an image keeps besides its layers: manifest, config and indexes.
  static std::vector<Digest> blobsOf(const Image& image);

  // An image's record under images/, and back.
  static nlohmann::json imageJson(const Image& image);
  static Result<Image> imageFromJson(std::string_view text);
  Status persistImage(const Image& image) const;

  // Writes `bytes` as the blob `digest` (already verified by the caller) unless it exists.
  // Caller does not hold `mutex`.
  Status storeBlob(const Digest& digest, std::string_view bytes);

  // Unpacks the verified blob at `blob` as layer `layer` and moves it into layers/.
  Result<int64_t> installLayer(const Descriptor& layer, const std::string& blob);

  // Makes sure every layer in `layers` is unpacked, fetching missing ones through `fetch`.
  // Layers another pull is already unpacking are waited for, not fetched twice. Sets
  // `*downloaded` if anything was fetched.
  Status ensureLayers(const std::vector<Descriptor>& layers, const BlobFetcher& fetch,
                      bool* downloaded);

  // Records an image whose manifest (and optionally index) bytes are verified, fetching its
  // config and layers through `fetch`. `names` and `repoDigest` are added to the image.
  Result<PulledImage> storeImage(const std::vector<std::string>& newNames,
                                 const std::string& repoDigest, const FetchedManifest& manifestDoc,
                                 const Manifest& manifest,
                                 const std::optional<FetchedManifest>& indexDoc,
                                 const BlobFetcher& fetch);
};

namespace store_detail {

// JSON text; invalid UTF-8 from image metadata is replaced rather than thrown on.
std::string dumpJson(const nlohmann::json& j);

}  // namespace store_detail

}  // namespace skiff::agent::image
