#pragma once

// Image references in Docker's convention:
//
//   [HOST[:PORT]/]PATH[:TAG][@sha256:HEX]
//
// The first path component is a registry host when it contains '.' or ':', is "localhost", or is
// a bracketed IPv6 address ("[::1]:5000"); otherwise the reference is on the default registry.
// Without a tag or a digest the tag is "latest". With both, the digest decides what is pulled and
// the tag is kept only for display. On Docker Hub ("docker.io") a one-component path gets the
// "library/" prefix, and its API host is "registry-1.docker.io".

#include <optional>
#include <string>
#include <string_view>

#include "agent/image/digest.h"
#include "common/error.h"

namespace skiff::agent::image {

struct ReferenceOptions {
  // The registry for references without a host. Machines without Docker Hub access set this to
  // their local mirror ("127.0.0.1:5000").
  std::string defaultRegistry = "docker.io";
};

class ImageReference {
 public:
  // Fails with kInvalidArgument, naming the problem, when `text` is not a valid reference.
  static Result<ImageReference> parse(std::string_view text, const ReferenceOptions& options = {});

  // The registry as written ("docker.io", "127.0.0.1:5000", "[::1]:5000").
  const std::string& registry() const { return registry_; }
  // The host (and port) the API is served on; differs from `registry()` only for Docker Hub.
  std::string apiHost() const;
  // The host without port or brackets ("127.0.0.1", "::1").
  std::string hostName() const;
  const std::string& repository() const { return repository_; }
  const std::string& tag() const { return tag_; }  // Empty when only a digest was given.
  const std::optional<Digest>& digest() const { return digest_; }

  // What to ask the registry's manifest endpoint for: the digest if there is one, else the tag.
  std::string manifestReference() const;
  // "registry/repository:tag", "registry/repository@digest" or both forms combined.
  std::string str() const;
  // "registry/repository".
  std::string name() const;

  // This reference pinned to `digest` (tag dropped); what a task records after resolution.
  ImageReference withDigest(const Digest& digest) const;

 private:
  std::string registry_;
  std::string repository_;
  std::string tag_;
  std::optional<Digest> digest_;
};

// Whether `host` (no port, no brackets) is a loopback name or address: "localhost", 127.0.0.0/8,
// "::1".
bool isLoopbackHost(std::string_view host);

}  // namespace skiff::agent::image
