#pragma once

// The job model shared by every Skiff program.
//
// Users write job files in YAML; the wire format is JSON with the same field names (see
// docs/job.schema.json). `validateJobDescriptor` is the only way to build a `JobDescriptor` from
// untrusted input: it rejects unknown fields, checks every rule, and reports every violation at
// once, each naming the field path and the rule.

#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff::api {

enum class Tier { kCritical, kFlex };

struct Owner {
  std::string teamEmail;
};

// An image reference: a name (which may start with a registry `HOST[:PORT]/`) plus either a tag
// or a digest, never both.
struct Image {
  std::string name;
  std::string tag;     // Empty when `digest` is set.
  std::string digest;  // "sha256:<64 hex>", empty when `tag` is set.

  // The Docker-style reference, e.g. "localhost:5000/busybox:1.36" or "busybox@sha256:...".
  std::string reference() const;
};

struct Resources {
  double cpu = 1.0;  // Fractional cores.
  int64_t memoryMB = 512;
  int64_t diskMB = 1024;
  int64_t networkMbps = 128;
  int64_t gpu = 0;  // Whole devices.
};

struct SecurityProfile {
  std::vector<std::string> securityGroups{"default"};
  std::string iamRole;
};

// A liveness or readiness check of a container. Exactly one kind is set.
struct HealthCheck {
  enum class Kind { kExec, kHttp, kTcp };
  Kind kind = Kind::kTcp;
  std::vector<std::string> command;  // kExec: run inside the container; exit 0 passes.
  std::string path = "/";            // kHttp: GET this path.
  int64_t port = 0;                  // kHttp, kTcp: on the task's address.
  int64_t expectedStatus = 200;      // kHttp: the status that passes.
  int64_t intervalMs = 10'000;
  int64_t timeoutMs = 1'000;
  int64_t failureThreshold = 3;  // Consecutive failures before the check fails.
  int64_t successThreshold = 1;  // Consecutive successes before it passes.
  int64_t startPeriodMs = 0;     // Failures in this time after the start do not count.
};

struct Container {
  Image image;
  std::vector<std::string> entryPoint;
  std::vector<std::string> command;
  std::map<std::string, std::string> env;
  Resources resources;
  SecurityProfile securityProfile;
  std::map<std::string, std::string> hardConstraints;
  std::map<std::string, std::string> softConstraints;
  // Ports the container serves; endpoints list them with the task's address.
  std::vector<int64_t> ports;
  std::optional<HealthCheck> liveness;   // Failing: the task is restarted (reason failed).
  std::optional<HealthCheck> readiness;  // Passing: the task is ready for traffic.
};

struct RetryPolicy {
  enum class Kind { kImmediate, kDelayed, kExponentialBackOff };
  Kind kind = Kind::kImmediate;
  int64_t retries = 0;
  int64_t initialDelayMs = 0;      // kDelayed, kExponentialBackOff.
  int64_t delayMs = 0;             // kDelayed.
  int64_t maxDelayIntervalMs = 0;  // kExponentialBackOff.

  // How long to wait, after a task finished, before starting retry number `retryNumber` (1 for
  // the first retry). Immediate: 0. Delayed: `initialDelayMs` for the first retry, `delayMs`
  // after. Exponential: `initialDelayMs * 2^(retryNumber-1)`, capped at `maxDelayIntervalMs`.
  int64_t delayBeforeRetryMs(int64_t retryNumber) const;
};

struct BatchSpec {
  int64_t size = 1;
  int64_t runtimeLimitSec = 432000;  // Five days, as Titus.
  RetryPolicy retryPolicy;
  bool retryOnRuntimeLimit = false;
  // All tasks are placed in one scheduling iteration or none is (distributed training).
  bool gang = false;
};

struct Capacity {
  int64_t min = 0;
  int64_t desired = 0;
  int64_t max = 0;
};

// A count of tasks, absolute or a percentage of the desired capacity.
struct TaskCount {
  int64_t value = 0;
  bool percent = false;

  // The count for `total` tasks: percentages round up when `roundUp`, down otherwise.
  int64_t resolve(int64_t total, bool roundUp) const;
  std::string toString() const;  // "2" or "25%".
};

// How a new revision of a service replaces the tasks of the old one.
struct RolloutStrategy {
  TaskCount maxSurge{25, true};       // Tasks above desired while rolling (rounded up).
  TaskCount maxUnavailable{0, true};  // Tasks below desired while rolling (rounded down).
  int64_t minHealthyMs = 0;           // A new task counts only after being ready this long.
  int64_t canaryTasks = 0;            // Pause after this many new tasks are healthy (0: no pause).
};

