#include "api/job.h"

#include <algorithm>
#include <string>
#include <utility>

#include "api/job_parsers.h"
#include "api/json_checker.h"
#include "api/names.h"

namespace skiff::api {
namespace detail {
namespace {

std::optional<BatchSpec> parseBatch(Checker& checker, const json& value) {
  const std::string path = "batch";
  if (!checker.object(value, path,
                      {"size", "runtimeLimitSec", "retryPolicy", "retryOnRuntimeLimit", "gang"})) {
    return std::nullopt;
  }
  BatchSpec batch;
  if (auto v = checker.integer(value, path, "size", false, 1, Limits::kMaxBatchSize)) {
    batch.size = *v;
  }
  if (auto v =
          checker.integer(value, path, "runtimeLimitSec", false, 1, Limits::kMaxRuntimeLimitSec)) {
    batch.runtimeLimitSec = *v;
  }
  if (auto v = parseRetryPolicy(checker, value, path)) batch.retryPolicy = *v;
  if (auto v = checker.boolean(value, path, "retryOnRuntimeLimit")) batch.retryOnRuntimeLimit = *v;
  if (auto v = checker.boolean(value, path, "gang")) batch.gang = *v;
  return batch;
}

}  // namespace

std::optional<RetryPolicy> parseRetryPolicy(Checker& checker, const json& spec,
                                            const std::string& path) {
  const json* value = checker.field(spec, path, "retryPolicy", false);
  if (value == nullptr) return std::nullopt;
  std::string policyPath = joinPath(path, "retryPolicy");
  if (!checker.object(*value, policyPath, {"immediate", "delayed", "exponentialBackOff"})) {
    return std::nullopt;
  }
  size_t kinds =
      value->count("immediate") + value->count("delayed") + value->count("exponentialBackOff");
  if (kinds != 1) {
    checker.add(policyPath,
                "must set exactly one of immediate, delayed or exponentialBackOff (got " +
                    std::to_string(kinds) + ")");
    return std::nullopt;
  }
  RetryPolicy policy;
  size_t before = checker.errors.size();
  if (value->contains("immediate")) {
    std::string p = joinPath(policyPath, "immediate");
    const json& body = (*value)["immediate"];
    policy.kind = RetryPolicy::Kind::kImmediate;
    if (checker.object(body, p, {"retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
    }
  } else if (value->contains("delayed")) {
    std::string p = joinPath(policyPath, "delayed");
    const json& body = (*value)["delayed"];
    policy.kind = RetryPolicy::Kind::kDelayed;
    if (checker.object(body, p, {"initialDelayMs", "delayMs", "retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
      policy.initialDelayMs =
          checker.integer(body, p, "initialDelayMs", false, 0, Limits::kMaxDelayMs).value_or(0);
      policy.delayMs =
          checker.integer(body, p, "delayMs", true, 0, Limits::kMaxDelayMs).value_or(0);
    }
  } else {
    std::string p = joinPath(policyPath, "exponentialBackOff");
    const json& body = (*value)["exponentialBackOff"];
    policy.kind = RetryPolicy::Kind::kExponentialBackOff;
    if (checker.object(body, p, {"initialDelayMs", "maxDelayIntervalMs", "retries"})) {
      policy.retries =
          checker.integer(body, p, "retries", true, 0, Limits::kMaxRetries).value_or(0);
      auto initial = checker.integer(body, p, "initialDelayMs", true, 1, Limits::kMaxDelayMs);
      auto maxDelay = checker.integer(body, p, "maxDelayIntervalMs", true, 1, Limits::kMaxDelayMs);
      if (initial && maxDelay && *maxDelay < *initial) {
        checker.add(joinPath(p, "maxDelayIntervalMs"), "must be at least initialDelayMs (got " +
                                                           std::to_string(*maxDelay) + " < " +
                                                           std::to_string(*initial) + ")");
      }
      policy.initialDelayMs = initial.value_or(0);
      policy.maxDelayIntervalMs = maxDelay.value_or(0);
    }
  }
  if (checker.errors.size() != before) return std::nullopt;
  return policy;
}

}  // namespace detail

using detail::Checker;
using detail::describeValue;
using detail::parseBatch;
using detail::parseContainer;
using detail::parseService;
using detail::typeOf;
using nlohmann::json;

std::string FieldError::toString() const {
  if (field.empty()) return message;
  return field + ": " + message;
}

std::string Image::reference() const {
  if (!digest.empty()) return name + "@" + digest;
  return name + ":" + tag;
}

int64_t RetryPolicy::delayBeforeRetryMs(int64_t retryNumber) const {
  if (retryNumber < 1) retryNumber = 1;
  switch (kind) {
    case Kind::kImmediate:
      return 0;
    case Kind::kDelayed:
      return retryNumber == 1 ? initialDelayMs : delayMs;
    case Kind::kExponentialBackOff: {
      int64_t delay = initialDelayMs;
      for (int64_t i = 1; i < retryNumber && delay > 0 && delay < maxDelayIntervalMs; ++i) {
        delay = delay > maxDelayIntervalMs / 2 ? maxDelayIntervalMs : delay * 2;
      }
      return std::min(delay, maxDelayIntervalMs);
    }
  }
  return 0;
}

int64_t TaskCount::resolve(int64_t total, bool roundUp) const {
  if (!percent) return value;
  int64_t scaled = total * value;
  return roundUp ? (scaled + 99) / 100 : scaled / 100;
}

std::string TaskCount::toString() const {
  return std::to_string(value) + (percent ? "%" : "");
}

std::string_view tierName(Tier tier) {
  return tier == Tier::kCritical ? "critical" : "flex";
}

std::expected<JobDescriptor, FieldErrors> validateJobDescriptor(const json& document) {
  Checker checker;
  JobDescriptor job;
  if (!checker.object(document, "",
                      {"name", "applicationName", "owner", "capacityGroup", "tier", "attributes",
                       "container", "batch", "service"})) {
    checker.errors.back().message = "a job must be an object (got " + typeOf(document) + ")";
    return std::unexpected(std::move(checker.errors));
  }
  auto applicationName = checker.name(document, "", "applicationName", true);
  if (applicationName) job.applicationName = *applicationName;
  auto name = checker.name(document, "", "name", false);
  job.name = name ? *name : job.applicationName;
  if (const json* owner = checker.field(document, "", "owner", true)) {
    if (checker.object(*owner, "owner", {"teamEmail"})) {
      auto email = checker.string(*owner, "owner", "teamEmail", true, 254);
      if (email && !validEmail(*email)) {
        checker.add("owner.teamEmail",
                    "must be an email address (got " + describeValue(*email) + ")");
      }
      if (email) job.owner.teamEmail = *email;
    }
  }
  if (auto group = checker.name(document, "", "capacityGroup", false)) job.capacityGroup = *group;
  if (auto tier = checker.string(document, "", "tier", false)) {
    if (*tier == "critical") {
      job.tier = Tier::kCritical;
    } else if (*tier == "flex") {
      job.tier = Tier::kFlex;
    } else {
      checker.add("tier", "must be one of critical, flex (got " + describeValue(*tier) + ")");
    }
  }
  job.attributes = checker.stringMap(document, "", "attributes", Limits::kMaxAttributes);
  for (const auto& [key, unused] : job.attributes) {
    if (key.starts_with("skiff.")) {
      checker.add("attributes." + key, "uses the reserved prefix \"skiff.\"");
    }
  }
  if (const json* container = checker.field(document, "", "container", true)) {
    job.container = parseContainer(checker, *container);
  }
  const json* batch = checker.field(document, "", "batch", false);
  const json* service = checker.field(document, "", "service", false);
  if (batch != nullptr && service != nullptr) {
    checker.add("service", "must not be set together with batch: a job is one or the other");
  } else if (batch == nullptr && service == nullptr) {
    checker.add("batch", "is required unless service is set: a job is batch or service");
  } else if (batch != nullptr) {
    job.batch = parseBatch(checker, *batch);
  } else {
    job.service = parseService(checker, *service);
  }
  if (!checker.errors.empty()) return std::unexpected(std::move(checker.errors));
  return job;
}

}  // namespace skiff::api
