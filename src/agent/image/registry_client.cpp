#include "agent/image/registry_client.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <thread>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "agent/image/manifest.h"
#include "agent/image/registry_client_impl.h"
#include "common/encoding.h"
#include "common/log.h"

namespace skiff::agent::image {

namespace registry_detail {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool isTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string escape(CURL* curl, std::string_view s) {
  char* e = curl_easy_escape(curl, s.data(), static_cast<int>(s.size()));
  std::string out = e != nullptr ? e : "";
  curl_free(e);
  return out;
}

}  // namespace registry_detail

using namespace registry_detail;

namespace {

using nlohmann::json;

// Bodies of error responses are only read for their message; more than this is cut.
constexpr size_t kErrorBodyLimit = 64 * 1024;

bool transientCurlError(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// The first error of a registry's JSON error body ("MANIFEST_UNKNOWN: manifest unknown").
std::string registryErrorSummary(std::string_view body) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("errors") ||
      !doc["errors"].is_array() || doc["errors"].empty() || !doc["errors"][0].is_object()) {
    return "";
  }
  const json& e = doc["errors"][0];
  std::string out;
  if (e.contains("code") && e["code"].is_string()) {
    out = e["code"].get<std::string>();
  }
  if (e.contains("message") && e["message"].is_string()) {
    out.append(out.empty() ? "" : ": ").append(e["message"].get<std::string>());
  }
  return out.substr(0, 512);
}

std::once_flag curlInitOnce;

struct Transfer {
  CURL* curl = nullptr;
  RegistryClient* client = nullptr;
  size_t memoryLimit = 0;
  BlobWriter* blob = nullptr;
  std::string* body = nullptr;
  bool tooLarge = false;
  std::optional<Error> sinkError;
  // Header fields of the current response (reset at each status line, since redirects and 401s
  // produce several header blocks).
  std::string contentType;
  std::string dockerContentDigest;
  std::string wwwAuthenticate;
};

size_t onHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t->contentType.clear();
    t->dockerContentDigest.clear();
    t->wwwAuthenticate.clear();
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return size * count;
  }
  std::string_view name = trim(line.substr(0, colon));
  std::string_view value = trim(line.substr(colon + 1));
  if (iequals(name, "content-type")) {
    t->contentType = std::string(trim(value.substr(0, value.find(';'))));
  } else if (iequals(name, "docker-content-digest")) {
    t->dockerContentDigest = std::string(value);
  } else if (iequals(name, "www-authenticate")) {
    // Several header lines are one comma-separated list.
    if (!t->wwwAuthenticate.empty()) {
      t->wwwAuthenticate.append(", ");
    }
    t->wwwAuthenticate.append(value);
  }
  return size * count;
}

size_t onBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t length = size * count;
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (t->blob != nullptr && code >= 200 && code < 300) {
    BlobWriter& w = *t->blob;
    if (w.limit >= 0 && w.written + static_cast<int64_t>(length) > w.limit) {
      t->tooLarge = true;
      return 0;  // Aborts the transfer.
    }
    w.hash->update(data, length);
    size_t done = 0;
    while (done < length) {
      ssize_t n = ::write(w.fd, data + done, length - done);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        t->sinkError = errnoError("write blob", errno);
        return 0;
      }
      done += static_cast<size_t>(n);
    }
    w.written += static_cast<int64_t>(length);
    return length;
  }
  size_t limit = t->blob != nullptr ? kErrorBodyLimit : t->memoryLimit;
  if (t->body->size() + length > limit) {
    if (t->blob != nullptr) {
      return length;  // An error body: the start is enough.
    }
    t->tooLarge = true;
    return 0;
  }
  t->body->append(data, length);
  return length;
}

}  // namespace

namespace registry_detail {

Error statusError(const std::string& what, long status, std::string_view body) {
  ErrorCode code = ErrorCode::kIo;
  // 400 answers a name or tag the registry will never serve (NAME_INVALID, TAG_INVALID), as
  // definitive as 404 (MANIFEST_UNKNOWN, NAME_UNKNOWN).
  if (status == 404 || status == 400) {
    code = ErrorCode::kNotFound;
  } else if (status == 401) {
    code = ErrorCode::kUnauthenticated;
  } else if (status == 403) {
    code = ErrorCode::kPermissionDenied;
  } else if (status == 429 || status >= 500) {
    code = ErrorCode::kUnavailable;
  }
  std::string message = what;
  message.append(": HTTP ").append(std::to_string(status));
  std::string summary = registryErrorSummary(body);
  if (!summary.empty()) {
    message.append(" (").append(summary).append(")");
  }
  return Error(code, std::move(message));
}

}  // namespace registry_detail

