#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <set>

#include <nlohmann/json.hpp>

#include "agent/image/archive_import.h"
#include "agent/image/fs_util.h"
#include "agent/image/image_store_impl.h"
#include "agent/image/layer.h"
#include "common/log.h"

namespace skiff::agent::image {

using nlohmann::json;

namespace {

json descriptorJson(const Descriptor& d) {
  return {{"mediaType", d.mediaType}, {"digest", d.digest.str()}, {"size", d.size}};
}

}  // namespace

namespace store_detail {

std::string dumpJson(const json& j) {
  // Replace rather than throw on invalid UTF-8 coming from image metadata.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace store_detail

using store_detail::dumpJson;

void ImageStore::Impl::fillDerived(Image& image) const {
  image.layerDirs.clear();
  int64_t bytes = 0;
  for (const Descriptor& layer : image.layers) {
    image.layerDirs.push_back(layerPath(layer.digest));
    if (auto it = layerBytes.find(std::string(layer.digest.hex())); it != layerBytes.end()) {
      bytes += it->second;
    }
  }
  for (const Digest& d : blobsOf(image)) {
    if (auto it = blobBytes.find(std::string(d.hex())); it != blobBytes.end()) {
      bytes += it->second;
    }
  }
  image.diskBytes = bytes;
}

std::vector<Digest> ImageStore::Impl::blobsOf(const Image& image) {
  std::vector<Digest> out = {image.digest, image.configDigest};
  out.insert(out.end(), image.indexDigests.begin(), image.indexDigests.end());
  return out;
}

json ImageStore::Impl::imageJson(const Image& image) {
  json layers = json::array();
  for (const Descriptor& d : image.layers) {
    layers.push_back(descriptorJson(d));
  }
  json indexes = json::array();
  for (const Digest& d : image.indexDigests) {
    indexes.push_back(d.str());
  }
  return {{"digest", image.digest.str()},
          {"names", image.names},
          {"repoDigests", image.repoDigests},
          {"indexDigests", indexes},
          {"manifestMediaType", image.manifestMediaType},
          {"configDigest", image.configDigest.str()},
          {"config", json::parse(imageConfigToJson(image.config))},
          {"layers", layers},
          {"lastUsedMs", image.lastUsedMs}};
}

Result<Image> ImageStore::Impl::imageFromJson(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::kInvalidArgument, "image record: not a JSON object");
  }
  try {
    Image image;
    auto digest = Digest::parse(j.at("digest").get<std::string>());
    auto config = Digest::parse(j.at("configDigest").get<std::string>());
    if (!digest || !config) {
      return fail(ErrorCode::kInvalidArgument, "image record: bad digest");
    }
    image.digest = *digest;
    image.configDigest = *config;
    image.names = j.value("names", std::vector<std::string>{});
    image.repoDigests = j.value("repoDigests", std::vector<std::string>{});
    for (const std::string& d : j.value("indexDigests", std::vector<std::string>{})) {
      auto parsed = Digest::parse(d);
      if (!parsed) {
        return std::unexpected(parsed.error());
      }
      image.indexDigests.push_back(*parsed);
    }
    image.manifestMediaType = j.value("manifestMediaType", "");
    auto cfg = parseImageConfig(j.at("config").dump());
    if (!cfg) {
      return std::unexpected(cfg.error());
    }
    image.config = std::move(*cfg);
    for (const json& l : j.at("layers")) {
      Descriptor d;
      d.mediaType = l.at("mediaType").get<std::string>();
      auto ld = Digest::parse(l.at("digest").get<std::string>());
      if (!ld) {
        return std::unexpected(ld.error());
      }
      d.digest = *ld;
      d.size = l.at("size").get<int64_t>();
      image.layers.push_back(std::move(d));
    }
    image.lastUsedMs = j.value("lastUsedMs", int64_t{0});
    return image;
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("image record: ") + e.what());
  }
}

Status ImageStore::Impl::persistImage(const Image& image) const {
  return fs::writeFileAtomic(imagePath(image.digest), dumpJson(imageJson(image)));
}

Status ImageStore::Impl::storeBlob(const Digest& digest, std::string_view bytes) {
  std::string path = blobPath(digest);
  if (!fs::exists(path)) {
    SKIFF_TRY_STATUS(fs::writeFileAtomic(path, bytes), "store blob " + digest.str());
  }
  std::lock_guard lock(mutex);
  blobBytes[std::string(digest.hex())] = static_cast<int64_t>(bytes.size());
  return {};
}

