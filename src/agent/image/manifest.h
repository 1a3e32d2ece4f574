#pragma once

// OCI and Docker manifest, index and image-config documents: parsing, validation and platform
// selection. Pure functions over bytes; no I/O. Parsing never throws: malformed JSON or a missing
// field is a kInvalidArgument error that names the field.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/digest.h"
#include "common/error.h"

namespace skiff::agent::image {

namespace media_type {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
// The Accept header for manifest requests: every kind this library understands.
inline constexpr std::string_view kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media_type

// How a layer blob is compressed; decided from its media type.
enum class Compression { kNone, kGzip, kZstd };

struct Platform {
  std::string os = "linux";
  std::string architecture = "amd64";
  std::string variant;  // Empty matches any variant.
};

struct Descriptor {
  std::string mediaType;
  Digest digest;
  int64_t size = 0;
  std::optional<Platform> platform;  // Index entries only.
  std::map<std::string, std::string> annotations;
};

enum class ManifestKind { kImage, kIndex };

// A parsed manifest (image manifest or index/manifest list).
struct Manifest {
  ManifestKind kind = ManifestKind::kImage;
  std::string mediaType;
  // kImage: the config blob and the layers, base layer first.
  Descriptor config;
  std::vector<Descriptor> layers;
  // kIndex: the platform manifests.
  std::vector<Descriptor> manifests;
};

// The parts of an image config the runtime honours.
struct ImageConfig {
  std::string os;
  std::string architecture;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "KEY=value".
  std::string workingDir;
  std::string user;
  std::vector<Digest> diffIds;  // Digests of the uncompressed layers, base first.
};

// Parses a manifest. `contentType` (the HTTP Content-Type, or "" when unknown) is used when the
// document has no `mediaType` field. Fails with kInvalidArgument for schema 1 manifests, unknown
// media types, and documents without the fields their kind requires; layers must have a known
// layer media type (foreign and non-distributable layers are refused).
Result<Manifest> parseManifest(std::string_view bytes, std::string_view contentType);

// Picks the entry of an index for `want` (os and architecture must match; a non-empty variant
// must match too). Fails with kNotFound, listing what the index offers, when none does.
Result<Descriptor> selectPlatform(const Manifest& index, const Platform& want);

Result<ImageConfig> parseImageConfig(std::string_view bytes);

// The compression of a layer media type; kInvalidArgument for anything that is not a layer.
Result<Compression> layerCompression(std::string_view mediaType);

// JSON for the parts of a config the store keeps, and back.
std::string imageConfigToJson(const ImageConfig& config);
Result<ImageConfig> imageConfigFromJson(std::string_view json);

}  // namespace skiff::agent::image
