#pragma once

// A scripted IdentityProvider for unit tests: counts calls, remembers which task asked for which
// role, can be told to fail.

#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/metadata/identity_provider.h"
#include "common/clock.h"

namespace skiff::testing {

class FakeIdentityProvider final : public agent::metadata::IdentityProvider {
 public:
  using RoleCredentials = agent::metadata::RoleCredentials;
  using IdentityToken = agent::metadata::IdentityToken;
  using TaskMetadata = agent::metadata::TaskMetadata;

  explicit FakeIdentityProvider(const Clock& clock, int64_t lifetimeMs = 60 * 60 * 1000)
      : clock_(clock), lifetimeMs_(lifetimeMs) {}

  Result<RoleCredentials> roleCredentials(const TaskMetadata& task) override {
    ++credentialCalls;
    {
      std::lock_guard lock(mutex_);
      roleRequests_.emplace_back(task.taskId, task.iamRole);
    }
    if (failing) return fail(ErrorCode::kUnavailable, "skiffd is down");
    int64_t now = clock_.nowMs() / 1000 * 1000;
    int serial = ++serial_;
    nlohmann::json document = {{"Code", "Success"},
                               {"LastUpdated", agent::metadata::formatIso8601(now)},
                               {"Type", "AWS-HMAC"},
                               {"AccessKeyId", "ASIAFAKE" + std::to_string(serial)},
                               {"SecretAccessKey", "secret-" + std::to_string(serial)},
                               {"Token", "session-for-" + task.taskId},
                               {"Expiration", agent::metadata::formatIso8601(now + lifetimeMs_)}};
    return agent::metadata::parseRoleCredentials(document, task.iamRole, clock_.nowMs());
  }

  Result<IdentityToken> taskIdentity(const TaskMetadata& task) override {
    ++identityCalls;
    if (failing) return fail(ErrorCode::kUnavailable, "skiffd is down");
    return IdentityToken{"jwt-for-" + task.taskId + "-" + std::to_string(++serial_), clock_.nowMs(),
                         clock_.nowMs() + lifetimeMs_};
  }

  // (task id, role) of every roleCredentials call, in order.
  std::vector<std::pair<std::string, std::string>> roleRequests() const {
    std::lock_guard lock(mutex_);
    return roleRequests_;
  }

  std::atomic<int> credentialCalls = 0;
  std::atomic<int> identityCalls = 0;
  std::atomic<bool> failing = false;

 private:
  const Clock& clock_;
  int64_t lifetimeMs_;
  std::atomic<int> serial_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> roleRequests_;
};

}  // namespace skiff::testing