RegistryClient::RegistryClient(RegistryClientOptions options)
    : options_(std::move(options)), handles_(std::make_unique<HandlePool>()) {
  std::call_once(curlInitOnce, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

RegistryClient::~RegistryClient() = default;

int64_t RegistryClient::tokenRequests() const {
  std::lock_guard lock(mutex_);
  return tokenRequests_;
}

bool RegistryClient::insecureHost(std::string_view hostPort, std::string_view host) const {
  if (isLoopbackHost(host)) {
    return true;
  }
  for (const std::string& entry : options_.insecureRegistries) {
    if (entry == hostPort || entry == host) {
      return true;
    }
  }
  return false;
}

bool RegistryClient::insecure(const ImageReference& ref) const {
  return insecureHost(ref.registry(), ref.hostName());
}

namespace {

// One plain request with no auth negotiation and no retries. Fills `response`; returns the curl
// result and leaves sink problems in `transfer`.
CURLcode execute(CURL* curl, const std::string& url, const std::string& accept,
                 const std::string& authHeader, const RegistryCredentials* basic, bool insecureTls,
                 bool allowHttpRedirect, const RegistryClientOptions& options, Transfer& transfer,
                 long* status, std::string* curlError) {
  curl_easy_reset(curl);
  char errorBuffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errorBuffer);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, allowHttpRedirect ? "http,https" : "https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.connectTimeout.count()));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.stallTimeout.count()));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options.userAgent.c_str());
  // Large reads keep the per-callback cost (hash update + write) small relative to the data.
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  if (insecureTls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!options.caFile.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options.caFile.c_str());
  }
  if (basic != nullptr) {
    curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(curl, CURLOPT_USERNAME, basic->username.c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, basic->password.c_str());
  }
  curl_slist* headers = nullptr;
  if (!accept.empty()) {
    headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
  }
  if (!authHeader.empty()) {
    headers = curl_slist_append(headers, authHeader.c_str());
  }
  if (headers != nullptr) {
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  }
  transfer.curl = curl;
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
  if (rc != CURLE_OK) {
    *curlError = errorBuffer[0] != '\0' ? errorBuffer : curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  return rc;
}

}  // namespace

Result<std::string> RegistryClient::baseUrl(const ImageReference& ref) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = baseUrls_.find(ref.registry()); it != baseUrls_.end()) {
      return it->second;
    }
  }
  std::string host = ref.apiHost();
  if (!insecure(ref)) {
    std::string url = "https://" + host;
    std::lock_guard lock(mutex_);
    baseUrls_[ref.registry()] = url;
    return url;
  }
  // Docker's rule for insecure registries: HTTPS without verification if it answers, else HTTP.
  std::string lastError;
  for (std::string_view scheme : {"https://", "http://"}) {
    std::string url = std::string(scheme) + host;
    CURL* curl = handles_->acquire();
    std::string body;
    Transfer transfer;
    transfer.body = &body;
    transfer.memoryLimit = kErrorBodyLimit;
    long status = 0;
    std::string curlError;
    CURLcode rc = execute(curl, url + "/v2/", "", "", nullptr, /*insecureTls=*/true,
                          /*allowHttpRedirect=*/true, options_, transfer, &status, &curlError);
    handles_->release(curl);
    if (rc == CURLE_OK && status != 0) {
      std::lock_guard lock(mutex_);
      baseUrls_[ref.registry()] = url;
      return url;
    }
    lastError = curlError;
  }
  return fail(ErrorCode::kUnavailable,
              "registry " + ref.registry() + " unreachable over HTTPS and HTTP: " + lastError);
}

Result<RegistryClient::Response> RegistryClient::perform(const ImageReference& repo,
                                                         Request& request) {
  std::string cacheKey = repo.registry() + "|" + repo.repository();
  std::string authHeader;
  if (!request.skipAuth) {
    std::lock_guard lock(mutex_);
    if (auto it = auth_.find(cacheKey);
        it != auth_.end() && it->second.expires > std::chrono::steady_clock::now()) {
      authHeader = it->second.header;
    }
  }
  bool authTried = false;
  int attempt = 0;
  CURL* curl = handles_->acquire();
  struct Release {
    HandlePool* pool;
    CURL* curl;
    ~Release() { pool->release(curl); }
  } release{handles_.get(), curl};
  while (true) {
    Response response;
    if (request.blob != nullptr) {
      SKIFF_TRY_STATUS(request.blob->reset(), "GET " + request.url);
    }
    Transfer transfer;
    transfer.client = this;
    transfer.memoryLimit = request.memoryLimit;
    transfer.blob = request.blob;
    transfer.body = &response.body;
    std::string curlError;
    CURLcode rc =
        execute(curl, request.url, request.accept, authHeader, request.basic, request.insecureTls,
                request.allowHttpRedirect, options_, transfer, &response.status, &curlError);
    response.contentType = std::move(transfer.contentType);
    response.dockerContentDigest = std::move(transfer.dockerContentDigest);
    response.wwwAuthenticate = std::move(transfer.wwwAuthenticate);
    if (transfer.sinkError) {
      return std::unexpected(transfer.sinkError->wrap("GET " + request.url));
    }
    if (transfer.tooLarge) {
      if (request.blob != nullptr) {
        return fail(ErrorCode::kInvalidArgument,
                    "GET " + request.url + ": the registry sent more than the descriptor's " +
                        std::to_string(request.blob->limit) + " bytes");
      }
      return fail(ErrorCode::kTooLarge, "GET " + request.url + ": response larger than " +
                                            std::to_string(request.memoryLimit) + " bytes");
    }
    bool retryable = false;
    if (rc != CURLE_OK) {
      retryable = transientCurlError(rc);
      if (!retryable || attempt >= options_.retries) {
        return fail(retryable ? ErrorCode::kUnavailable : ErrorCode::kIo,
                    "GET " + request.url + ": " + curlError);
      }
    } else if (response.status == 401 && !authTried && !request.skipAuth) {
      authTried = true;
      auto header = authorize(repo, response.wwwAuthenticate, authHeader);
      if (!header) {
        return std::unexpected(header.error().wrap("GET " + request.url));
      }
      authHeader = std::move(*header);
      continue;  // The retry with credentials is not one of the transient-failure attempts.
    } else if (response.status == 429 || response.status >= 500) {
      retryable = attempt < options_.retries;
      if (!retryable) {
        return response;
      }
    } else {
      return response;
    }
    ++attempt;
    std::this_thread::sleep_for(options_.retryBackoff * (1 << (attempt - 1)));
  }
}

