#include "agent/metadata/identity_provider.h"

#include <ctime>
#include <vector>

#include "client/node_api.h"

namespace skiff::agent::metadata {
namespace {

using nlohmann::json;

ErrorCode codeForStatus(long status) {
  switch (status) {
    case 400:
      return ErrorCode::kInvalidArgument;
    case 401:
      return ErrorCode::kUnauthenticated;
    case 403:
      return ErrorCode::kPermissionDenied;
    case 404:
      return ErrorCode::kNotFound;
    case 409:
      return ErrorCode::kConflict;
    case 412:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kUnavailable;
  }
}

// The answer's body, or the error a non-2xx answer stands for.
Result<json> bodyOf(const Result<client::ApiResponse>& response) {
  if (!response) return std::unexpected(response.error());
  if (!response->ok()) {
    auto described = client::describeServerError(*response);
    return fail(codeForStatus(response->status), "skiffd: " + described.message);
  }
  return response->body;
}

}  // namespace

Result<int64_t> parseIso8601(const std::string& text) {
  std::tm parts{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &parts);
  if (end == nullptr || *end != '\0') {
    return fail(ErrorCode::kInvalidArgument, "not an ISO 8601 UTC time");
  }
  return static_cast<int64_t>(::timegm(&parts)) * 1000;
}

std::string formatIso8601(int64_t epochMs) {
  std::time_t seconds = static_cast<std::time_t>(epochMs / 1000);
  std::tm parts{};
  ::gmtime_r(&seconds, &parts);
  char text[32];
  size_t length = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return std::string(text, length);
}

Result<RoleCredentials> parseRoleCredentials(const json& document, std::string role,
                                             int64_t nowMs) {
  if (!document.is_object()) return fail(ErrorCode::kInvalidArgument, "credentials: not an object");
  for (const char* field :
       {"Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}) {
    auto it = document.find(field);
    if (it == document.end() || !it->is_string()) {
      return fail(ErrorCode::kInvalidArgument,
                  std::string("credentials.") + field + ": must be a string");
    }
  }
  auto expires = parseIso8601(document["Expiration"].get<std::string>());
  if (!expires) return std::unexpected(expires.error().wrap("credentials.Expiration"));
  RoleCredentials credentials;
  credentials.role = std::move(role);
  credentials.body = document.dump(2);
  credentials.obtainedAtMs = nowMs;
  credentials.expiresAtMs = *expires;
  return credentials;
}

SkiffdIdentityProvider::SkiffdIdentityProvider(std::string server, std::string joinToken,
                                               const Clock& clock)
    : clock_(clock) {
  client::ClientOptions options;
  options.connectTimeoutMs = 2000;
  options.requestTimeoutMs = 5000;
  client_ = std::make_unique<client::NodeApi>(std::move(server), std::move(joinToken), options);
}

SkiffdIdentityProvider::~SkiffdIdentityProvider() = default;

Result<RoleCredentials> SkiffdIdentityProvider::roleCredentials(const TaskMetadata& task) {
  Result<json> body;
  {
    std::lock_guard lock(mutex_);
    body = bodyOf(client_->taskCredentials(task.taskId, {task.nodeId, task.ipv4}, task.iamRole));
  }
  if (!body) return std::unexpected(body.error());
  return parseRoleCredentials(*body, task.iamRole, clock_.nowMs());
}

Result<IdentityToken> SkiffdIdentityProvider::taskIdentity(const TaskMetadata& task) {
  Result<json> answer;
  {
    std::lock_guard lock(mutex_);
    answer = bodyOf(client_->taskToken(task.taskId, {task.nodeId, task.ipv4}));
  }
  if (!answer) return std::unexpected(answer.error());
  auto token = answer->find("token");
  auto expires = answer->find("expiresAtMs");
  if (token == answer->end() || !token->is_string() || expires == answer->end() ||
      !expires->is_number_integer()) {
    return fail(ErrorCode::kUnavailable, "skiffd: malformed token answer");
  }
  return IdentityToken{token->get<std::string>(), clock_.nowMs(), expires->get<int64_t>()};
}

struct CachingIdentityProvider::Entry {
  TaskMetadata task;
  std::mutex fetchMutex;     // One upstream call per task at a time.
  mutable std::mutex mutex;  // Guards the fields below.
  std::optional<RoleCredentials> credentials;
  std::optional<IdentityToken> identity;
  int64_t credentialsRetryAtMs = 0;
  int64_t identityRetryAtMs = 0;
  std::optional<Error> credentialsError;
  std::optional<Error> identityError;
};

CachingIdentityProvider::CachingIdentityProvider(std::shared_ptr<IdentityProvider> upstream,
                                                 const Clock& clock, CacheOptions options)
    : upstream_(std::move(upstream)), clock_(clock), options_(options) {}

std::shared_ptr<CachingIdentityProvider::Entry> CachingIdentityProvider::entry(
    const TaskMetadata& task) {
  std::lock_guard lock(mutex_);
  auto& slot = entries_[task.taskId];
  if (!slot) {
    slot = std::make_shared<Entry>();
    slot->task = task;
  }
  return slot;
}

std::shared_ptr<CachingIdentityProvider::Entry> CachingIdentityProvider::find(
    const std::string& taskId) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(taskId);
  return it == entries_.end() ? nullptr : it->second;
}

bool CachingIdentityProvider::due(int64_t obtainedAtMs, int64_t expiresAtMs, int64_t nowMs) const {
  int64_t margin = std::min(options_.renewBeforeMs, (expiresAtMs - obtainedAtMs) / 2);
  return nowMs >= expiresAtMs - margin;
}

Result<RoleCredentials> CachingIdentityProvider::credentialsFor(Entry& entry, bool force) {
  auto fresh = [&]() -> std::optional<RoleCredentials> {
    std::lock_guard lock(entry.mutex);
    if (entry.credentials &&
        !due(entry.credentials->obtainedAtMs, entry.credentials->expiresAtMs, clock_.nowMs())) {
      return entry.credentials;
    }
    return std::nullopt;
  };
  if (auto cached = fresh(); cached && !force) return *cached;
  if (entry.task.iamRole.empty()) return fail(ErrorCode::kNotFound, "the task has no role");
  std::lock_guard fetching(entry.fetchMutex);
  // Another caller may have fetched while this one waited.
  if (auto cached = fresh()) return *cached;
  int64_t now = clock_.nowMs();
  {
    std::lock_guard lock(entry.mutex);
    if (now < entry.credentialsRetryAtMs) {
      if (entry.credentials && now < entry.credentials->expiresAtMs) return *entry.credentials;
      if (entry.credentialsError) return std::unexpected(*entry.credentialsError);
    }
  }
  auto fetched = upstream_->roleCredentials(entry.task);
  {
    std::lock_guard lock(statsMutex_);
    ++stats_.upstreamCalls;
    if (!fetched) ++stats_.upstreamFailures;
  }
  std::lock_guard lock(entry.mutex);
  if (fetched) {
    entry.credentials = *fetched;
    entry.credentialsRetryAtMs = 0;
    entry.credentialsError.reset();
    return fetched;
  }
  entry.credentialsRetryAtMs = now + options_.retryAfterMs;
  entry.credentialsError = fetched.error();
  // A failed renewal leaves the old credentials in service until they expire.
  if (entry.credentials && now < entry.credentials->expiresAtMs) return *entry.credentials;
  return fetched;
}

Result<IdentityToken> CachingIdentityProvider::identityFor(Entry& entry, bool force) {
  auto fresh = [&]() -> std::optional<IdentityToken> {
    std::lock_guard lock(entry.mutex);
    if (entry.identity &&
        !due(entry.identity->obtainedAtMs, entry.identity->expiresAtMs, clock_.nowMs())) {
      return entry.identity;
    }
    return std::nullopt;
  };
  if (auto cached = fresh(); cached && !force) return *cached;
  std::lock_guard fetching(entry.fetchMutex);
  if (auto cached = fresh()) return *cached;
  int64_t now = clock_.nowMs();
  {
    std::lock_guard lock(entry.mutex);
    if (now < entry.identityRetryAtMs) {
      if (entry.identity && now < entry.identity->expiresAtMs) return *entry.identity;
      if (entry.identityError) return std::unexpected(*entry.identityError);
    }
  }
  auto fetched = upstream_->taskIdentity(entry.task);
  {
    std::lock_guard lock(statsMutex_);
    ++stats_.upstreamCalls;
    if (!fetched) ++stats_.upstreamFailures;
  }
  std::lock_guard lock(entry.mutex);
  if (fetched) {
    entry.identity = *fetched;
    entry.identityRetryAtMs = 0;
    entry.identityError.reset();
    return fetched;
  }
  entry.identityRetryAtMs = now + options_.retryAfterMs;
  entry.identityError = fetched.error();
  if (entry.identity && now < entry.identity->expiresAtMs) return *entry.identity;
  return fetched;
}

Result<RoleCredentials> CachingIdentityProvider::roleCredentials(const TaskMetadata& task) {
  return credentialsFor(*entry(task), false);
}

Result<IdentityToken> CachingIdentityProvider::taskIdentity(const TaskMetadata& task) {
  return identityFor(*entry(task), false);
}

std::optional<RoleCredentials> CachingIdentityProvider::cachedRoleCredentials(
    const std::string& taskId) const {
  auto found = find(taskId);
  if (!found) return std::nullopt;
  std::lock_guard lock(found->mutex);
  if (found->credentials && clock_.nowMs() < found->credentials->expiresAtMs) {
    return found->credentials;
  }
  return std::nullopt;
}

std::optional<IdentityToken> CachingIdentityProvider::cachedTaskIdentity(
    const std::string& taskId) const {
  auto found = find(taskId);
  if (!found) return std::nullopt;
  std::lock_guard lock(found->mutex);
  if (found->identity && clock_.nowMs() < found->identity->expiresAtMs) return found->identity;
  return std::nullopt;
}

void CachingIdentityProvider::refresh(const TaskMetadata& task) {
  auto found = entry(task);
  if (!found->task.iamRole.empty()) (void)credentialsFor(*found, false);
  (void)identityFor(*found, false);
}

void CachingIdentityProvider::renewDue() {
  std::vector<std::shared_ptr<Entry>> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, value] : entries_) all.push_back(value);
  }
  for (const auto& each : all) {
    int64_t now = clock_.nowMs();
    bool credentialsDue = false;
    bool identityDue = false;
    {
      std::lock_guard lock(each->mutex);
      credentialsDue = !each->task.iamRole.empty() && now >= each->credentialsRetryAtMs &&
                       (!each->credentials ||
                        due(each->credentials->obtainedAtMs, each->credentials->expiresAtMs, now));
      identityDue =
          now >= each->identityRetryAtMs &&
          (!each->identity || due(each->identity->obtainedAtMs, each->identity->expiresAtMs, now));
    }
    if (credentialsDue) (void)credentialsFor(*each, true);
    if (identityDue) (void)identityFor(*each, true);
  }
}

void CachingIdentityProvider::forget(const std::string& taskId) {
  std::lock_guard lock(mutex_);
  entries_.erase(taskId);
}

void CachingIdentityProvider::retainOnly(const std::set<std::string>& taskIds) {
  std::lock_guard lock(mutex_);
  std::erase_if(entries_, [&](const auto& item) { return !taskIds.contains(item.first); });
}

CachingIdentityProvider::Stats CachingIdentityProvider::stats() const {
  std::lock_guard lock(statsMutex_);
  return stats_;
}

}  // namespace skiff::agent::metadata
