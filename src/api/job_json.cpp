#include <string>
#include <string_view>
#include <utility>

#include "api/job.h"

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

json toJson(const JobDescriptor& job) {
  json image = {{"name", job.container.image.name}};
  if (!job.container.image.digest.empty()) {
    image["digest"] = job.container.image.digest;
  } else {
    image["tag"] = job.container.image.tag;
  }
  const Resources& r = job.container.resources;
  json container = {
      {"image", std::move(image)},
      {"entryPoint", job.container.entryPoint},
      {"command", job.container.command},
      {"env", job.container.env},
      {"resources",
       {{"cpu", r.cpu},
        {"memoryMB", r.memoryMB},
        {"diskMB", r.diskMB},
        {"networkMbps", r.networkMbps},
        {"gpu", r.gpu}}},
      {"securityProfile",
       {{"securityGroups", job.container.securityProfile.securityGroups},
        {"iamRole", job.container.securityProfile.iamRole}}},
      {"hardConstraints", job.container.hardConstraints},
      {"softConstraints", job.container.softConstraints},
      {"ports", job.container.ports},
  };
  if (job.container.liveness) container["liveness"] = healthCheckToJson(*job.container.liveness);
  if (job.container.readiness) {
    container["readiness"] = healthCheckToJson(*job.container.readiness);
  }
  json out = {
      {"name", job.name},
      {"applicationName", job.applicationName},
      {"owner", {{"teamEmail", job.owner.teamEmail}}},
      {"capacityGroup", job.capacityGroup},
      {"tier", tierName(job.tier)},
      {"attributes", job.attributes},
      {"container", std::move(container)},
  };
  if (job.batch) {
    out["batch"] = {{"size", job.batch->size},
                    {"runtimeLimitSec", job.batch->runtimeLimitSec},
                    {"retryPolicy", retryPolicyToJson(job.batch->retryPolicy)},
                    {"retryOnRuntimeLimit", job.batch->retryOnRuntimeLimit},
                    {"gang", job.batch->gang}};
  } else if (job.service) {
    out["service"] = {{"capacity",
                       {{"min", job.service->capacity.min},
                        {"desired", job.service->capacity.desired},
                        {"max", job.service->capacity.max}}},
                      {"enabled", job.service->enabled},
                      {"retryPolicy", retryPolicyToJson(job.service->retryPolicy)}};
    out["service"] = serviceExtrasToJson(*job.service, std::move(out["service"]));
  }
  return out;
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
