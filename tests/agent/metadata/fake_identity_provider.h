#pragma once

// A scripted IdentityProvider for unit tests: counts calls, can be told to fail.

#include <atomic>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/metadata/identity_provider.h"
#include "common/clock.h"

namespace skiff::agent::metadata::testing {

class FakeIdentityProvider final : public IdentityProvider {
 public:
  explicit FakeIdentityProvider(const Clock& clock, int64_t lifetimeMs = 60 * 60 * 1000)
      : clock_(clock), lifetimeMs_(lifetimeMs) {}

  Result<RoleCredentials> roleCredentials(const TaskMetadata& task) override {
    ++credentialCalls;
    if (failing) return fail(ErrorCode::kUnavailable, "skiffd is down");
    int64_t now = clock_.nowMs() / 1000 * 1000;
    int serial = ++serial_;
    nlohmann::json document = {{"Code", "Success"},
                               {"LastUpdated", formatIso8601(now)},
                               {"Type", "AWS-HMAC"},
                               {"AccessKeyId", "ASIAFAKE" + std::to_string(serial)},
                               {"SecretAccessKey", "secret-" + std::to_string(serial)},
                               {"Token", "session-for-" + task.taskId},
                               {"Expiration", formatIso8601(now + lifetimeMs_)}};
    return parseRoleCredentials(document, task.iamRole, clock_.nowMs());
  }

  Result<IdentityToken> taskIdentity(const TaskMetadata& task) override {
    ++identityCalls;
    if (failing) return fail(ErrorCode::kUnavailable, "skiffd is down");
    return IdentityToken{"jwt-for-" + task.taskId + "-" + std::to_string(++serial_), clock_.nowMs(),
                         clock_.nowMs() + lifetimeMs_};
  }

  std::atomic<int> credentialCalls = 0;
  std::atomic<int> identityCalls = 0;
  std::atomic<bool> failing = false;

 private:
  const Clock& clock_;
  int64_t lifetimeMs_;
  std::atomic<int> serial_ = 0;
};

}  // namespace skiff::agent::metadata::testing
