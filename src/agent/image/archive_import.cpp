#include "agent/image/archive_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include <nlohmann/json.hpp>

#include "agent/image/fs_util.h"

namespace skiff::agent::image {
namespace {

using nlohmann::json;

struct ReaderDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};

std::string dirOf(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

// The digest a path names by itself ("blobs/sha256/HEX", "HEX.json", "HEX/layer.tar"), if any.
std::optional<Digest> digestNamedBy(const std::string& rel) {
  std::string candidate;
  if (rel.starts_with("blobs/sha256/")) {
    candidate = rel.substr(13);
  } else if (rel.size() == 64 + 5 && rel.ends_with(".json")) {
    candidate = rel.substr(0, 64);
  }
  auto d = Digest::parse("sha256:" + candidate);
  if (!d) {
    return std::nullopt;
  }
  return *d;
}

Status extract(const std::string& path, ImageArchive& out) {
  std::unique_ptr<archive, ReaderDeleter> reader(archive_read_new());
  archive_read_support_filter_gzip(reader.get());
  archive_read_support_filter_zstd(reader.get());
  archive_read_support_filter_none(reader.get());
  archive_read_support_format_tar(reader.get());
  if (archive_read_open_filename(reader.get(), path.c_str(), 1 << 20) != ARCHIVE_OK) {
    const char* e = archive_error_string(reader.get());
    return fail(ErrorCode::kInvalidArgument, "open archive: " + std::string(e ? e : "unreadable"));
  }
  // Links inside the archive (legacy `docker save` symlinks duplicate layer.tar files).
  std::map<std::string, std::string> aliases;
  std::vector<char> buffer(1 << 20);
  while (true) {
    archive_entry* entry = nullptr;
    int rc = archive_read_next_header(reader.get(), &entry);
    if (rc == ARCHIVE_EOF) {
      break;
    }
    if (rc < ARCHIVE_WARN) {
      const char* e = archive_error_string(reader.get());
      return fail(ErrorCode::kInvalidArgument, "read archive: " + std::string(e ? e : "corrupt"));
    }
    const char* rawName = archive_entry_pathname(entry);
    auto rel = fs::cleanArchivePath(rawName != nullptr ? rawName : "");
    if (!rel || rel->empty()) {
      continue;
    }
    if (const char* hard = archive_entry_hardlink(entry); hard != nullptr) {
      if (auto target = fs::cleanArchivePath(hard); target && !target->empty()) {
        aliases[*rel] = *target;
      }
      continue;
    }
    if (archive_entry_filetype(entry) == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      std::string dir = dirOf(*rel);
      auto resolved = fs::cleanArchivePath((dir.empty() ? "" : dir + "/") +
                                           std::string(target != nullptr ? target : ""));
      if (resolved && !resolved->empty()) {
        aliases[*rel] = *resolved;
      }
      continue;
    }
    if (archive_entry_filetype(entry) != AE_IFREG) {
      continue;
    }
    // Only directories and regular files are ever created here, so no path can lead outside.
    std::string full = out.stagingDir + "/" + *rel;
    std::string dir = dirOf(*rel);
    if (!dir.empty()) {
      SKIFF_TRY_STATUS(fs::makeDirs(out.stagingDir + "/" + dir, 0700), "stage archive");
    }
    int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      return std::unexpected(errnoError("create " + full, errno));
    }
    Sha256 hash;
    int64_t size = 0;
    while (true) {
      la_ssize_t n = archive_read_data(reader.get(), buffer.data(), buffer.size());
      if (n < 0) {
        ::close(fd);
        const char* e = archive_error_string(reader.get());
        return fail(ErrorCode::kInvalidArgument,
                    "read archive member " + *rel + ": " + std::string(e ? e : "corrupt"));
      }
      if (n == 0) {
        break;
      }
      hash.update(buffer.data(), static_cast<size_t>(n));
      size_t done = 0;
      while (done < static_cast<size_t>(n)) {
        ssize_t w = ::write(fd, buffer.data() + done, static_cast<size_t>(n) - done);
        if (w < 0 && errno != EINTR) {
          int err = errno;
          ::close(fd);
          return std::unexpected(errnoError("write " + full, err));
        }
        done += w > 0 ? static_cast<size_t>(w) : 0;
      }
      size += n;
    }
    ::close(fd);
    Digest digest = hash.finish();
    out.files[*rel] = {digest, size};
    out.byDigest[digest] = *rel;
  }
  for (const auto& [name, target] : aliases) {
    std::string t = target;
    // Follow chains of links a few steps at most.
    for (int i = 0; i < 8 && !out.files.contains(t) && aliases.contains(t); ++i) {
      t = aliases.at(t);
    }
    if (auto it = out.files.find(t); it != out.files.end()) {
      ImageArchive::File f = it->second;
      out.files[name] = f;
    }
  }
  return {};
}

Result<std::string> readMember(const ImageArchive& a, const std::string& rel) {
  auto it = a.files.find(rel);
  if (it == a.files.end()) {
    return fail(ErrorCode::kInvalidArgument, "archive has no file " + rel);
  }
  return fs::readFile(a.stagingDir + "/" + a.byDigest.at(it->second.digest), 64 << 20);
}

// Reads the blob `d` of an OCI layout, checking that the file stored under its digest has it.
Result<std::string> readOciBlob(const ImageArchive& a, const Descriptor& d) {
  std::string rel = "blobs/sha256/" + std::string(d.digest.hex());
  auto it = a.files.find(rel);
  if (it == a.files.end()) {
    return fail(ErrorCode::kInvalidArgument, "OCI layout has no blob " + d.digest.str());
  }
  if (it->second.digest != d.digest) {
    return std::unexpected(digestMismatchError("blob", d.digest, it->second.digest));
  }
  if (d.size >= 0 && it->second.size != d.size) {
    return fail(ErrorCode::kInvalidArgument,
                "blob " + d.digest.str() + " has " + std::to_string(it->second.size) +
                    " bytes, its descriptor says " + std::to_string(d.size));
  }
  return fs::readFile(a.stagingDir + "/" + rel, 64 << 20);
}

Result<std::string_view> sniffLayerType(const ImageArchive& a, const std::string& rel) {
  std::string path = a.stagingDir + "/" + a.byDigest.at(a.files.at(rel).digest);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  unsigned char magic[4] = {0, 0, 0, 0};
  ssize_t n = ::read(fd, magic, sizeof magic);
  ::close(fd);
  if (n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    return media_type::kDockerLayerGzip;
  }
  if (n == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    return media_type::kOciLayerZstd;
  }
  return media_type::kDockerLayer;
}

Status readDockerSave(ImageArchive& a, const ReferenceOptions& references) {
  auto text = readMember(a, "manifest.json");
  if (!text) {
    return std::unexpected(text.error());
  }
  json doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_array()) {
    return fail(ErrorCode::kInvalidArgument, "manifest.json: not a JSON array");
  }
  try {
    for (const json& item : doc) {
      std::string configRel =
          fs::cleanArchivePath(item.at("Config").get<std::string>()).value_or("");
      auto configFile = a.files.find(configRel);
      if (configFile == a.files.end()) {
        return fail(ErrorCode::kInvalidArgument, "manifest.json: missing config " + configRel);
      }
      if (auto named = digestNamedBy(configRel); named && *named != configFile->second.digest) {
        return std::unexpected(
            digestMismatchError("config " + configRel, *named, configFile->second.digest));
      }
      auto configBytes = readMember(a, configRel);
      if (!configBytes) {
        return std::unexpected(configBytes.error());
      }
      auto config = parseImageConfig(*configBytes);
      if (!config) {
        return std::unexpected(config.error().wrap(configRel));
      }
      const json& layerList = item.at("Layers");
      if (!config->diffIds.empty() && config->diffIds.size() != layerList.size()) {
        return fail(ErrorCode::kInvalidArgument,
                    "manifest.json: " + std::to_string(layerList.size()) +
                        " layers but the config lists " + std::to_string(config->diffIds.size()));
      }
      json manifest = {{"schemaVersion", 2},
                       {"mediaType", media_type::kDockerManifest},
                       {"config",
                        {{"mediaType", media_type::kDockerConfig},
                         {"size", configFile->second.size},
                         {"digest", configFile->second.digest.str()}}},
                       {"layers", json::array()}};
      for (size_t i = 0; i < layerList.size(); ++i) {
        std::string rel = fs::cleanArchivePath(layerList[i].get<std::string>()).value_or("");
        auto file = a.files.find(rel);
        if (file == a.files.end()) {
          return fail(ErrorCode::kInvalidArgument, "manifest.json: missing layer " + rel);
        }
        if (auto named = digestNamedBy(rel); named && *named != file->second.digest) {
          return std::unexpected(digestMismatchError("layer " + rel, *named, file->second.digest));
        }
        auto type = sniffLayerType(a, rel);
        if (!type) {
          return std::unexpected(type.error());
        }
        // An uncompressed layer's digest is its diff_id: the config vouches for its content.
        if (*type == media_type::kDockerLayer && !config->diffIds.empty() &&
            config->diffIds[i] != file->second.digest) {
          return std::unexpected(
              digestMismatchError("layer " + rel, config->diffIds[i], file->second.digest));
        }
        manifest["layers"].push_back({{"mediaType", *type},
                                      {"size", file->second.size},
                                      {"digest", file->second.digest.str()}});
      }
      ArchiveImage image;
      image.manifestDoc.bytes = manifest.dump();
      image.manifestDoc.mediaType = std::string(media_type::kDockerManifest);
      image.manifestDoc.digest = sha256Of(image.manifestDoc.bytes);
      auto parsed = parseManifest(image.manifestDoc.bytes, image.manifestDoc.mediaType);
      if (!parsed) {
        return std::unexpected(parsed.error());
      }
      image.manifest = std::move(*parsed);
      if (item.contains("RepoTags") && item["RepoTags"].is_array()) {
        for (const json& tag : item["RepoTags"]) {
          if (!tag.is_string()) {
            continue;
          }
          auto ref = ImageReference::parse(tag.get<std::string>(), references);
          if (!ref) {
            return std::unexpected(ref.error().wrap("manifest.json RepoTags"));
          }
          image.names.push_back(ref->str());
        }
      }
      a.images.push_back(std::move(image));
    }
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("manifest.json: ") + e.what());
  }
  return {};
}

