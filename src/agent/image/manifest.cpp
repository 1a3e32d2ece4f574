#include "agent/image/manifest.h"

#include <nlohmann/json.hpp>

namespace skiff::agent::image {
namespace {

using nlohmann::json;

Error invalid(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

Result<Descriptor> parseDescriptor(const json& j, std::string_view where) {
  if (!j.is_object()) {
    return std::unexpected(invalid(std::string(where) + ": not an object"));
  }
  Descriptor d;
  if (j.contains("mediaType") && j["mediaType"].is_string()) {
    d.mediaType = j["mediaType"].get<std::string>();
  }
  if (!j.contains("digest") || !j["digest"].is_string()) {
    return std::unexpected(invalid(std::string(where) + ": missing digest"));
  }
  auto digest = Digest::parse(j["digest"].get<std::string>());
  if (!digest) {
    return std::unexpected(digest.error().wrap(where));
  }
  d.digest = *digest;
  if (!j.contains("size") || !j["size"].is_number_integer() || j["size"].get<int64_t>() < 0) {
    return std::unexpected(invalid(std::string(where) + ": missing or negative size"));
  }
  d.size = j["size"].get<int64_t>();
  if (j.contains("platform") && j["platform"].is_object()) {
    const json& p = j["platform"];
    Platform platform;
    platform.os = p.value("os", "");
    platform.architecture = p.value("architecture", "");
    platform.variant = p.value("variant", "");
    d.platform = platform;
  }
  if (j.contains("annotations") && j["annotations"].is_object()) {
    for (const auto& [key, value] : j["annotations"].items()) {
      if (value.is_string()) {
        d.annotations[key] = value.get<std::string>();
      }
    }
  }
  return d;
}

std::vector<std::string> stringList(const json& j, const char* key) {
  std::vector<std::string> out;
  if (j.contains(key) && j[key].is_array()) {
    for (const auto& item : j[key]) {
      if (item.is_string()) {
        out.push_back(item.get<std::string>());
      }
    }
  }
  return out;
}

Result<Manifest> parseManifestJson(const json& doc, std::string_view contentType) {
  if (!doc.is_object()) {
    return std::unexpected(invalid("manifest: not a JSON object"));
  }
  if (doc.contains("schemaVersion") && doc["schemaVersion"].is_number_integer() &&
      doc["schemaVersion"].get<int>() == 1) {
    return std::unexpected(invalid("manifest: Docker schema 1 manifests are not supported"));
  }
  Manifest m;
  m.mediaType = doc.value("mediaType", "");
  if (m.mediaType.empty()) {
    // OCI allows the field to be absent; the Content-Type then says what it is, and failing that
    // the shape of the document does.
    std::string_view type = contentType.substr(0, contentType.find(';'));
    if (!type.empty() && type != "application/json" && type != "text/plain") {
      m.mediaType = std::string(type);
    } else if (doc.contains("manifests")) {
      m.mediaType = std::string(media_type::kOciIndex);
    } else {
      m.mediaType = std::string(media_type::kOciManifest);
    }
  }
  if (m.mediaType == media_type::kOciIndex || m.mediaType == media_type::kDockerManifestList) {
    m.kind = ManifestKind::kIndex;
    if (!doc.contains("manifests") || !doc["manifests"].is_array()) {
      return std::unexpected(invalid("index: missing manifests"));
    }
    for (size_t i = 0; i < doc["manifests"].size(); ++i) {
      auto d = parseDescriptor(doc["manifests"][i], "index: manifests[" + std::to_string(i) + "]");
      if (!d) {
        return std::unexpected(d.error());
      }
      m.manifests.push_back(std::move(*d));
    }
    return m;
  }
  if (m.mediaType != media_type::kOciManifest && m.mediaType != media_type::kDockerManifest) {
    return std::unexpected(invalid("manifest: unsupported media type '" + m.mediaType + "'"));
  }
  m.kind = ManifestKind::kImage;
  if (!doc.contains("config")) {
    return std::unexpected(invalid("manifest: missing config"));
  }
  auto config = parseDescriptor(doc["config"], "manifest: config");
  if (!config) {
    return std::unexpected(config.error());
  }
  m.config = std::move(*config);
  if (!doc.contains("layers") || !doc["layers"].is_array()) {
    return std::unexpected(invalid("manifest: missing layers"));
  }
  for (size_t i = 0; i < doc["layers"].size(); ++i) {
    std::string where = "manifest: layers[" + std::to_string(i) + "]";
    auto d = parseDescriptor(doc["layers"][i], where);
    if (!d) {
      return std::unexpected(d.error());
    }
    auto compression = layerCompression(d->mediaType);
    if (!compression) {
      return std::unexpected(compression.error().wrap(where));
    }
    m.layers.push_back(std::move(*d));
  }
  return m;
}

}  // namespace

Result<Compression> layerCompression(std::string_view mediaType) {
  if (mediaType == media_type::kOciLayerGzip || mediaType == media_type::kDockerLayerGzip) {
    return Compression::kGzip;
  }
  if (mediaType == media_type::kOciLayerZstd) {
    return Compression::kZstd;
  }
  if (mediaType == media_type::kOciLayer || mediaType == media_type::kDockerLayer) {
    return Compression::kNone;
  }
  return std::unexpected(invalid("unsupported layer media type '" + std::string(mediaType) + "'"));
}

Result<Manifest> parseManifest(std::string_view bytes, std::string_view contentType) {
  json doc = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return std::unexpected(invalid("manifest: not valid JSON"));
  }
  // nlohmann's accessors can still throw on type surprises the checks above missed; keep them
  // inside this module.
  try {
    return parseManifestJson(doc, contentType);
  } catch (const std::exception& e) {
    return std::unexpected(invalid(std::string("manifest: ") + e.what()));
  }
}

Result<Descriptor> selectPlatform(const Manifest& index, const Platform& want) {
  std::string offered;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) {
      continue;
    }
    if (!offered.empty()) {
      offered.append(", ");
    }
    offered.append(d.platform->os).append("/").append(d.platform->architecture);
    if (!d.platform->variant.empty()) {
      offered.append("/").append(d.platform->variant);
    }
    bool match = d.platform->os == want.os && d.platform->architecture == want.architecture &&
                 (want.variant.empty() || d.platform->variant == want.variant);
    if (match) {
      return d;
    }
  }
  std::string message = "index has no manifest for " + want.os + "/" + want.architecture;
  message.append(" (it offers: ").append(offered.empty() ? "nothing" : offered).append(")");
  return std::unexpected(Error(ErrorCode::kNotFound, std::move(message)));
}

