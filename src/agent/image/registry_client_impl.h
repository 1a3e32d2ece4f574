#pragma once

// The parts of RegistryClient shared by its two files: registry_client.cpp (requests, retries,
// manifests and blobs) and registry_auth.cpp (WWW-Authenticate challenges, Basic credentials and
// bearer tokens). Internal to the image library.

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <curl/curl.h>

#include "agent/image/digest.h"
#include "agent/image/registry_client.h"
#include "common/error.h"

namespace skiff::agent::image {

namespace registry_detail {

// ASCII case-insensitive equality, as HTTP header names and auth schemes compare.
bool iequals(std::string_view a, std::string_view b);
std::string lower(std::string_view s);
// Without leading blanks and trailing blanks or line ends.
std::string_view trim(std::string_view s);
// An RFC 7230 token character.
bool isTokenChar(char c);
// Percent-encodes a URL query value.
std::string escape(CURL* curl, std::string_view s);
// The error for a non-2xx answer to `what`, with the registry's own error summary when the body
// has one; 404 and 400 are kNotFound, 429 and 5xx kUnavailable.
Error statusError(const std::string& what, long status, std::string_view body);

// Streams a blob into a file while hashing it.
struct BlobWriter {
  int fd = -1;
  int64_t limit = -1;
  int64_t written = 0;
  std::unique_ptr<Sha256> hash = std::make_unique<Sha256>();

  Status reset() {
    written = 0;
    hash = std::make_unique<Sha256>();
    if (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0) {
      return std::unexpected(errnoError("truncate partial blob", errno));
    }
    return {};
  }
};

}  // namespace registry_detail

struct RegistryClient::Request {
  std::string url;
  std::string accept;
  size_t memoryLimit = 0;  // For bodies kept in memory.
  registry_detail::BlobWriter* blob =
      nullptr;  // For blob bodies; 2xx bodies go here, others to memory.
  const RegistryCredentials* basic = nullptr;  // Credentials sent with this request (token).
  bool insecureTls = false;
  bool allowHttpRedirect = false;
  // Token requests: no cached registry auth is sent and a 401 is returned as is.
  bool skipAuth = false;
};

struct RegistryClient::Response {
  long status = 0;
  std::string contentType;
  std::string dockerContentDigest;
  std::string wwwAuthenticate;
  std::string body;
};

class RegistryClient::HandlePool {
 public:
  ~HandlePool() {
    for (CURL* h : idle_) {
      curl_easy_cleanup(h);
    }
  }
  CURL* acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void release(CURL* h) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < 16) {
      idle_.push_back(h);
    } else {
      curl_easy_cleanup(h);
    }
  }

 private:
  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

}  // namespace skiff::agent::image