Result<FetchedManifest> RegistryClient::fetchManifest(const ImageReference& ref) {
  std::string what = "manifest " + ref.str();
  auto base = baseUrl(ref);
  if (!base) {
    return std::unexpected(base.error().wrap(what));
  }
  Request request;
  request.url = *base + "/v2/" + ref.repository() + "/manifests/" + ref.manifestReference();
  request.accept = std::string(media_type::kManifestAccept);
  request.memoryLimit = options_.maxManifestBytes;
  request.insecureTls = insecure(ref);
  request.allowHttpRedirect = base->starts_with("http://");
  auto response = perform(ref, request);
  if (!response) {
    return std::unexpected(response.error().wrap(what));
  }
  if (response->status != 200) {
    return std::unexpected(statusError(what, response->status, response->body));
  }
  FetchedManifest out;
  out.digest = sha256Of(response->body);
  if (ref.digest() && *ref.digest() != out.digest) {
    return std::unexpected(
        digestMismatchError("manifest of " + ref.name(), *ref.digest(), out.digest));
  }
  if (response->dockerContentDigest.starts_with("sha256:")) {
    auto claimed = Digest::parse(response->dockerContentDigest);
    if (!claimed || *claimed != out.digest) {
      // The registry names other bytes than it sent; trust neither.
      Digest named = claimed ? *claimed : out.digest;
      return std::unexpected(digestMismatchError("manifest of " + ref.str(), named, out.digest));
    }
  }
  out.bytes = std::move(response->body);
  out.mediaType = std::move(response->contentType);
  return out;
}

Status RegistryClient::fetchBlob(const ImageReference& repo, const BlobRequest& blob) {
  std::string what = "blob " + blob.digest.str() + " of " + repo.name();
  auto base = baseUrl(repo);
  if (!base) {
    return std::unexpected(base.error().wrap(what));
  }
  std::string partial = blob.destPath + ".partial-XXXXXX";
  int fd = ::mkostemp(partial.data(), O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("create " + partial, errno).wrap(what));
  }
  BlobWriter writer;
  writer.fd = fd;
  writer.limit = blob.size;
  auto cleanup = [&] {
    if (writer.fd >= 0) {
      ::close(writer.fd);
      writer.fd = -1;
    }
    ::unlink(partial.c_str());
  };
  Request request;
  request.url = *base + "/v2/" + repo.repository() + "/blobs/" + blob.digest.str();
  request.blob = &writer;
  request.insecureTls = insecure(repo);
  request.allowHttpRedirect = base->starts_with("http://");
  auto response = perform(repo, request);
  if (!response) {
    cleanup();
    return std::unexpected(response.error().wrap(what));
  }
  if (response->status != 200) {
    cleanup();
    return std::unexpected(statusError(what, response->status, response->body));
  }
  Digest actual = writer.hash->finish();
  if (actual != blob.digest) {
    cleanup();
    return std::unexpected(digestMismatchError("blob", blob.digest, actual).wrap(repo.name()));
  }
  if (blob.size >= 0 && writer.written != blob.size) {
    cleanup();
    return fail(ErrorCode::kInvalidArgument, what + ": got " + std::to_string(writer.written) +
                                                 " bytes, the descriptor says " +
                                                 std::to_string(blob.size));
  }
  int fdToClose = writer.fd;
  writer.fd = -1;
  if (::close(fdToClose) != 0) {
    int err = errno;
    ::unlink(partial.c_str());
    return std::unexpected(errnoError("close " + partial, err).wrap(what));
  }
  if (::rename(partial.c_str(), blob.destPath.c_str()) != 0) {
    int err = errno;
    ::unlink(partial.c_str());
    return std::unexpected(errnoError("rename " + partial, err).wrap(what));
  }
  return {};
}

}  // namespace skiff::agent::image