Status readOciLayout(ImageArchive& a, const Platform& platform,
                     const ReferenceOptions& references) {
  auto text = readMember(a, "index.json");
  if (!text) {
    return std::unexpected(text.error());
  }
  auto index = parseManifest(*text, media_type::kOciIndex);
  if (!index) {
    return std::unexpected(index.error().wrap("index.json"));
  }
  if (index->kind != ManifestKind::kIndex) {
    return fail(ErrorCode::kInvalidArgument, "index.json: not an image index");
  }
  for (const Descriptor& d : index->manifests) {
    auto bytes = readOciBlob(a, d);
    if (!bytes) {
      return std::unexpected(bytes.error());
    }
    auto parsed = parseManifest(*bytes, d.mediaType);
    if (!parsed) {
      return std::unexpected(parsed.error().wrap("manifest " + d.digest.str()));
    }
    ArchiveImage image;
    if (parsed->kind == ManifestKind::kIndex) {
      auto chosen = selectPlatform(*parsed, platform);
      if (!chosen) {
        continue;
      }
      auto childBytes = readOciBlob(a, *chosen);
      if (!childBytes) {
        return std::unexpected(childBytes.error());
      }
      auto child = parseManifest(*childBytes, chosen->mediaType);
      if (!child) {
        return std::unexpected(child.error().wrap("manifest " + chosen->digest.str()));
      }
      if (child->kind != ManifestKind::kImage) {
        return fail(ErrorCode::kInvalidArgument, "nested index " + chosen->digest.str());
      }
      image.indexDoc = FetchedManifest{std::move(*bytes), parsed->mediaType, d.digest};
      image.manifestDoc = FetchedManifest{std::move(*childBytes), child->mediaType, chosen->digest};
      image.manifest = std::move(*child);
    } else {
      if (d.platform &&
          (d.platform->os != platform.os || d.platform->architecture != platform.architecture)) {
        continue;
      }
      image.manifestDoc = FetchedManifest{std::move(*bytes), parsed->mediaType, d.digest};
      image.manifest = std::move(*parsed);
    }
    // containerd records the full name; OCI's ref.name is often only a tag, which names nothing
    // without a repository.
    std::string name;
    if (auto it = d.annotations.find("io.containerd.image.name"); it != d.annotations.end()) {
      name = it->second;
    } else if (auto ref = d.annotations.find("org.opencontainers.image.ref.name");
               ref != d.annotations.end() && ref->second.find_first_of("/:") != std::string::npos) {
      name = ref->second;
    }
    if (!name.empty()) {
      if (auto ref = ImageReference::parse(name, references); ref && !ref->digest()) {
        image.names.push_back(ref->str());
      }
    }
    a.images.push_back(std::move(image));
  }
  return {};
}

}  // namespace

