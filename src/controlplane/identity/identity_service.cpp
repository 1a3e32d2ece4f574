#include "controlplane/identity/identity_service.h"

#include <ctime>
#include <optional>

#include <boost/asio/ip/address.hpp>
#include <openssl/rand.h>

#include "common/encoding.h"
#include "controlplane/identity/jwt.h"

namespace skiff::identity {
namespace {

using nlohmann::json;

constexpr std::string_view kTaskIdentityUse = "task-identity";
constexpr std::string_view kSessionTyp = "skiff-session+jwt";

Result<std::string> randomBytes(size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1) {
    return fail(ErrorCode::kInternal, "no randomness available");
  }
  return bytes;
}

// The integer claim `name`, or nullopt when missing or not an integer (never throws).
std::optional<int64_t> integerClaim(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::string stringClaim(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::unexpected<Error> refused(std::string reason) {
  return fail(ErrorCode::kUnauthenticated, "token refused: " + std::move(reason));
}

}  // namespace

Result<std::string> normalizeIp(std::string_view text) {
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return fail(ErrorCode::kInvalidArgument, "not an IP address");
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .to_string();
  }
  return address.to_string();
}

std::string iso8601(int64_t epochMs) {
  std::time_t seconds = static_cast<std::time_t>(epochMs / 1000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  size_t length = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(text, length);
}

IdentityService::IdentityService(const KeyRing& keys, const Clock& clock, IdentityConfig config)
    : keys_(keys), clock_(clock), config_(std::move(config)) {}

Result<IssuedToken> IdentityService::issueTaskToken(const TaskIdentity& identity) const {
  auto ip = normalizeIp(identity.containerIp);
  if (!ip) return fail(ErrorCode::kInvalidArgument, "containerIp: must be an IP address");
  auto nonce = randomBytes(16);
  if (!nonce) return std::unexpected(nonce.error());
  int64_t now = clock_.nowMs();
  int64_t expiresAtMs = now + config_.tokenLifetimeMs;
  json claims = {
      {"iss", config_.issuer},
      {"aud", config_.audience},
      {"sub", identity.taskId},
      {"iat", now / 1000},
      {"nbf", now / 1000},
      {"exp", expiresAtMs / 1000},
      {"jti", base64UrlEncode(*nonce)},
      {"token_use", std::string(kTaskIdentityUse)},
      {"task", identity.taskId},
      {"job", identity.jobId},
      {"application", identity.applicationName},
      {"role", identity.role},
      {"ip", *ip},
      {"node", identity.nodeId},
  };
  auto key = keys_.active();
  auto token = signJwt(claims, *key);
  if (!token) return std::unexpected(token.error());
  // `exp` has whole seconds; report the instant the verifier will use.
  return IssuedToken{std::move(*token), (expiresAtMs / 1000) * 1000, key->kid()};
}

Result<json> IdentityService::verifyTaskToken(std::string_view token,
                                              std::string_view presenterIp) const {
  auto verified = decodeAndVerify(token, keys_);
  if (!verified) return std::unexpected(verified.error());
  const json& claims = verified->claims;
  if (stringClaim(claims, "iss") != config_.issuer) return refused("wrong issuer");
  if (stringClaim(claims, "aud") != config_.audience) return refused("wrong audience");
  if (stringClaim(claims, "token_use") != kTaskIdentityUse) return refused("not a task identity");
  auto exp = integerClaim(claims, "exp");
  auto nbf = integerClaim(claims, "nbf");
  if (!exp || !nbf) return refused("no lifetime");
  int64_t now = clock_.nowMs();
  if (now >= *exp * 1000) return refused("expired");
  if (now + config_.leewayMs < *nbf * 1000) return refused("not valid yet");
  std::string issuedTo = stringClaim(claims, "ip");
  auto presenter = normalizeIp(presenterIp);
  if (issuedTo.empty() || !presenter || *presenter != issuedTo) {
    return fail(ErrorCode::kPermissionDenied,
                "token refused: it was issued to " + issuedTo + " and presented from " +
                    (presenter ? *presenter : std::string("an unknown address")));
  }
  return claims;
}

json RoleCredentials::toAwsJson() const {
  return {{"Code", "Success"},
          {"LastUpdated", iso8601(issuedAtMs)},
          {"Type", "AWS-HMAC"},
          {"AccessKeyId", accessKeyId},
          {"SecretAccessKey", secretAccessKey},
          {"Token", sessionToken},
          {"Expiration", iso8601(expiresAtMs)}};
}

SkiffRoleCredentialIssuer::SkiffRoleCredentialIssuer(const KeyRing& keys, const Clock& clock,
                                                     IdentityConfig config)
    : keys_(keys), clock_(clock), config_(std::move(config)) {}

Result<RoleCredentials> SkiffRoleCredentialIssuer::issue(const TaskIdentity& identity) {
  if (identity.role.empty()) return fail(ErrorCode::kNotFound, "the task has no role");
  auto random = randomBytes(16 + 30);
  if (!random) return std::unexpected(random.error());
  static constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  RoleCredentials credentials;
  credentials.role = identity.role;
  // "ASIA" marks temporary credentials in AWS's key id scheme; 32 divides 256, so no bias.
  credentials.accessKeyId = "ASIA";
  for (size_t i = 0; i < 16; ++i) {
    credentials.accessKeyId.push_back(kBase32[static_cast<unsigned char>((*random)[i]) % 32]);
  }
  credentials.secretAccessKey = base64UrlEncode(std::string_view(*random).substr(16, 30));
  // The secret never appears in the session token; times are whole seconds, as AWS reports them.
  credentials.issuedAtMs = clock_.nowMs() / 1000 * 1000;
  credentials.expiresAtMs = credentials.issuedAtMs + config_.credentialLifetimeMs;
  json claims = {
      {"iss", config_.issuer},
      {"aud", config_.audience},
      {"sub", "arn:aws:iam::" + config_.accountId + ":role/" + identity.role},
      {"iat", credentials.issuedAtMs / 1000},
      {"exp", credentials.expiresAtMs / 1000},
      {"token_use", "role-session"},
      {"role", identity.role},
      {"akid", credentials.accessKeyId},
      {"task", identity.taskId},
      {"job", identity.jobId},
      {"session", "skiff-" + identity.taskId.substr(0, 58)},
  };
  auto token = signJwt(claims, *keys_.active(), kSessionTyp);
  if (!token) return std::unexpected(token.error());
  credentials.sessionToken = std::move(*token);
  return credentials;
}

}  // namespace skiff::identity
