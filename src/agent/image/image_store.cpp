#include "agent/image/image_store.h"

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
#include "agent/image/layer.h"
#include "common/log.h"

namespace skiff::agent::image {

using nlohmann::json;

namespace {

bool isHex64(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string dumpJson(const json& j) {
  // Replace rather than throw on invalid UTF-8 coming from image metadata.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json descriptorJson(const Descriptor& d) {
  return {{"mediaType", d.mediaType}, {"digest", d.digest.str()}, {"size", d.size}};
}

// The overlay mount options cannot escape these characters reliably across kernel versions.
bool validContainerDir(std::string_view dir) {
  return !dir.empty() && dir.front() == '/' &&
         dir.find_first_of(",:\\\n") == std::string_view::npos;
}

}  // namespace

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
  void fillDerived(Image& image) const {
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

  static std::vector<Digest> blobsOf(const Image& image) {
    std::vector<Digest> out = {image.digest, image.configDigest};
    out.insert(out.end(), image.indexDigests.begin(), image.indexDigests.end());
    return out;
  }

  static json imageJson(const Image& image) {
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

  static Result<Image> imageFromJson(std::string_view text) {
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

  Status persistImage(const Image& image) const {
    return fs::writeFileAtomic(imagePath(image.digest), dumpJson(imageJson(image)));
  }

  // Writes `bytes` as the blob `digest` (already verified by the caller) unless it exists.
  // Caller does not hold `mutex`.
  Status storeBlob(const Digest& digest, std::string_view bytes) {
    std::string path = blobPath(digest);
    if (!fs::exists(path)) {
      SKIFF_TRY_STATUS(fs::writeFileAtomic(path, bytes), "store blob " + digest.str());
    }
    std::lock_guard lock(mutex);
    blobBytes[std::string(digest.hex())] = static_cast<int64_t>(bytes.size());
    return {};
  }

  // Unpacks the verified blob at `blob` as layer `layer` and moves it into layers/.
  Result<int64_t> installLayer(const Descriptor& layer, const std::string& blob) {
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

  // Makes sure every layer in `layers` is unpacked, fetching missing ones through `fetch`.
  // Layers another pull is already unpacking are waited for, not fetched twice. Sets
  // `*downloaded` if anything was fetched.
  Status ensureLayers(const std::vector<Descriptor>& layers, const BlobFetcher& fetch,
                      bool* downloaded) {
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

  // Records an image whose manifest (and optionally index) bytes are verified, fetching its
  // config and layers through `fetch`. `names` and `repoDigest` are added to the image.
  Result<PulledImage> storeImage(const std::vector<std::string>& newNames,
                                 const std::string& repoDigest, const FetchedManifest& manifestDoc,
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
};

ImageStore::ImageStore(ImageStoreOptions options, std::shared_ptr<Registry> registry)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {
  impl_->registry = std::move(registry);
  impl_->clock = options_.clock != nullptr ? options_.clock : &SystemClock::instance();
}

ImageStore::~ImageStore() {
  if (impl_ && impl_->lockFd >= 0) {
    ::close(impl_->lockFd);
  }
}

Result<std::unique_ptr<ImageStore>> ImageStore::open(ImageStoreOptions options,
                                                     std::shared_ptr<Registry> registry) {
  if (options.root.empty()) {
    return fail(ErrorCode::kInvalidArgument, "image store: empty root");
  }
  SKIFF_TRY_STATUS(fs::makeDirs(options.root, 0700), "image store");
  char* resolved = ::realpath(options.root.c_str(), nullptr);
  if (resolved == nullptr) {
    return std::unexpected(errnoError("realpath " + options.root, errno));
  }
  options.root = resolved;
  std::free(resolved);
  for (const char* sub : {"/blobs/sha256", "/layers", "/images", "/leases", "/tmp"}) {
    SKIFF_TRY_STATUS(fs::makeDirs(options.root + sub, 0700), "image store");
  }
  // Layers are lower directories of containers that may run as any user: the path to them must
  // be traversable.
  ::chmod(options.root.c_str(), 0711);
  ::chmod((options.root + "/layers").c_str(), 0711);

  std::unique_ptr<ImageStore> store(new ImageStore(std::move(options), std::move(registry)));
  Impl& impl = *store->impl_;
  const std::string& root = store->options_.root;
  std::string lockPath = root + "/lock";
  impl.lockFd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl.lockFd < 0) {
    return std::unexpected(errnoError("open " + lockPath, errno));
  }
  if (::flock(impl.lockFd, LOCK_EX | LOCK_NB) != 0) {
    return fail(ErrorCode::kUnavailable, "image store " + root + " is open in another process");
  }

  // Staging leftovers from a crash: partial downloads, half-unpacked layers, imports.
  for (const std::string& name : fs::listDir(impl.tmpDir())) {
    SKIFF_TRY_STATUS(fs::removeTree(impl.tmpDir() + "/" + name), "image store recovery");
  }
  for (const std::string& name : fs::listDir(root + "/blobs/sha256")) {
    std::string path = root + "/blobs/sha256/" + name;
    struct stat st {};
    if (isHex64(name) && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      impl.blobBytes[name] = st.st_size;
    } else {
      ::unlink(path.c_str());
    }
  }
  for (const std::string& name : fs::listDir(root + "/layers")) {
    std::string path = root + "/layers/" + name;
    if (isHex64(name)) {
      auto cached = fs::readFile(path + ".size", 64);
      int64_t bytes = -1;
      if (cached) {
        bytes = std::strtoll(cached->c_str(), nullptr, 10);
      }
      if (bytes <= 0) {
        auto usage = fs::diskUsage(path);
        if (!usage) {
          return std::unexpected(usage.error().wrap("image store recovery"));
        }
        bytes = *usage;
        (void)fs::writeFileAtomic(path + ".size", std::to_string(bytes));
      }
      impl.layerBytes[name] = bytes;
    } else if (!(name.size() == 64 + 5 && name.ends_with(".size") &&
                 fs::exists(path.substr(0, path.size() - 5)))) {
      SKIFF_TRY_STATUS(fs::removeTree(path), "image store recovery");
    }
  }
  for (const std::string& name : fs::listDir(root + "/images")) {
    std::string path = root + "/images/" + name;
    auto text = fs::readFile(path, 16 << 20);
    auto image = text ? Impl::imageFromJson(*text) : Result<Image>(std::unexpected(text.error()));
    bool complete = image.has_value();
    if (complete) {
      for (const Descriptor& l : image->layers) {
        complete = complete && impl.layerBytes.contains(std::string(l.digest.hex()));
      }
      complete = complete && impl.blobBytes.contains(std::string(image->configDigest.hex()));
    }
    if (!complete) {
      log::warn("image store: dropping incomplete image record", {{"file", path}});
      ::unlink(path.c_str());
      continue;
    }
    for (const std::string& n : image->names) {
      impl.names[n] = image->digest;
    }
    for (const std::string& n : image->repoDigests) {
      impl.names[n] = image->digest;
    }
    impl.fillDerived(*image);
    Digest digest = image->digest;
    impl.images[digest] = std::move(*image);
  }
  for (const std::string& name : fs::listDir(root + "/leases")) {
    std::string path = root + "/leases/" + name;
    auto text = fs::readFile(path, 1 << 20);
    json j = text ? json::parse(*text, nullptr, false) : json();
    if (j.is_object() && j.contains("containerDir") && j["containerDir"].is_string() &&
        j.contains("image") && j["image"].is_string()) {
      auto digest = Digest::parse(j["image"].get<std::string>());
      if (digest) {
        impl.leases[j["containerDir"].get<std::string>()] = *digest;
        continue;
      }
    }
    ::unlink(path.c_str());
  }
  log::info("image store open", {{"root", root},
                                 {"images", impl.images.size()},
                                 {"layers", impl.layerBytes.size()},
                                 {"leases", impl.leases.size()}});
  return store;
}

Result<PulledImage> ImageStore::pull(std::string_view reference) {
  auto ref = ImageReference::parse(reference, options_.references);
  if (!ref) {
    return std::unexpected(ref.error());
  }
  return pull(*ref);
}

Result<PulledImage> ImageStore::pull(const ImageReference& ref) {
  Impl& impl = *impl_;
  std::string key = ref.str();
  std::shared_ptr<std::promise<Result<PulledImage>>> promise;
  std::optional<std::shared_future<Result<PulledImage>>> inFlight;
  {
    std::lock_guard lock(impl.mutex);
    // A digest names immutable content: if it is here, no registry round trip is needed.
    if (ref.digest()) {
      std::string pinned = ref.name() + "@" + ref.digest()->str();
      auto it = impl.images.find(*ref.digest());
      if (it == impl.images.end()) {
        if (auto n = impl.names.find(pinned); n != impl.names.end()) {
          it = impl.images.find(n->second);
        }
      }
      if (it != impl.images.end()) {
        it->second.lastUsedMs = impl.clock->nowMs();
        impl.fillDerived(it->second);
        return PulledImage{it->second, pinned, false};
      }
    }
    if (auto it = impl.pulls.find(key); it != impl.pulls.end()) {
      inFlight = it->second;
    } else {
      promise = std::make_shared<std::promise<Result<PulledImage>>>();
      impl.pulls[key] = promise->get_future().share();
    }
  }
  if (inFlight) {
    return inFlight->get();  // Another caller is pulling this reference; share its result.
  }

  auto started = std::chrono::steady_clock::now();
  auto doPull = [&]() -> Result<PulledImage> {
    if (!impl.registry) {
      return fail(ErrorCode::kFailedPrecondition, "no registry configured");
    }
    auto top = impl.registry->fetchManifest(ref);
    if (!top) {
      return std::unexpected(top.error());
    }
    auto parsed = parseManifest(top->bytes, top->mediaType);
    if (!parsed) {
      return std::unexpected(parsed.error().wrap("manifest " + top->digest.str()));
    }
    std::string pinned = ref.name() + "@" + top->digest.str();
    FetchedManifest manifestDoc = std::move(*top);
    Manifest manifest = std::move(*parsed);
    std::optional<FetchedManifest> indexDoc;
    if (manifest.kind == ManifestKind::kIndex) {
      auto chosen = selectPlatform(manifest, options_.platform);
      if (!chosen) {
        return std::unexpected(chosen.error().wrap("index " + manifestDoc.digest.str()));
      }
      auto child = impl.registry->fetchManifest(ref.withDigest(chosen->digest));
      if (!child) {
        return std::unexpected(child.error());
      }
      auto childParsed = parseManifest(child->bytes, child->mediaType);
      if (!childParsed) {
        return std::unexpected(childParsed.error().wrap("manifest " + child->digest.str()));
      }
      if (childParsed->kind != ManifestKind::kImage) {
        return fail(ErrorCode::kInvalidArgument,
                    "index " + manifestDoc.digest.str() + " points to another index");
      }
      indexDoc = std::move(manifestDoc);
      manifestDoc = std::move(*child);
      manifest = std::move(*childParsed);
    }
    BlobFetcher fetcher;
    fetcher.fetchOne = [&](const Descriptor& d, const std::string& dest) {
      return impl.registry->fetchBlob(ref, {d.digest, d.size, dest});
    };
    fetcher.fetchMany = [&](std::span<const BlobRequest> blobs,
                            const std::function<Status(size_t)>& onFetched) {
      return impl.registry->fetchBlobs(ref, blobs, options_.parallelDownloads, onFetched);
    };
    std::vector<std::string> names;
    if (!ref.digest()) {
      names.push_back(ref.str());
    }
    return impl.storeImage(names, pinned, manifestDoc, manifest, indexDoc, fetcher);
  };
  Result<PulledImage> result = doPull();
  if (!result) {
    result = std::unexpected(result.error().wrap("pull " + key));
    log::warn("image pull failed", {{"reference", key}, {"error", result.error().message()}});
  } else {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log::info("image pulled", {{"reference", key},
                               {"image", result->image.digest.str()},
                               {"pinned", result->pinnedReference},
                               {"downloaded", result->downloaded},
                               {"seconds", seconds}});
  }
  {
    std::lock_guard lock(impl.mutex);
    impl.pulls.erase(key);
  }
  promise->set_value(result);
  return result;
}

Result<std::vector<Image>> ImageStore::importArchive(const std::string& path) {
  Impl& impl = *impl_;
  std::string staging = impl.tmpDir() + "/import-XXXXXX";
  if (::mkdtemp(staging.data()) == nullptr) {
    return std::unexpected(errnoError("mkdtemp " + staging, errno));
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() { (void)fs::removeTree(dir); }
  } cleanup{staging};
  auto archive = readImageArchive(path, staging, options_.platform, options_.references);
  if (!archive) {
    return std::unexpected(archive.error().wrap("import " + path));
  }
  std::vector<Image> out;
  for (const ArchiveImage& a : archive->images) {
    BlobFetcher fetcher;
    fetcher.fetchOne = [&](const Descriptor& d, const std::string& dest) {
      return archive->placeBlob(d, dest);
    };
    fetcher.fetchMany = [&](std::span<const BlobRequest> blobs,
                            const std::function<Status(size_t)>& onFetched) -> Status {
      for (size_t i = 0; i < blobs.size(); ++i) {
        Descriptor d;
        d.digest = blobs[i].digest;
        d.size = blobs[i].size;
        SKIFF_TRY_STATUS(archive->placeBlob(d, blobs[i].destPath), "import");
        SKIFF_TRY_STATUS(onFetched(i), "import");
      }
      return {};
    };
    auto stored = impl.storeImage(a.names, "", a.manifestDoc, a.manifest, a.indexDoc, fetcher);
    if (!stored) {
      return std::unexpected(stored.error().wrap("import " + path));
    }
    log::info("image imported", {{"archive", path}, {"image", stored->image.digest.str()}});
    out.push_back(std::move(stored->image));
  }
  return out;
}

Result<Image> ImageStore::image(const Digest& digest) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->images.find(digest);
  if (it == impl_->images.end()) {
    return fail(ErrorCode::kNotFound, "image " + digest.str() + " is not in the store");
  }
  Image copy = it->second;
  impl_->fillDerived(copy);
  return copy;
}

Result<Image> ImageStore::find(std::string_view nameOrDigest) const {
  if (nameOrDigest.starts_with("sha256:")) {
    auto digest = Digest::parse(nameOrDigest);
    if (!digest) {
      return std::unexpected(digest.error());
    }
    return image(*digest);
  }
  auto ref = ImageReference::parse(nameOrDigest, options_.references);
  if (!ref) {
    return std::unexpected(ref.error());
  }
  std::string key = ref->digest() ? ref->name() + "@" + ref->digest()->str() : ref->str();
  {
    std::lock_guard lock(impl_->mutex);
    auto it = impl_->names.find(key);
    if (it != impl_->names.end()) {
      Image copy = impl_->images.at(it->second);
      impl_->fillDerived(copy);
      return copy;
    }
  }
  if (ref->digest()) {
    return image(*ref->digest());
  }
  return fail(ErrorCode::kNotFound, "image " + key + " is not in the store");
}

std::vector<Image> ImageStore::images() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<Image> out;
  for (const auto& [digest, image] : impl_->images) {
    out.push_back(image);
    impl_->fillDerived(out.back());
  }
  return out;
}

Result<RootfsMount> ImageStore::prepareRootfs(const Digest& imageDigest,
                                              const std::string& containerDir) {
  Impl& impl = *impl_;
  if (!validContainerDir(containerDir)) {
    return fail(ErrorCode::kInvalidArgument,
                "container directory '" + containerDir +
                    "' must be absolute and free of ',', ':' and '\\'");
  }
  RootfsMount mount;
  mount.rootfs = containerDir + "/rootfs";
  mount.upperDir = containerDir + "/upper";
  mount.workDir = containerDir + "/work";
  mount.image = imageDigest;
  {
    std::lock_guard lock(impl.mutex);
    auto it = impl.images.find(imageDigest);
    if (it == impl.images.end()) {
      return fail(ErrorCode::kNotFound, "image " + imageDigest.str() + " is not in the store");
    }
    Image& image = it->second;
    mount.config = image.config;
    for (auto layer = image.layers.rbegin(); layer != image.layers.rend(); ++layer) {
      mount.lowerDirs.push_back(impl.layerPath(layer->digest));
    }
    if (auto lease = impl.leases.find(containerDir); lease != impl.leases.end()) {
      if (lease->second != imageDigest) {
        return fail(ErrorCode::kFailedPrecondition,
                    "container directory " + containerDir + " holds image " + lease->second.str());
      }
    } else {
      impl.leases[containerDir] = imageDigest;
    }
    image.lastUsedMs = impl.clock->nowMs();
  }
  auto dropLease = [&] {
    std::lock_guard lock(impl.mutex);
    impl.leases.erase(containerDir);
    ::unlink(impl.leasePath(containerDir).c_str());
  };
  // The lease is durable before the mount exists, so a restarted agent never garbage-collects
  // the layers under a container that is still running.
  json leaseDoc = {{"containerDir", containerDir}, {"image", imageDigest.str()}};
  if (Status s = fs::writeFileAtomic(impl.leasePath(containerDir), dumpJson(leaseDoc)); !s) {
    dropLease();
    return std::unexpected(s.error().wrap("rootfs lease"));
  }
  if (mount.lowerDirs.empty()) {
    // overlayfs needs a lower directory; an image without layers gets an empty one.
    std::string empty = options_.root + "/layers/empty";
    (void)fs::makeDirs(empty, 0755);
    mount.lowerDirs.push_back(empty);
  }
  mount.mountOptions = "lowerdir=";
  for (size_t i = 0; i < mount.lowerDirs.size(); ++i) {
    mount.mountOptions.append(i == 0 ? "" : ":").append(mount.lowerDirs[i]);
  }
  mount.mountOptions.append(",upperdir=").append(mount.upperDir);
  mount.mountOptions.append(",workdir=").append(mount.workDir);
  if (fs::isMountPoint(mount.rootfs)) {
    return mount;  // Prepared before (for instance by an agent that restarted).
  }
  // mount(2) takes at most one page of options.
  if (mount.mountOptions.size() >= 4096) {
    dropLease();
    return fail(ErrorCode::kTooLarge, "image " + imageDigest.str() + " has too many layers (" +
                                          std::to_string(mount.lowerDirs.size()) +
                                          ") for one overlay mount");
  }
  for (const std::string* dir : {&mount.rootfs, &mount.upperDir, &mount.workDir}) {
    if (Status s = fs::makeDirs(*dir, 0755); !s) {
      dropLease();
      return std::unexpected(s.error().wrap("prepare rootfs"));
    }
  }
  if (::mount("overlay", mount.rootfs.c_str(), "overlay", 0, mount.mountOptions.c_str()) != 0) {
    int err = errno;
    dropLease();
    return std::unexpected(errnoError("mount overlay at " + mount.rootfs, err));
  }
  return mount;
}

Status ImageStore::releaseRootfs(const std::string& containerDir) {
  Impl& impl = *impl_;
  std::string rootfs = containerDir + "/rootfs";
  if (fs::isMountPoint(rootfs)) {
    if (::umount2(rootfs.c_str(), 0) != 0) {
      if (errno != EBUSY || ::umount2(rootfs.c_str(), MNT_DETACH) != 0) {
        return std::unexpected(errnoError("unmount " + rootfs, errno));
      }
    }
  }
  std::lock_guard lock(impl.mutex);
  auto lease = impl.leases.find(containerDir);
  if (lease == impl.leases.end()) {
    return {};
  }
  if (auto it = impl.images.find(lease->second); it != impl.images.end()) {
    it->second.lastUsedMs = impl.clock->nowMs();
    if (Status s = impl.persistImage(it->second); !s) {
      log::warn("image store: cannot persist last use",
                {{"image", it->first.str()}, {"error", s.error().message()}});
    }
  }
  impl.leases.erase(lease);
  ::unlink(impl.leasePath(containerDir).c_str());
  return {};
}

int64_t ImageStore::diskUsage() const {
  std::lock_guard lock(impl_->mutex);
  int64_t total = 0;
  for (const auto& [hex, bytes] : impl_->layerBytes) {
    total += bytes;
  }
  for (const auto& [hex, bytes] : impl_->blobBytes) {
    total += bytes;
  }
  return total;
}

Result<GcReport> ImageStore::collectGarbage(std::optional<int64_t> budgetBytes) {
  Impl& impl = *impl_;
  GcReport report;
  report.budgetBytes = budgetBytes.value_or(options_.diskBudgetBytes);
  std::vector<std::string> doomed;  // Renamed into tmp/, deleted after the lock is released.
  {
    std::lock_guard lock(impl.mutex);
    int64_t usage = 0;
    for (const auto& [hex, bytes] : impl.layerBytes) {
      usage += bytes;
    }
    for (const auto& [hex, bytes] : impl.blobBytes) {
      usage += bytes;
    }
    std::set<Digest> leased;
    for (const auto& [dir, digest] : impl.leases) {
      leased.insert(digest);
    }
    std::vector<const Image*> order;
    for (const auto& [digest, image] : impl.images) {
      order.push_back(&image);
    }
    std::sort(order.begin(), order.end(), [](const Image* a, const Image* b) {
      return a->lastUsedMs != b->lastUsedMs ? a->lastUsedMs < b->lastUsedMs : a->digest < b->digest;
    });
    std::vector<Digest> victims;
    // Orphans first (layers and blobs no image needs), then whole images, oldest use first.
    // Usage is estimated per image as what removing it would free.
    auto referenced = [&](const std::set<Digest>& excluded) {
      std::set<std::string> refs;
      for (const auto& [digest, image] : impl.images) {
        if (excluded.contains(digest)) {
          continue;
        }
        for (const Descriptor& l : image.layers) {
          refs.emplace(l.digest.hex());
        }
        for (const Digest& d : Impl::blobsOf(image)) {
          refs.emplace(d.hex());
        }
      }
      for (const auto& [hex, count] : impl.pinnedLayers) {
        refs.insert(hex);
      }
      for (const auto& [hex, job] : impl.layerJobs) {
        refs.insert(hex);
      }
      return refs;
    };
    std::set<Digest> removed;
    auto freeable = [&](const std::set<std::string>& refs) {
      int64_t bytes = 0;
      for (const auto& [hex, b] : impl.layerBytes) {
        bytes += refs.contains(hex) ? 0 : b;
      }
      for (const auto& [hex, b] : impl.blobBytes) {
        bytes += refs.contains(hex) ? 0 : b;
      }
      return bytes;
    };
    int64_t projected = usage - freeable(referenced(removed));
    for (const Image* image : order) {
      if (report.budgetBytes <= 0 || projected <= report.budgetBytes) {
        break;
      }
      if (leased.contains(image->digest)) {
        report.keptInUse.push_back(image->digest);
        continue;
      }
      removed.insert(image->digest);
      projected = usage - freeable(referenced(removed));
    }
    std::set<std::string> keep = referenced(removed);
    for (const Digest& digest : removed) {
      Image& image = impl.images.at(digest);
      for (const std::string& n : image.names) {
        impl.names.erase(n);
      }
      for (const std::string& n : image.repoDigests) {
        impl.names.erase(n);
      }
      ::unlink(impl.imagePath(digest).c_str());
      impl.images.erase(digest);
      report.removedImages.push_back(digest);
    }
    for (auto it = impl.layerBytes.begin(); it != impl.layerBytes.end();) {
      if (keep.contains(it->first)) {
        ++it;
        continue;
      }
      std::string path = options_.root + "/layers/" + it->first;
      std::string grave = impl.tmpDir() + "/gc-" + it->first + "-" + std::to_string(++impl.graves);
      ::unlink((path + ".size").c_str());
      if (::rename(path.c_str(), grave.c_str()) == 0) {
        doomed.push_back(grave);
      }
      report.freedBytes += it->second;
      it = impl.layerBytes.erase(it);
    }
    for (auto it = impl.blobBytes.begin(); it != impl.blobBytes.end();) {
      if (keep.contains(it->first)) {
        ++it;
        continue;
      }
      ::unlink((options_.root + "/blobs/sha256/" + it->first).c_str());
      report.freedBytes += it->second;
      it = impl.blobBytes.erase(it);
    }
    report.usageBytes = usage - report.freedBytes;
  }
  for (const std::string& dir : doomed) {
    if (Status s = fs::removeTree(dir); !s) {
      log::warn("image gc: cannot remove layer", {{"error", s.error().message()}});
    }
  }
  if (!report.removedImages.empty() || report.freedBytes > 0) {
    log::info("image gc", {{"removedImages", report.removedImages.size()},
                           {"freedBytes", report.freedBytes},
                           {"usageBytes", report.usageBytes},
                           {"budgetBytes", report.budgetBytes}});
  }
  return report;
}

}  // namespace skiff::agent::image
