#pragma once

// Where the metadata proxy gets a task's role credentials and identity token, and the cache in
// front of it.
//
// `IdentityProvider` is the back end seam: `SkiffdIdentityProvider` asks skiffd over HTTP
// (POST /v1/identity/tasks/{id}/credentials and /token, with the agent join token); tests use a
// fake. `CachingIdentityProvider` wraps one: answers come from memory while they are fresh,
// `renewDue()` (called about once a second by the proxy) fetches replacements before they
// expire, and a failed fetch keeps serving the old answer while it is still valid, retrying after
// a pause instead of on every request.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/metadata/task_metadata.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::client {
class NodeApi;
}

namespace skiff::agent::metadata {

// Temporary role credentials, as served to the container.
struct RoleCredentials {
  std::string role;
  std::string body;  // The AWS SDK JSON document (Code, LastUpdated, Type, AccessKeyId, ...).
  int64_t obtainedAtMs = 0;
  int64_t expiresAtMs = 0;
};

// A signed task-identity token (a JWT).
struct IdentityToken {
  std::string token;
  int64_t obtainedAtMs = 0;
  int64_t expiresAtMs = 0;
};

// Builds `RoleCredentials` from the AWS JSON document; fails unless it has the seven fields and
// an ISO 8601 UTC `Expiration`.
Result<RoleCredentials> parseRoleCredentials(const nlohmann::json& document, std::string role,
                                             int64_t nowMs);
// "2023-11-14T22:13:20Z" -> milliseconds since the epoch.
Result<int64_t> parseIso8601(const std::string& text);
std::string formatIso8601(int64_t epochMs);

class IdentityProvider {
 public:
  virtual ~IdentityProvider() = default;
  // Both may block (network). kNotFound / kPermissionDenied mean "no such role for this task";
  // other errors are transient.
  virtual Result<RoleCredentials> roleCredentials(const TaskMetadata& task) = 0;
  virtual Result<IdentityToken> taskIdentity(const TaskMetadata& task) = 0;
};

// Asks skiffd. Safe from several threads (one connection, used under a lock).
class SkiffdIdentityProvider final : public IdentityProvider {
 public:
  // `server` like "http://10.0.0.1:7070"; `joinToken` the agent join token.
  SkiffdIdentityProvider(std::string server, std::string joinToken, const Clock& clock);
  ~SkiffdIdentityProvider() override;
  Result<RoleCredentials> roleCredentials(const TaskMetadata& task) override;
  Result<IdentityToken> taskIdentity(const TaskMetadata& task) override;

 private:
  const Clock& clock_;
  std::mutex mutex_;
  std::unique_ptr<client::NodeApi> client_;
};

struct CacheOptions {
  // Renew when less than this remains (Titus: 15 min), or half the lifetime if that is shorter.
  int64_t renewBeforeMs = 15 * 60 * 1000;
  // After a failed fetch, wait this long before asking again (Titus: 10 s).
  int64_t retryAfterMs = 10 * 1000;
};

class CachingIdentityProvider final : public IdentityProvider {
 public:
  CachingIdentityProvider(std::shared_ptr<IdentityProvider> upstream, const Clock& clock,
                          CacheOptions options = {});

  // Fresh from the cache, or fetched now (blocking). A task with no role gets kNotFound.
  Result<RoleCredentials> roleCredentials(const TaskMetadata& task) override;
  Result<IdentityToken> taskIdentity(const TaskMetadata& task) override;

  // Never block: a still-valid cached answer, else nullopt.
  std::optional<RoleCredentials> cachedRoleCredentials(const std::string& taskId) const;
  std::optional<IdentityToken> cachedTaskIdentity(const std::string& taskId) const;

  // Remembers `task` and fetches what is missing or due for renewal. Blocks.
  void refresh(const TaskMetadata& task);
  // Refreshes every remembered task whose answers are due. Blocks; call from a background thread.
  void renewDue();
  // Drops everything about the task.
  void forget(const std::string& taskId);
  // Drops every task not in `taskIds` (a request that raced with a task's removal may have
  // cached it again).
  void retainOnly(const std::set<std::string>& taskIds);

  struct Stats {
    int64_t upstreamCalls = 0;
    int64_t upstreamFailures = 0;
  };
  Stats stats() const;

 private:
  struct Entry;
  std::shared_ptr<Entry> entry(const TaskMetadata& task);
  std::shared_ptr<Entry> find(const std::string& taskId) const;
  bool due(int64_t obtainedAtMs, int64_t expiresAtMs, int64_t nowMs) const;
  Result<RoleCredentials> credentialsFor(Entry& entry, bool force);
  Result<IdentityToken> identityFor(Entry& entry, bool force);

  std::shared_ptr<IdentityProvider> upstream_;
  const Clock& clock_;
  CacheOptions options_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  mutable std::mutex statsMutex_;
  Stats stats_;
};

}  // namespace skiff::agent::metadata