Status ImageArchive::placeBlob(const Descriptor& d, const std::string& dest) const {
  auto it = byDigest.find(d.digest);
  if (it == byDigest.end()) {
    // An OCI layout names blobs by digest: a file under the name with other content is corrupt.
    std::string rel = "blobs/sha256/" + std::string(d.digest.hex());
    if (auto named = files.find(rel); named != files.end()) {
      return std::unexpected(digestMismatchError("blob", d.digest, named->second.digest));
    }
    return fail(ErrorCode::kInvalidArgument, "archive has no blob " + d.digest.str());
  }
  const File& file = files.at(it->second);
  if (d.size >= 0 && file.size != d.size) {
    return fail(ErrorCode::kInvalidArgument,
                "blob " + d.digest.str() + " has " + std::to_string(file.size) +
                    " bytes, its descriptor says " + std::to_string(d.size));
  }
  // Staging and the store share a filesystem (tmp/ is inside the store), so a link suffices.
  std::string source = stagingDir + "/" + it->second;
  if (::link(source.c_str(), dest.c_str()) != 0) {
    return std::unexpected(errnoError("link " + source + " to " + dest, errno));
  }
  return {};
}

Result<ImageArchive> readImageArchive(const std::string& path, const std::string& stagingDir,
                                      const Platform& platform,
                                      const ReferenceOptions& references) {
  ImageArchive a;
  a.stagingDir = stagingDir;
  SKIFF_TRY_STATUS(extract(path, a), "read archive");
  if (a.files.contains("manifest.json")) {
    SKIFF_TRY_STATUS(readDockerSave(a, references), "docker save archive");
  } else if (a.files.contains("index.json")) {
    SKIFF_TRY_STATUS(readOciLayout(a, platform, references), "OCI layout archive");
  } else {
    return fail(ErrorCode::kInvalidArgument,
                "neither a docker save archive (manifest.json) nor an OCI layout (index.json)");
  }
  if (a.images.empty()) {
    return fail(ErrorCode::kNotFound,
                "archive holds no image for " + platform.os + "/" + platform.architecture);
  }
  return a;
}

}  // namespace skiff::agent::image
