#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>

#include "api/job_parsers.h"
#include "api/names.h"

namespace skiff::api::detail {
namespace {

const std::regex kPercentPattern("([0-9]{1,3})%");

// A task count: a non-negative integer or "N%" with N from 0 to 100.
std::optional<TaskCount> parseTaskCount(Checker& checker, const json& object,
                                        const std::string& path, std::string_view key) {
  const json* value = checker.field(object, path, key, false);
  if (value == nullptr) return std::nullopt;
  std::string fieldPath = joinPath(path, key);
  if (value->is_string()) {
    std::smatch match;
    const auto& text = value->get_ref<const std::string&>();
    if (std::regex_match(text, match, kPercentPattern) && std::stoi(match[1].str()) <= 100) {
      return TaskCount{std::stoi(match[1].str()), true};
    }
    checker.add(fieldPath, "must be a task count or a percentage from 0% to 100% (got " +
                               describeValue(*value) + ")");
    return std::nullopt;
  }
  auto count = checker.integer(object, path, key, false, 0, Limits::kMaxServiceCapacity);
  if (!count) return std::nullopt;
  return TaskCount{*count, false};
}

RolloutStrategy parseRollout(Checker& checker, const json& service) {
  RolloutStrategy rollout;
  const std::string path = "service.rollout";
  const json* value = checker.field(service, "service", "rollout", false);
  if (value == nullptr) return rollout;
  if (!checker.object(*value, path, {"maxSurge", "maxUnavailable", "minHealthyMs", "canary"})) {
    return rollout;
  }
  if (auto v = parseTaskCount(checker, *value, path, "maxSurge")) rollout.maxSurge = *v;
  if (auto v = parseTaskCount(checker, *value, path, "maxUnavailable")) {
    rollout.maxUnavailable = *v;
  }
  if (rollout.maxSurge.value == 0 && rollout.maxUnavailable.value == 0) {
    checker.add(path, "maxSurge and maxUnavailable must not both be 0: the rollout could not move");
  }
  if (auto v =
          checker.integer(*value, path, "minHealthyMs", false, 0, Limits::kMaxCheckDurationMs)) {
    rollout.minHealthyMs = *v;
  }
  if (const json* canary = checker.field(*value, path, "canary", false)) {
    std::string p = joinPath(path, "canary");
    if (checker.object(*canary, p, {"tasks"})) {
      rollout.canaryTasks =
          checker.integer(*canary, p, "tasks", true, 1, Limits::kMaxServiceCapacity).value_or(0);
    }
  }
  return rollout;
}

std::optional<DisruptionBudget> parseDisruptionBudget(Checker& checker, const json& service) {
  const std::string path = "service.disruptionBudget";
  const json* value = checker.field(service, "service", "disruptionBudget", false);
  if (value == nullptr) return std::nullopt;
  if (!checker.object(*value, path, {"maxUnhealthy", "availabilityPercentage", "rate"})) {
    return std::nullopt;
  }
  DisruptionBudget budget;
  size_t limits = value->count("maxUnhealthy") + value->count("availabilityPercentage");
  if (limits != 1) {
    checker.add(path, "must set exactly one of maxUnhealthy or availabilityPercentage (got " +
                          std::to_string(limits) + ")");
  }
  budget.maxUnhealthy =
      checker.integer(*value, path, "maxUnhealthy", false, 0, Limits::kMaxServiceCapacity);
  budget.availabilityPercentage =
      checker.number(*value, path, "availabilityPercentage", false, 0, 100);
  if (const json* rate = checker.field(*value, path, "rate", false)) {
    std::string p = joinPath(path, "rate");
    if (checker.object(*rate, p, {"tasks", "intervalMs"})) {
      budget.rateTasks =
          checker.integer(*rate, p, "tasks", true, 1, Limits::kMaxServiceCapacity).value_or(0);
      budget.rateIntervalMs =
          checker.integer(*rate, p, "intervalMs", true, 1, Limits::kMaxDelayMs).value_or(0);
    }
  }
  return budget;
}

std::string parseMetric(Checker& checker, const json& body, const std::string& path) {
  auto metric = checker.string(body, path, "metric", true, 128);
  if (metric && !validMetricName(*metric)) {
    checker.add(joinPath(path, "metric"),
                "must be \"cpu\" or a metric name of letters, digits, '.', '_' or '-', starting "
                "with a letter (got " +
                    describeValue(*metric) + ")");
  }
  return metric.value_or("");
}

std::optional<Autoscaling> parseAutoscaling(Checker& checker, const json& service) {
  const std::string path = "service.autoscaling";
  const json* value = checker.field(service, "service", "autoscaling", false);
  if (value == nullptr) return std::nullopt;
  if (!checker.object(*value, path, {"policies", "scaleOutCooldownMs", "scaleInCooldownMs"})) {
    return std::nullopt;
  }
  Autoscaling autoscaling;
  if (auto v = checker.integer(*value, path, "scaleOutCooldownMs", false, 0, Limits::kMaxDelayMs)) {
    autoscaling.scaleOutCooldownMs = *v;
  }
  if (auto v = checker.integer(*value, path, "scaleInCooldownMs", false, 0, Limits::kMaxDelayMs)) {
    autoscaling.scaleInCooldownMs = *v;
  }
  const json* policies = checker.field(*value, path, "policies", true);
  if (policies == nullptr) return autoscaling;
  std::string policiesPath = joinPath(path, "policies");
  if (!policies->is_array() || policies->empty() ||
      policies->size() > Limits::kMaxScalingPolicies) {
    checker.add(policiesPath, "must be a list of 1 to " +
                                  std::to_string(Limits::kMaxScalingPolicies) + " policies");
    return autoscaling;
  }
  for (size_t i = 0; i < policies->size(); ++i) {
    std::string p = policiesPath + "[" + std::to_string(i) + "]";
    const json& item = (*policies)[i];
    if (!checker.object(item, p, {"targetTracking", "stepScaling"})) continue;
    size_t kinds = item.count("targetTracking") + item.count("stepScaling");
    if (kinds != 1) {
      checker.add(p, "must set exactly one of targetTracking or stepScaling (got " +
                         std::to_string(kinds) + ")");
      continue;
    }
    ScalingPolicy policy;
    if (item.contains("targetTracking")) {
      std::string tp = joinPath(p, "targetTracking");
      const json& body = item["targetTracking"];
      policy.kind = ScalingPolicy::Kind::kTargetTracking;
      if (!checker.object(body, tp, {"metric", "target"})) continue;
      policy.metric = parseMetric(checker, body, tp);
      if (auto target = checker.number(body, tp, "target", true, -1e15, 1e15)) {
        if (*target <= 0) {
          checker.add(joinPath(tp, "target"),
                      "must be greater than 0 (got " + formatNumber(*target) + ")");
        }
        policy.target = *target;
      }
    } else {
      std::string sp = joinPath(p, "stepScaling");
      const json& body = item["stepScaling"];
      policy.kind = ScalingPolicy::Kind::kStepScaling;
      if (!checker.object(body, sp, {"metric", "steps"})) continue;
      policy.metric = parseMetric(checker, body, sp);
      const json* steps = checker.field(body, sp, "steps", true);
      std::string stepsPath = joinPath(sp, "steps");
      if (steps == nullptr) continue;
      if (!steps->is_array() || steps->empty() || steps->size() > Limits::kMaxScalingSteps) {
        checker.add(stepsPath, "must be a list of 1 to " +
                                   std::to_string(Limits::kMaxScalingSteps) + " steps");
        continue;
      }
      for (size_t j = 0; j < steps->size(); ++j) {
        std::string stepPath = stepsPath + "[" + std::to_string(j) + "]";
        const json& stepJson = (*steps)[j];
        if (!checker.object(stepJson, stepPath, {"lower", "upper", "change"})) continue;
        ScalingPolicy::Step step;
        step.lower = checker.number(stepJson, stepPath, "lower", false, -1e15, 1e15);
        step.upper = checker.number(stepJson, stepPath, "upper", false, -1e15, 1e15);
        step.change = checker
                          .integer(stepJson, stepPath, "change", true, -Limits::kMaxServiceCapacity,
                                   Limits::kMaxServiceCapacity)
                          .value_or(0);
        if (step.lower && step.upper && !(*step.lower < *step.upper)) {
          checker.add(stepPath, "lower must be below upper");
        }
        policy.steps.push_back(step);
      }
      // Steps must be ordered and not overlap, so at most one applies to any value.
      for (size_t j = 1; j < policy.steps.size(); ++j) {
        const auto& previous = policy.steps[j - 1];
        const auto& step = policy.steps[j];
        if (!previous.upper || !step.lower || *step.lower < *previous.upper) {
          checker.add(stepsPath + "[" + std::to_string(j) + "]",
                      "must start at or above the upper bound of the step before it");
        }
      }
    }
    autoscaling.policies.push_back(std::move(policy));
  }
  return autoscaling;
}

}  // namespace

std::optional<ServiceSpec> parseService(Checker& checker, const json& value) {
  const std::string path = "service";
  if (!checker.object(
          value, path,
          {"capacity", "enabled", "retryPolicy", "rollout", "disruptionBudget", "autoscaling"})) {
    return std::nullopt;
  }
  ServiceSpec service;
  if (const json* capacity = checker.field(value, path, "capacity", true)) {
    std::string capPath = "service.capacity";
    if (checker.object(*capacity, capPath, {"min", "desired", "max"})) {
      auto max = checker.integer(*capacity, capPath, "max", true, 0, Limits::kMaxServiceCapacity);
      auto min = checker.integer(*capacity, capPath, "min", false, 0, Limits::kMaxServiceCapacity);
      auto desired =
          checker.integer(*capacity, capPath, "desired", true, 0, Limits::kMaxServiceCapacity);
      if (max && desired) {
        service.capacity = {min.value_or(0), *desired, *max};
        if (!(service.capacity.min <= service.capacity.desired &&
              service.capacity.desired <= service.capacity.max)) {
          checker.add(capPath, "must satisfy min <= desired <= max (got min " +
                                   std::to_string(service.capacity.min) + ", desired " +
                                   std::to_string(service.capacity.desired) + ", max " +
                                   std::to_string(service.capacity.max) + ")");
        }
      }
    }
  }
  if (auto v = checker.boolean(value, path, "enabled")) service.enabled = *v;
  if (auto v = parseRetryPolicy(checker, value, path)) service.retryPolicy = *v;
  service.rollout = parseRollout(checker, value);
  service.disruptionBudget = parseDisruptionBudget(checker, value);
  service.autoscaling = parseAutoscaling(checker, value);
  return service;
}

}  // namespace skiff::api::detail