Result<int64_t> ImageStore::Impl::installLayer(const Descriptor& layer, const std::string& blob) {
  std::string staging =
      tmpDir() + "/layer-" + std::string(layer.digest.hex()).substr(0, 16) + "-XXXXXX";
  if (::mkdtemp(staging.data()) == nullptr) {
    return std::unexpected(errnoError("mkdtemp " + staging, errno));
  }
  // mkdtemp makes it 0700; the layer root becomes the container's "/" when no upper layer
  // says otherwise, and non-root users must be able to traverse it.
  ::chmod(staging.c_str(), 0755);
  auto stats = unpackLayer(blob, staging);
  ::unlink(blob.c_str());
  if (!stats) {
    (void)fs::removeTree(staging);
    return std::unexpected(stats.error().wrap("unpack layer " + layer.digest.str()));
  }
  if (options.syncLayers) {
    SKIFF_TRY_STATUS(fs::syncFilesystem(staging), "sync layer " + layer.digest.str());
  }
  std::string dest = layerPath(layer.digest);
  if (::rename(staging.c_str(), dest.c_str()) != 0) {
    int err = errno;
    (void)fs::removeTree(staging);
    if (err != EEXIST && err != ENOTEMPTY) {
      return std::unexpected(errnoError("rename layer into " + dest, err));
    }
  }
  SKIFF_TRY_STATUS(fs::syncDir(options.root + "/layers"), "sync layers");
  auto bytes = fs::diskUsage(dest);
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  // The size file is a cache; a missing one is recomputed at open.
  (void)fs::writeFileAtomic(dest + ".size", std::to_string(*bytes));
  return *bytes;
}

Status ImageStore::Impl::ensureLayers(const std::vector<Descriptor>& layers,
                                      const BlobFetcher& fetch, bool* downloaded) {
  struct Owned {
    Descriptor layer;
    std::shared_ptr<std::promise<Status>> promise;
    bool done = false;
  };
  std::vector<Owned> owned;
  std::vector<std::pair<Digest, std::shared_future<Status>>> waits;
  {
    std::lock_guard lock(mutex);
    std::set<std::string> seen;
    for (const Descriptor& layer : layers) {
      std::string hex(layer.digest.hex());
      if (!seen.insert(hex).second || layerBytes.contains(hex)) {
        continue;
      }
      if (auto it = layerJobs.find(hex); it != layerJobs.end()) {
        waits.emplace_back(layer.digest, it->second);
        continue;
      }
      auto promise = std::make_shared<std::promise<Status>>();
      layerJobs[hex] = promise->get_future().share();
      owned.push_back({layer, promise, false});
    }
  }
  std::vector<BlobRequest> requests;
  for (const Owned& o : owned) {
    requests.push_back({o.layer.digest, o.layer.size,
                        tmpDir() + "/" + std::string(o.layer.digest.hex()) + ".blob"});
  }
  Status status;
  if (!requests.empty()) {
    *downloaded = true;
    status = fetch.fetchMany(requests, [&](size_t i) -> Status {
      auto bytes = installLayer(owned[i].layer, requests[i].destPath);
      std::string hex(owned[i].layer.digest.hex());
      std::lock_guard lock(mutex);
      layerJobs.erase(hex);
      owned[i].done = true;
      if (!bytes) {
        owned[i].promise->set_value(std::unexpected(bytes.error()));
        return std::unexpected(bytes.error());
      }
      layerBytes[hex] = *bytes;
      owned[i].promise->set_value(Status{});
      return {};
    });
  }
  // Layers never reached (a failure stopped the downloads) fail for their waiters too, before
  // this pull waits on others: nobody waits on a layer whose owner is itself waiting.
  {
    std::lock_guard lock(mutex);
    for (size_t i = 0; i < owned.size(); ++i) {
      Owned& o = owned[i];
      if (!o.done) {
        layerJobs.erase(std::string(o.layer.digest.hex()));
        Error e = status ? Error(ErrorCode::kUnavailable, "pull stopped") : status.error();
        o.promise->set_value(std::unexpected(e.wrap("layer " + o.layer.digest.str())));
        ::unlink(requests[i].destPath.c_str());
      }
    }
  }
  if (!status) {
    return status;
  }
  for (auto& [digest, future] : waits) {
    Status other = future.get();
    if (!other) {
      return std::unexpected(other.error().wrap("layer " + digest.str() + " (shared pull)"));
    }
  }
  return {};
}