// Limits on voluntary disruptions (drains, preemption, rollouts): at most `maxUnhealthy` tasks
// down at once, or at least `availabilityPercentage` of desired up; and at most `rateTasks`
// disruptions per `rateIntervalMs` (when `rateTasks` > 0).
struct DisruptionBudget {
  std::optional<int64_t> maxUnhealthy;
  std::optional<double> availabilityPercentage;
  int64_t rateTasks = 0;
  int64_t rateIntervalMs = 0;
};

// One autoscaling policy. `metric` is "cpu" (average utilization of the requested cores, in
// percent, reported by agents) or the name of a custom metric pushed through the API (its value
// is taken as the per-task average).
struct ScalingPolicy {
  struct Step {
    std::optional<double> lower;  // Applies when lower <= value < upper; unset: unbounded.
    std::optional<double> upper;
    int64_t change = 0;  // Tasks to add (negative: remove).
  };
  enum class Kind { kTargetTracking, kStepScaling };
  Kind kind = Kind::kTargetTracking;
  std::string metric;
  double target = 0;        // kTargetTracking.
  std::vector<Step> steps;  // kStepScaling, ordered by lower bound, not overlapping.
};

struct Autoscaling {
  std::vector<ScalingPolicy> policies;
  int64_t scaleOutCooldownMs = 60'000;
  int64_t scaleInCooldownMs = 300'000;
};

struct ServiceSpec {
  Capacity capacity;
  bool enabled = true;
  RetryPolicy retryPolicy{RetryPolicy::Kind::kExponentialBackOff, 1'000'000'000, 1000, 0, 60000};
  RolloutStrategy rollout;
  std::optional<DisruptionBudget> disruptionBudget;
  std::optional<Autoscaling> autoscaling;
};

struct JobDescriptor {
  std::string name;
  std::string applicationName;
  Owner owner;
  std::string capacityGroup = "DEFAULT";
  Tier tier = Tier::kFlex;
  std::map<std::string, std::string> attributes;
  Container container;
  std::optional<BatchSpec> batch;  // Exactly one of `batch` and `service` is set.
  std::optional<ServiceSpec> service;

  bool isBatch() const { return batch.has_value(); }
};

// One rule violation: `field` is the dotted path ("container.resources.memoryMB"), `message` the
// rule and, where useful, the offending value ("must be between 16 and 1048576 (got 0)").
struct FieldError {
  std::string field;
  std::string message;

  // "field: message", or just the message when the error is about the whole document.
  std::string toString() const;
};

using FieldErrors = std::vector<FieldError>;

// Limits enforced by validation, published so the schema, docs and tests agree.
struct Limits {
  static constexpr double kMaxCpu = 96.0;
  static constexpr int64_t kMinMemoryMB = 16;
  static constexpr int64_t kMaxMemoryMB = 1'048'576;
  static constexpr int64_t kMaxDiskMB = 16'777'216;
  static constexpr int64_t kMaxNetworkMbps = 400'000;
  static constexpr int64_t kMaxGpu = 16;
  static constexpr int64_t kMaxBatchSize = 10'000;
  static constexpr int64_t kMaxServiceCapacity = 10'000;
  static constexpr int64_t kMaxRuntimeLimitSec = 864'000;
  static constexpr int64_t kMaxRetries = 1'000'000'000;
  static constexpr int64_t kMaxDelayMs = 86'400'000;
  static constexpr size_t kMinSecurityGroups = 1;
  static constexpr size_t kMaxSecurityGroups = 6;
  static constexpr size_t kMaxEnvBytes = 32 * 1024;
  static constexpr size_t kMaxStringBytes = 4096;
  static constexpr size_t kMaxAttributes = 64;
  static constexpr size_t kMaxPorts = 16;
  static constexpr int64_t kMinCheckIntervalMs = 100;
  static constexpr int64_t kMaxCheckDurationMs = 3'600'000;
  static constexpr int64_t kMaxThreshold = 100;
  static constexpr size_t kMaxScalingPolicies = 8;
  static constexpr size_t kMaxScalingSteps = 16;
};

// Checks `document` against every rule and builds the descriptor, or returns every violation.
// Never throws.
std::expected<JobDescriptor, FieldErrors> validateJobDescriptor(const nlohmann::json& document);

// The canonical wire form of a descriptor, with every default filled in.
nlohmann::json toJson(const JobDescriptor& descriptor);
// `toJson(descriptor).dump()`, written without building the tree.
std::string toJsonText(const JobDescriptor& descriptor);

// Parses a job file. YAML is accepted (JSON is YAML); plain YAML scalars follow the YAML 1.2 core
// schema (true/false, null, integers, floats), quoted ones stay strings. Syntax errors name the
// line and column. Never throws.
Result<nlohmann::json> parseJobFileText(std::string_view text);

// Parses a JSON request body. Never throws.
Result<nlohmann::json> parseJson(std::string_view text);

// Renders JSON as YAML (for `-o yaml`).
std::string toYaml(const nlohmann::json& value);

std::string_view tierName(Tier tier);

}  // namespace skiff::api
