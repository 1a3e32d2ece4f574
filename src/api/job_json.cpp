#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/job.h"
#include "common/json_sink.h"

namespace skiff::api {
namespace {

using nlohmann::json;

json healthCheckToJson(const HealthCheck& check) {
  json out = {{"intervalMs", check.intervalMs},
              {"timeoutMs", check.timeoutMs},
              {"failureThreshold", check.failureThreshold},
              {"successThreshold", check.successThreshold},
              {"startPeriodMs", check.startPeriodMs}};
  switch (check.kind) {
    case HealthCheck::Kind::kExec:
      out["exec"] = {{"command", check.command}};
      break;
    case HealthCheck::Kind::kHttp:
      out["http"] = {
          {"path", check.path}, {"port", check.port}, {"expectedStatus", check.expectedStatus}};
      break;
    case HealthCheck::Kind::kTcp:
      out["tcp"] = {{"port", check.port}};
      break;
  }
  return out;
}

json taskCountToJson(const TaskCount& count) {
  if (count.percent) return count.toString();
  return count.value;
}

json serviceExtrasToJson(const ServiceSpec& service, json out) {
  json rollout = {{"maxSurge", taskCountToJson(service.rollout.maxSurge)},
                  {"maxUnavailable", taskCountToJson(service.rollout.maxUnavailable)},
                  {"minHealthyMs", service.rollout.minHealthyMs}};
  if (service.rollout.canaryTasks > 0) {
    rollout["canary"] = {{"tasks", service.rollout.canaryTasks}};
  }
  out["rollout"] = std::move(rollout);
  if (const auto& budget = service.disruptionBudget) {
    json b = json::object();
    if (budget->maxUnhealthy) b["maxUnhealthy"] = *budget->maxUnhealthy;
    if (budget->availabilityPercentage) {
      b["availabilityPercentage"] = *budget->availabilityPercentage;
    }
    if (budget->rateTasks > 0) {
      b["rate"] = {{"tasks", budget->rateTasks}, {"intervalMs", budget->rateIntervalMs}};
    }
    out["disruptionBudget"] = std::move(b);
  }
  if (const auto& autoscaling = service.autoscaling) {
    json policies = json::array();
    for (const auto& policy : autoscaling->policies) {
      if (policy.kind == ScalingPolicy::Kind::kTargetTracking) {
        policies.push_back(
            {{"targetTracking", {{"metric", policy.metric}, {"target", policy.target}}}});
        continue;
      }
      json steps = json::array();
      for (const auto& step : policy.steps) {
        json s = {{"change", step.change}};
        if (step.lower) s["lower"] = *step.lower;
        if (step.upper) s["upper"] = *step.upper;
        steps.push_back(std::move(s));
      }
      policies.push_back({{"stepScaling", {{"metric", policy.metric}, {"steps", steps}}}});
    }
    out["autoscaling"] = {{"policies", std::move(policies)},
                          {"scaleOutCooldownMs", autoscaling->scaleOutCooldownMs},
                          {"scaleInCooldownMs", autoscaling->scaleInCooldownMs}};
  }
  return out;
}

json retryPolicyToJson(const RetryPolicy& policy) {
  switch (policy.kind) {
    case RetryPolicy::Kind::kImmediate:
      return {{"immediate", {{"retries", policy.retries}}}};
    case RetryPolicy::Kind::kDelayed:
      return {{"delayed",
               {{"initialDelayMs", policy.initialDelayMs},
                {"delayMs", policy.delayMs},
                {"retries", policy.retries}}}};
    case RetryPolicy::Kind::kExponentialBackOff:
      return {{"exponentialBackOff",
               {{"initialDelayMs", policy.initialDelayMs},
                {"maxDelayIntervalMs", policy.maxDelayIntervalMs},
                {"retries", policy.retries}}}};
  }
  return {};
}

}  // namespace

namespace {

template <class Sink>
void stringArray(Sink& out, std::string_view key, const std::vector<std::string>& values) {
  out.beginArray(key);
  for (const std::string& value : values) out.value(std::string_view(value));
  out.end();
}

template <class Sink>
void stringMap(Sink& out, std::string_view key, const std::map<std::string, std::string>& values) {
  out.beginObject(key);
  for (const auto& [name, value] : values) out.field(name, value);
  out.end();
}

// The descriptor's JSON, one field list for both sinks (common/json_sink.h). Members are in
// name order, as nlohmann's tree writes them, so the text is exactly the tree's dump (request
// hashes of stored idempotency keys were taken over that dump). The parts only services and
// health checks have are built as trees: they are not on the submission path.
template <class Sink>
void emitDescriptor(Sink& out, const JobDescriptor& job) {
  const Container& c = job.container;
  out.beginObject();
  out.field("applicationName", job.applicationName);
  stringMap(out, "attributes", job.attributes);
  if (job.batch) {
    out.beginObject("batch");
    out.field("gang", job.batch->gang);
    out.field("retryOnRuntimeLimit", job.batch->retryOnRuntimeLimit);
    out.field("retryPolicy", retryPolicyToJson(job.batch->retryPolicy));
    out.field("runtimeLimitSec", job.batch->runtimeLimitSec);
    out.field("size", job.batch->size);
    out.end();
  }
  out.field("capacityGroup", job.capacityGroup);
  out.beginObject("container");
  stringArray(out, "command", c.command);
  stringArray(out, "entryPoint", c.entryPoint);
  stringMap(out, "env", c.env);
  stringMap(out, "hardConstraints", c.hardConstraints);
  out.beginObject("image");
  if (!c.image.digest.empty()) {
    out.field("digest", c.image.digest);
    out.field("name", c.image.name);
  } else {
    out.field("name", c.image.name);
    out.field("tag", c.image.tag);
  }
  out.end();
  if (c.liveness) out.field("liveness", healthCheckToJson(*c.liveness));
  out.beginArray("ports");
  for (int64_t port : c.ports) out.value(port);
  out.end();
  if (c.readiness) out.field("readiness", healthCheckToJson(*c.readiness));
  out.beginObject("resources");
  out.field("cpu", c.resources.cpu);
  out.field("diskMB", c.resources.diskMB);
  out.field("gpu", c.resources.gpu);
  out.field("memoryMB", c.resources.memoryMB);
  out.field("networkMbps", c.resources.networkMbps);
  out.end();
  out.beginObject("securityProfile");
  out.field("iamRole", c.securityProfile.iamRole);
  stringArray(out, "securityGroups", c.securityProfile.securityGroups);
  out.end();
  stringMap(out, "softConstraints", c.softConstraints);
  out.end();
  out.field("name", job.name);
  out.beginObject("owner");
  out.field("teamEmail", job.owner.teamEmail);
  out.end();
  if (!job.batch && job.service) {
    json service = {{"capacity",
                     {{"min", job.service->capacity.min},
                      {"desired", job.service->capacity.desired},
                      {"max", job.service->capacity.max}}},
                    {"enabled", job.service->enabled},
                    {"retryPolicy", retryPolicyToJson(job.service->retryPolicy)}};
    out.field("service", serviceExtrasToJson(*job.service, std::move(service)));
  }
  out.field("tier", tierName(job.tier));
  out.end();
}

}  // namespace

json toJson(const JobDescriptor& job) {
  JsonTreeSink out;
  emitDescriptor(out, job);
  return out.take();
}

std::string toJsonText(const JobDescriptor& job) {
  JsonTextSink out;
  emitDescriptor(out, job);
  return out.take();
}

Result<json> parseJson(std::string_view text) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    auto start = what.find("] ");
    return fail(ErrorCode::kInvalidArgument,
                "malformed JSON: " + (start == std::string::npos ? what : what.substr(start + 2)));
  }
}

}  // namespace skiff::api