Result<ImageConfig> parseImageConfig(std::string_view bytes) {
  json doc = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return std::unexpected(invalid("image config: not a JSON object"));
  }
  try {
    ImageConfig c;
    c.os = doc.value("os", "");
    c.architecture = doc.value("architecture", "");
    if (doc.contains("config") && doc["config"].is_object()) {
      const json& cfg = doc["config"];
      c.entrypoint = stringList(cfg, "Entrypoint");
      c.cmd = stringList(cfg, "Cmd");
      c.env = stringList(cfg, "Env");
      if (cfg.contains("WorkingDir") && cfg["WorkingDir"].is_string()) {
        c.workingDir = cfg["WorkingDir"].get<std::string>();
      }
      if (cfg.contains("User") && cfg["User"].is_string()) {
        c.user = cfg["User"].get<std::string>();
      }
    }
    if (doc.contains("rootfs") && doc["rootfs"].is_object()) {
      for (const std::string& id : stringList(doc["rootfs"], "diff_ids")) {
        auto digest = Digest::parse(id);
        if (!digest) {
          return std::unexpected(digest.error().wrap("image config: rootfs.diff_ids"));
        }
        c.diffIds.push_back(*digest);
      }
    }
    return c;
  } catch (const std::exception& e) {
    return std::unexpected(invalid(std::string("image config: ") + e.what()));
  }
}

std::string imageConfigToJson(const ImageConfig& c) {
  json diffIds = json::array();
  for (const Digest& d : c.diffIds) {
    diffIds.push_back(d.str());
  }
  json j = {{"os", c.os},
            {"architecture", c.architecture},
            {"config",
             {{"Entrypoint", c.entrypoint},
              {"Cmd", c.cmd},
              {"Env", c.env},
              {"WorkingDir", c.workingDir},
              {"User", c.user}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", diffIds}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ImageConfig> imageConfigFromJson(std::string_view text) {
  return parseImageConfig(text);
}

}  // namespace skiff::agent::image
