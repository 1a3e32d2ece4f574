#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "agent/image/registry_client_impl.h"
#include "common/encoding.h"
#include "common/log.h"

namespace skiff::agent::image {

using nlohmann::json;
using namespace registry_detail;

Result<std::vector<AuthChallenge>> parseWwwAuthenticate(std::string_view header) {
  std::vector<AuthChallenge> challenges;
  size_t pos = 0;
  auto skipSpace = [&] {
    while (pos < header.size() && (header[pos] == ' ' || header[pos] == '\t')) {
      ++pos;
    }
  };
  auto readToken = [&] {
    size_t start = pos;
    while (pos < header.size() && isTokenChar(header[pos])) {
      ++pos;
    }
    return header.substr(start, pos - start);
  };
  auto malformed = [&](std::string_view why) {
    std::string message = "malformed WWW-Authenticate header: ";
    message.append(why);
    return std::unexpected(Error(ErrorCode::kInvalidArgument, std::move(message)));
  };
  while (true) {
    while (pos < header.size() &&
           (header[pos] == ' ' || header[pos] == '\t' || header[pos] == ',')) {
      ++pos;
    }
    if (pos >= header.size()) {
      break;
    }
    std::string_view scheme = readToken();
    if (scheme.empty()) {
      return malformed("expected an auth scheme");
    }
    AuthChallenge challenge;
    challenge.scheme = std::string(scheme);
    // Parameters until the next scheme (a token not followed by '=') or the end.
    while (true) {
      skipSpace();
      size_t save = pos;
      while (pos < header.size() && header[pos] == ',') {
        ++pos;
        skipSpace();
      }
      std::string_view name = readToken();
      skipSpace();
      if (name.empty() || pos >= header.size() || header[pos] != '=') {
        pos = save;
        break;
      }
      ++pos;
      skipSpace();
      std::string value;
      if (pos < header.size() && header[pos] == '"') {
        ++pos;
        bool closed = false;
        while (pos < header.size()) {
          char c = header[pos++];
          if (c == '\\' && pos < header.size()) {
            value.push_back(header[pos++]);
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            value.push_back(c);
          }
        }
        if (!closed) {
          return malformed("unterminated quoted string");
        }
      } else {
        value = std::string(readToken());
      }
      challenge.params[lower(name)] = std::move(value);
      skipSpace();
      if (pos < header.size() && header[pos] != ',') {
        return malformed("expected ',' between parameters");
      }
    }
    challenges.push_back(std::move(challenge));
  }
  if (challenges.empty()) {
    return malformed("no challenge");
  }
  return challenges;
}

Result<std::string> RegistryClient::authorize(const ImageReference& repo,
                                              std::string_view challengeHeader,
                                              const std::string& failedHeader) {
  if (challengeHeader.empty()) {
    return fail(ErrorCode::kUnauthenticated, "HTTP 401 without a WWW-Authenticate challenge");
  }
  auto challenges = parseWwwAuthenticate(challengeHeader);
  if (!challenges) {
    return fail(ErrorCode::kUnauthenticated, challenges.error().message());
  }
  std::string cacheKey = repo.registry() + "|" + repo.repository();
  for (const AuthChallenge& c : *challenges) {
    if (iequals(c.scheme, "bearer")) {
      std::shared_ptr<std::mutex> keyLock;
      {
        std::lock_guard lock(mutex_);
        auto& slot = authLocks_[cacheKey];
        if (!slot) {
          slot = std::make_shared<std::mutex>();
        }
        keyLock = slot;
      }
      std::lock_guard tokenLock(*keyLock);
      {
        std::lock_guard lock(mutex_);
        auto it = auth_.find(cacheKey);
        if (it != auth_.end() && it->second.header != failedHeader &&
            it->second.expires > std::chrono::steady_clock::now()) {
          return it->second.header;  // Another request got a token meanwhile.
        }
      }
      auto token = fetchToken(repo, c);
      if (!token) {
        return std::unexpected(token.error());
      }
      return "Authorization: Bearer " + *token;
    }
  }
  for (const AuthChallenge& c : *challenges) {
    if (iequals(c.scheme, "basic")) {
      auto it = options_.credentials.find(repo.registry());
      if (it == options_.credentials.end()) {
        return fail(ErrorCode::kUnauthenticated,
                    "registry " + repo.registry() + " wants Basic credentials and none are set");
      }
      std::string header =
          "Authorization: Basic " + base64Encode(it->second.username + ":" + it->second.password);
      std::lock_guard lock(mutex_);
      auth_[cacheKey] = {header, std::chrono::steady_clock::now() + std::chrono::hours(1)};
      return header;
    }
  }
  return fail(ErrorCode::kUnauthenticated,
              "registry " + repo.registry() + " wants an unsupported auth scheme");
}

Result<std::string> RegistryClient::fetchToken(const ImageReference& repo,
                                               const AuthChallenge& challenge) {
  auto realmIt = challenge.params.find("realm");
  if (realmIt == challenge.params.end() || realmIt->second.empty()) {
    return fail(ErrorCode::kUnauthenticated, "bearer challenge without a realm");
  }
  const std::string& realm = realmIt->second;
  CURLU* url = curl_url();
  std::string scheme;
  std::string host;
  std::string hostPort;
  if (curl_url_set(url, CURLUPART_URL, realm.c_str(), 0) == CURLUE_OK) {
    char* part = nullptr;
    if (curl_url_get(url, CURLUPART_SCHEME, &part, 0) == CURLUE_OK) {
      scheme = lower(part);
      curl_free(part);
    }
    if (curl_url_get(url, CURLUPART_HOST, &part, 0) == CURLUE_OK) {
      host = part;
      curl_free(part);
    }
    if (curl_url_get(url, CURLUPART_PORT, &part, 0) == CURLUE_OK) {
      hostPort = host + ":" + part;
      curl_free(part);
    }
  }
  curl_url_cleanup(url);
  if (host.size() >= 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  bool realmInsecureOk = insecureHost(hostPort.empty() ? host : hostPort, host);
  if (scheme != "https" && !(scheme == "http" && realmInsecureOk)) {
    return fail(ErrorCode::kUnauthenticated,
                "token realm '" + realm + "' must be an https URL (or http on loopback)");
  }
  std::string scope = "repository:" + repo.repository() + ":pull";
  if (auto it = challenge.params.find("scope");
      it != challenge.params.end() && !it->second.empty()) {
    scope = it->second;
  }
  CURL* escaper = handles_->acquire();
  std::string tokenUrl = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (auto it = challenge.params.find("service"); it != challenge.params.end()) {
    tokenUrl.append("service=").append(escape(escaper, it->second)).append("&");
  }
  tokenUrl.append("scope=").append(escape(escaper, scope));
  handles_->release(escaper);

  const RegistryCredentials* creds = nullptr;
  if (auto it = options_.credentials.find(repo.registry()); it != options_.credentials.end()) {
    creds = &it->second;
  }
  Request request;
  request.url = tokenUrl;
  request.memoryLimit = options_.maxManifestBytes;
  request.basic = creds;
  request.insecureTls = realmInsecureOk;
  request.allowHttpRedirect = scheme == "http";
  request.skipAuth = true;
  {
    std::lock_guard lock(mutex_);
    ++tokenRequests_;
  }
  log::debug("registry token request", {{"registry", repo.registry()}, {"scope", scope}});
  auto response = perform(repo, request);
  if (!response) {
    return std::unexpected(response.error().wrap("token request"));
  }
  if (response->status != 200) {
    Error e = statusError("token request to " + realm, response->status, response->body);
    return std::unexpected(Error(ErrorCode::kUnauthenticated, e.message()));
  }
  json doc = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  std::string token;
  int64_t expiresIn = 60;
  if (doc.is_object()) {
    for (const char* key : {"token", "access_token"}) {
      if (doc.contains(key) && doc[key].is_string() && token.empty()) {
        token = doc[key].get<std::string>();
      }
    }
    if (doc.contains("expires_in") && doc["expires_in"].is_number_integer()) {
      expiresIn = std::max<int64_t>(doc["expires_in"].get<int64_t>(), 0);
    }
  }
  if (token.empty()) {
    return fail(ErrorCode::kUnauthenticated, "token response from " + realm + " has no token");
  }
  std::string header = "Authorization: Bearer " + token;
  // Renew a little early so a token does not expire between the check and the request.
  auto lifetime = std::chrono::seconds(std::max<int64_t>(expiresIn - 10, 10));
  std::lock_guard lock(mutex_);
  auth_[repo.registry() + "|" + repo.repository()] = {header,
                                                      std::chrono::steady_clock::now() + lifetime};
  return token;
}

}  // namespace skiff::agent::image
