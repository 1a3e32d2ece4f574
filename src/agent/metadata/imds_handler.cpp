#include "agent/metadata/imds_handler.h"

#include <charconv>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/encoding.h"

namespace skiff::agent::metadata {
namespace {

using nlohmann::json;

#if defined(__aarch64__)
constexpr const char* kArchitecture = "arm64";
#else
constexpr const char* kArchitecture = "x86_64";
#endif

ImdsResponse text(unsigned status, std::string body) {
  ImdsResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

ImdsResponse notFound() {
  return text(404, "Not Found");
}

std::optional<int64_t> parseDecimal(std::string_view digits) {
  int64_t value = 0;
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// Strips the query and one trailing slash ("/latest/meta-data/" -> "/latest/meta-data").
std::string normalizePath(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return std::string(path);
}

}  // namespace

ImdsTokens::ImdsTokens() : key_(32, '\0') {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) !=
      1) {
    // Without randomness there is no safe key; a fixed one would let anyone forge tokens.
    std::abort();
  }
}

std::string ImdsTokens::mac(std::string_view taskId, std::string_view expiry) const {
  std::string message;
  message.reserve(taskId.size() + expiry.size() + 1);
  message.append(taskId).push_back('\n');
  message.append(expiry);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  return hexEncode(digest, length);
}

std::string ImdsTokens::issue(std::string_view taskId, int64_t ttlSec, int64_t nowMs) const {
  std::string expiry = std::to_string(nowMs / 1000 + ttlSec);
  return expiry + "." + mac(taskId, expiry);
}

bool ImdsTokens::valid(std::string_view taskId, std::string_view token, int64_t nowMs) const {
  size_t dot = token.find('.');
  if (dot == std::string_view::npos) return false;
  std::string_view expiryText = token.substr(0, dot);
  auto expiry = parseDecimal(expiryText);
  if (!expiry || nowMs >= *expiry * 1000) return false;
  std::string expected = mac(taskId, expiryText);
  std::string_view given = token.substr(dot + 1);
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

std::optional<ImdsResponse> ImdsHandler::credentials(const TaskMetadata& task,
                                                     bool mayBlock) const {
  std::optional<RoleCredentials> found = identity_.cachedRoleCredentials(task.taskId);
  if (!found) {
    if (!mayBlock) return std::nullopt;
    auto fetched = identity_.roleCredentials(task);
    if (!fetched) {
      ErrorCode code = fetched.error().code();
      if (code == ErrorCode::kNotFound || code == ErrorCode::kPermissionDenied) return notFound();
      return text(503, "credentials are unavailable, retry later");
    }
    found = std::move(*fetched);
  }
  return text(200, std::move(found->body));
}

std::optional<ImdsResponse> ImdsHandler::identityToken(const TaskMetadata& task,
                                                       bool mayBlock) const {
  std::optional<IdentityToken> found = identity_.cachedTaskIdentity(task.taskId);
  if (!found) {
    if (!mayBlock) return std::nullopt;
    auto fetched = identity_.taskIdentity(task);
    if (!fetched) return text(503, "the task identity is unavailable, retry later");
    found = std::move(*fetched);
  }
  return text(200, std::move(found->token));
}

std::optional<ImdsResponse> ImdsHandler::handle(const TaskMetadata& task,
                                                const ImdsRequest& request, bool mayBlock) const {
  std::string path = normalizePath(request.target);
  int64_t now = clock_.nowMs();

  if (path == "/latest/api/token") {
    if (request.method != ImdsRequest::Method::kPut) return text(405, "Method Not Allowed");
    if (request.forwarded) return text(403, "Forbidden");
    auto ttl = request.ttlSeconds ? parseDecimal(*request.ttlSeconds) : std::nullopt;
    if (!ttl || *ttl < 1 || *ttl > kMaxImdsTokenTtlSec) return text(400, "Bad Request");
    ImdsResponse response = text(200, tokens_.issue(task.taskId, *ttl, now));
    response.headers.emplace_back("X-aws-ec2-metadata-token-ttl-seconds", std::to_string(*ttl));
    return response;
  }
  if (request.method != ImdsRequest::Method::kGet && request.method != ImdsRequest::Method::kHead) {
    return text(405, "Method Not Allowed");
  }
  if (!request.token || !tokens_.valid(task.taskId, *request.token, now)) {
    return text(401, "Unauthorized");
  }

  const bool hasRole = !task.iamRole.empty();
  if (path == "/latest") return text(200, "dynamic\nmeta-data");
  if (path == "/latest/meta-data") {
    std::string listing = "hostname\ninstance-id\n";
    if (!task.instanceType.empty()) listing += "instance-type\n";
    listing += "local-hostname\nlocal-ipv4\nplacement/";
    if (hasRole) listing += "\niam/";
    return text(200, std::move(listing));
  }
  if (path == "/latest/meta-data/instance-id") return text(200, task.taskId);
  if (path == "/latest/meta-data/local-ipv4") {
    return task.ipv4.empty() ? notFound() : text(200, task.ipv4);
  }
  if (path == "/latest/meta-data/hostname" || path == "/latest/meta-data/local-hostname") {
    return text(200, task.taskId);
  }
  if (path == "/latest/meta-data/instance-type") {
    return task.instanceType.empty() ? notFound() : text(200, task.instanceType);
  }
  if (path == "/latest/meta-data/placement") return text(200, "availability-zone\nregion");
  if (path == "/latest/meta-data/placement/availability-zone") {
    return task.availabilityZone.empty() ? notFound() : text(200, task.availabilityZone);
  }
  if (path == "/latest/meta-data/placement/region") {
    return task.region.empty() ? notFound() : text(200, task.region);
  }
  if (path == "/latest/meta-data/iam") {
    return hasRole ? text(200, "info\nsecurity-credentials/") : notFound();
  }
  if (path == "/latest/meta-data/iam/info") {
    if (!hasRole) return notFound();
    json info = {{"Code", "Success"},
                 {"LastUpdated", formatIso8601(now)},
                 {"InstanceProfileArn",
                  "arn:aws:iam::" + task.accountId + ":instance-profile/" + task.iamRole}};
    return text(200, info.dump(2));
  }
  if (path == "/latest/meta-data/iam/security-credentials") {
    return hasRole ? text(200, task.iamRole) : notFound();
  }
  constexpr std::string_view kCredentialsPrefix = "/latest/meta-data/iam/security-credentials/";
  if (path.starts_with(kCredentialsPrefix)) {
    // Only the job's own role exists here; asking for any other is indistinguishable from asking
    // for a role that does not exist.
    if (!hasRole || path.substr(kCredentialsPrefix.size()) != task.iamRole) return notFound();
    return credentials(task, mayBlock);
  }
  if (path == "/latest/dynamic") return text(200, "instance-identity/");
  if (path == "/latest/dynamic/instance-identity") return text(200, "document");
  if (path == "/latest/dynamic/instance-identity/document") {
    json document = {
        {"accountId", task.accountId},
        {"architecture", kArchitecture},
        {"availabilityZone", task.availabilityZone},
        {"billingProducts", nullptr},
        {"devpayProductCodes", nullptr},
        {"marketplaceProductCodes", nullptr},
        {"imageId", task.imageId},
        {"instanceId", task.taskId},
        {"instanceType", task.instanceType},
        {"kernelId", nullptr},
        {"pendingTime", formatIso8601(task.launchTimeMs)},
        {"privateIp", task.ipv4},
        {"ramdiskId", nullptr},
        {"region", task.region},
        {"version", "2017-09-30"},
    };
    return text(200, document.dump(2));
  }
  if (path == "/skiff/v1/task-identity") return identityToken(task, mayBlock);
  return notFound();
}

}  // namespace skiff::agent::metadata
