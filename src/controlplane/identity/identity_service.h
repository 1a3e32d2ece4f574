#pragma once

// Task identity: signed task-identity tokens, their verification, and role credentials.
//
// A task-identity token is a JWT signed by the control plane's active Ed25519 key (header
// `{"alg":"EdDSA","typ":"JWT","kid"}`) with the claims
//   iss, aud, sub (= task), iat, nbf, exp (seconds), jti,
//   token_use "task-identity", task, job, application, role, ip (the container's address), node.
// `verifyTaskToken` accepts a token only when its signature, type, issuer, audience, use and
// lifetime check out AND it is presented from the address it was issued to, so a token copied
// out of one container is useless from anywhere else.
//
// Role credentials imitate AWS STS temporary credentials (the AWS SDK's JSON shape). Skiff has no
// STS behind it: `SkiffRoleCredentialIssuer` mints a random access key id and secret and a
// session token that is itself a signed JWT (typ "skiff-session+jwt") naming the role, task and
// access key, so a service can check offline, against the JWKS, which role a request speaks for.
// A deployment on AWS would replace it with an implementation that calls AssumeRole.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "controlplane/identity/signing_keys.h"

namespace skiff::identity {

struct IdentityConfig {
  std::string issuer = "skiffd";
  std::string audience = "skiff";
  int64_t tokenLifetimeMs = 60 * 60 * 1000;
  int64_t credentialLifetimeMs = 60 * 60 * 1000;
  // Allowed clock skew for `nbf`/`iat`; `exp` gets none.
  int64_t leewayMs = 30 * 1000;
  // Used in the role ARN placed in credentials (`arn:aws:iam::<account>:role/<role>`).
  std::string accountId = "000000000000";
};

// Who a task is, as the control plane records it.
struct TaskIdentity {
  std::string taskId;
  std::string jobId;
  std::string applicationName;
  std::string role;  // The job's container.securityProfile.iamRole; may be empty.
  std::string containerIp;
  std::string nodeId;
};

struct IssuedToken {
  std::string token;
  int64_t expiresAtMs = 0;
  std::string kid;
};

// Normalizes an IP address ("::ffff:10.0.0.1" -> "10.0.0.1"). Fails on anything else.
Result<std::string> normalizeIp(std::string_view text);

class IdentityService {
 public:
  IdentityService(const KeyRing& keys, const Clock& clock, IdentityConfig config = {});

  // Signs a task-identity token. `identity.containerIp` must be a valid address.
  Result<IssuedToken> issueTaskToken(const TaskIdentity& identity) const;

  // Verifies `token` as presented from `presenterIp`. Returns its claims. Errors:
  // kUnauthenticated (malformed, bad signature, unknown key, wrong type/issuer/audience, not yet
  // valid, expired) or kPermissionDenied (valid, but presented from another address).
  Result<nlohmann::json> verifyTaskToken(std::string_view token,
                                         std::string_view presenterIp) const;

  nlohmann::json jwks() const { return keys_.jwks(); }
  const IdentityConfig& config() const { return config_; }

 private:
  const KeyRing& keys_;
  const Clock& clock_;
  IdentityConfig config_;
};

// Temporary role credentials.
struct RoleCredentials {
  std::string role;
  std::string accessKeyId;
  std::string secretAccessKey;
  std::string sessionToken;
  int64_t issuedAtMs = 0;
  int64_t expiresAtMs = 0;

  // The AWS SDK / IMDS shape: {"Code":"Success","LastUpdated","Type":"AWS-HMAC","AccessKeyId",
  // "SecretAccessKey","Token","Expiration"}, times as ISO 8601 UTC ("2024-01-01T00:00:00Z").
  nlohmann::json toAwsJson() const;
};

// ISO 8601 UTC with seconds, e.g. "2023-11-14T22:13:20Z".
std::string iso8601(int64_t epochMs);

// Mints credentials for a task's role. Implementations must be safe to call from several threads.
class RoleCredentialIssuer {
 public:
  virtual ~RoleCredentialIssuer() = default;
  // `identity.role` is not empty.
  virtual Result<RoleCredentials> issue(const TaskIdentity& identity) = 0;
};

class SkiffRoleCredentialIssuer final : public RoleCredentialIssuer {
 public:
  SkiffRoleCredentialIssuer(const KeyRing& keys, const Clock& clock, IdentityConfig config = {});
  Result<RoleCredentials> issue(const TaskIdentity& identity) override;

 private:
  const KeyRing& keys_;
  const Clock& clock_;
  IdentityConfig config_;
};

}  // namespace skiff::identity
