#pragma once

// The metadata service's HTTP rules, independent of sockets (see docs/identity.md).
//
// IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` between 1 and 21600
// returns a session token (400 otherwise; 403 when the request carries X-Forwarded-For, as AWS
// does, so a misconfigured HTTP proxy in the container cannot fetch tokens for outsiders). Every
// GET needs a valid token in `X-aws-ec2-metadata-token` (401 otherwise). Tokens are HMACs over
// the task id and the expiry under a key that lives only in this process, so a token is worth
// nothing in another task's namespace or after the agent restarts (SDKs then fetch a new one).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/metadata/identity_provider.h"
#include "agent/metadata/task_metadata.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::metadata {

inline constexpr int64_t kMaxImdsTokenTtlSec = 21600;

// Issues and checks IMDSv2 session tokens. Thread-safe (immutable after construction).
class ImdsTokens {
 public:
  // A random key.
  ImdsTokens();
  // A fixed key (tests).
  explicit ImdsTokens(std::string key) : key_(std::move(key)) {}

  std::string issue(std::string_view taskId, int64_t ttlSec, int64_t nowMs) const;
  // True when `token` was issued for `taskId` by this key and has not expired.
  bool valid(std::string_view taskId, std::string_view token, int64_t nowMs) const;

 private:
  std::string mac(std::string_view taskId, std::string_view expiry) const;
  std::string key_;
};

struct ImdsRequest {
  enum class Method { kGet, kHead, kPut, kOther };
  Method method = Method::kGet;
  std::string target;                     // Path with an optional query.
  std::optional<std::string> token;       // X-aws-ec2-metadata-token
  std::optional<std::string> ttlSeconds;  // X-aws-ec2-metadata-token-ttl-seconds
  bool forwarded = false;                 // X-Forwarded-For present
};

struct ImdsResponse {
  unsigned status = 200;
  std::string body;
  std::string contentType = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;
};

class ImdsHandler {
 public:
  ImdsHandler(const ImdsTokens& tokens, CachingIdentityProvider& identity, const Clock& clock)
      : tokens_(tokens), identity_(identity), clock_(clock) {}

  // Answers `request` from the container of `task`. With `mayBlock` false, returns nullopt when
  // the answer needs a fetch from skiffd (nothing cached); call again with `mayBlock` true off the
  // I/O threads.
  std::optional<ImdsResponse> handle(const TaskMetadata& task, const ImdsRequest& request,
                                     bool mayBlock) const;

 private:
  std::optional<ImdsResponse> credentials(const TaskMetadata& task, bool mayBlock) const;
  std::optional<ImdsResponse> identityToken(const TaskMetadata& task, bool mayBlock) const;

  const ImdsTokens& tokens_;
  CachingIdentityProvider& identity_;
  const Clock& clock_;
};

}  // namespace skiff::agent::metadata
