#pragma once

// `RegistryClient`: the OCI Distribution client on libcurl.
//
// Transport: a registry that is on loopback or listed in `insecureRegistries` may be plain HTTP or
// TLS without certificate checks, as Docker allows; the client tries HTTPS first and falls back to
// HTTP once per registry, remembering the answer. Every other registry must speak verified TLS.
// Redirects (blob storage back ends) are followed, never from HTTPS down to HTTP, and libcurl
// drops the Authorization header when a redirect changes host.
//
// Authentication: requests go out anonymously (or with a cached token) first. On 401 with
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` the client asks the realm for a token
// (with Basic credentials if configured for that registry, anonymously otherwise), caches it per
// registry and repository until it expires, and retries once. On a Basic challenge it retries
// with the configured credentials. The realm must be HTTPS unless its host is loopback or
// insecure, so a token request never leaks credentials in clear text to a remote host.
//
// Verification: see registry.h. Blobs are hashed (OpenSSL EVP SHA-256) while they stream to a
// temporary file next to the destination, which is renamed into place only after the digest and
// size match. More bytes than the descriptor's size abort the transfer.
//
// Thread safety: all methods may be called concurrently; connections are pooled and reused.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/registry.h"

namespace skiff::agent::image {

struct RegistryCredentials {
  std::string username;
  std::string password;
};

struct RegistryClientOptions {
  // Registries as written in references ("host:port") that may use plain HTTP or unverified TLS.
  // Loopback registries always may.
  std::vector<std::string> insecureRegistries;
  // Credentials per registry (as written in references), used for token requests and Basic auth.
  std::map<std::string, RegistryCredentials> credentials;
  // A CA bundle file for TLS verification; empty uses the system's.
  std::string caFile;
  std::chrono::milliseconds connectTimeout{10'000};
  // A transfer slower than 1 KiB/s for this long is aborted (and retried).
  std::chrono::seconds stallTimeout{30};
  // Manifests and token responses larger than this are refused (kTooLarge).
  size_t maxManifestBytes = 4 << 20;
  // Extra attempts after a transient failure (connection errors, 429, 5xx).
  int retries = 2;
  std::chrono::milliseconds retryBackoff{200};
  std::string userAgent = "skiff-agent";
};

// One challenge of a `WWW-Authenticate` header: the scheme (as sent) and its parameters (names
// lowercased, quoted values unescaped).
struct AuthChallenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

// Parses a `WWW-Authenticate` value, which may hold several challenges
// (`Basic realm="x", Bearer realm="y",scope="a,b"`). kInvalidArgument if it is malformed.
Result<std::vector<AuthChallenge>> parseWwwAuthenticate(std::string_view header);

class RegistryClient final : public Registry {
 public:
  explicit RegistryClient(RegistryClientOptions options = {});
  ~RegistryClient() override;

  Result<FetchedManifest> fetchManifest(const ImageReference& ref) override;
  Status fetchBlob(const ImageReference& repo, const BlobRequest& blob) override;

  // How many token requests this client made; for tests of the auth flow.
  int64_t tokenRequests() const;

 private:
  struct Request;
  struct Response;
  class HandlePool;

  Result<std::string> baseUrl(const ImageReference& ref);
  bool insecure(const ImageReference& ref) const;
  bool insecureHost(std::string_view hostPort, std::string_view host) const;
  // Performs `request` with auth and retries; the body goes where `request` says.
  Result<Response> perform(const ImageReference& repo, Request& request);
  // Answers a 401: returns the Authorization header line to retry with. `failedHeader` is the one
  // the refused request carried; a different cached one (from a concurrent request) is reused.
  Result<std::string> authorize(const ImageReference& repo, std::string_view challengeHeader,
                                const std::string& failedHeader);
  Result<std::string> fetchToken(const ImageReference& repo, const AuthChallenge& challenge);

  RegistryClientOptions options_;
  std::unique_ptr<HandlePool> handles_;

  struct CachedAuth {
    std::string header;  // The full "Authorization: ..." line.
    std::chrono::steady_clock::time_point expires;
  };
  mutable std::mutex mutex_;
  std::map<std::string, std::string> baseUrls_;  // Guarded by mutex_; registry → scheme://host.
  std::map<std::string, CachedAuth> auth_;       // Guarded by mutex_; "registry|repo" → auth.
  // One token request at a time per "registry|repo", so parallel downloads that all meet a 401
  // share one token. Guarded by mutex_ (the map; each mutex guards its key's token request).
  std::map<std::string, std::shared_ptr<std::mutex>> authLocks_;
  int64_t tokenRequests_ = 0;  // Guarded by mutex_.
};

}  // namespace skiff::agent::image