Result<PulledImage> ImageStore::Impl::storeImage(const std::vector<std::string>& newNames,
                                                 const std::string& repoDigest,
                                                 const FetchedManifest& manifestDoc,
                                                 const Manifest& manifest,
                                                 const std::optional<FetchedManifest>& indexDoc,
                                                 const BlobFetcher& fetch) {
  PulledImage result;
  result.pinnedReference = repoDigest;
  // Pin the layers so a concurrent GC leaves them alone while this image is assembled.
  std::vector<std::string> pins;
  for (const Descriptor& l : manifest.layers) {
    pins.emplace_back(l.digest.hex());
  }
  pins.emplace_back(manifest.config.digest.hex());
  pins.emplace_back(manifestDoc.digest.hex());
  {
    std::lock_guard lock(mutex);
    for (const std::string& p : pins) {
      ++pinnedLayers[p];
    }
  }
  struct Unpin {
    Impl* self;
    std::vector<std::string>* pins;
    ~Unpin() {
      std::lock_guard lock(self->mutex);
      for (const std::string& p : *pins) {
        if (--self->pinnedLayers[p] == 0) {
          self->pinnedLayers.erase(p);
        }
      }
    }
  } unpin{this, &pins};

  // The config blob: small, fetched first so a wrong-platform image fails before the layers.
  std::string configPath = blobPath(manifest.config.digest);
  if (!fs::exists(configPath)) {
    result.downloaded = true;
    SKIFF_TRY_STATUS(fetch.fetchOne(manifest.config, configPath), "config blob");
  }
  auto configBytes = fs::readFile(configPath, 16 << 20);
  if (!configBytes) {
    return std::unexpected(configBytes.error().wrap("config blob"));
  }
  {
    std::lock_guard lock(mutex);
    blobBytes[std::string(manifest.config.digest.hex())] =
        static_cast<int64_t>(configBytes->size());
  }
  auto config = parseImageConfig(*configBytes);
  if (!config) {
    return std::unexpected(config.error().wrap("config " + manifest.config.digest.str()));
  }
  if (!config->architecture.empty() && !config->os.empty() &&
      (config->architecture != options.platform.architecture ||
       config->os != options.platform.os)) {
    return fail(ErrorCode::kFailedPrecondition, "image " + manifestDoc.digest.str() + " is for " +
                                                    config->os + "/" + config->architecture +
                                                    ", this node runs " + options.platform.os +
                                                    "/" + options.platform.architecture);
  }
  SKIFF_TRY_STATUS(ensureLayers(manifest.layers, fetch, &result.downloaded), "layers");
  SKIFF_TRY_STATUS(storeBlob(manifestDoc.digest, manifestDoc.bytes), "manifest");
  if (indexDoc) {
    SKIFF_TRY_STATUS(storeBlob(indexDoc->digest, indexDoc->bytes), "index");
  }

  std::lock_guard lock(mutex);
  Image& image = images[manifestDoc.digest];
  bool fresh = image.digest.empty();
  if (fresh) {
    image.digest = manifestDoc.digest;
    image.manifestMediaType = manifest.mediaType;
    image.configDigest = manifest.config.digest;
    image.config = std::move(*config);
    image.layers = manifest.layers;
  }
  if (indexDoc && std::find(image.indexDigests.begin(), image.indexDigests.end(),
                            indexDoc->digest) == image.indexDigests.end()) {
    image.indexDigests.push_back(indexDoc->digest);
  }
  if (!repoDigest.empty() && std::find(image.repoDigests.begin(), image.repoDigests.end(),
                                       repoDigest) == image.repoDigests.end()) {
    image.repoDigests.push_back(repoDigest);
    names[repoDigest] = image.digest;
  }
  for (const std::string& name : newNames) {
    // A tag names one image: take it from the image it pointed to before.
    if (auto it = names.find(name); it != names.end() && it->second != image.digest) {
      if (auto old = images.find(it->second); old != images.end()) {
        std::erase(old->second.names, name);
        if (Status s = persistImage(old->second); !s) {
          log::warn("image store: cannot persist image record",
                    {{"image", old->first.str()}, {"error", s.error().message()}});
        }
      }
    }
    names[name] = image.digest;
    if (std::find(image.names.begin(), image.names.end(), name) == image.names.end()) {
      image.names.push_back(name);
    }
  }
  image.lastUsedMs = clock->nowMs();
  fillDerived(image);
  SKIFF_TRY_STATUS(persistImage(image), "record image " + image.digest.str());
  result.image = image;
  return result;
}

}  // namespace skiff::agent::image
