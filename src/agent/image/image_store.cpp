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
#include "agent/image/image_store_impl.h"
#include "agent/image/layer.h"
#include "common/log.h"

namespace skiff::agent::image {

using nlohmann::json;

namespace {

bool isHex64(std::string_view s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

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

}  // namespace skiff::agent::image
