#pragma once

// The decisions behind long-running services, as pure functions of a snapshot and the time:
// disruption budgets, rollout steps and rollback triggers, and autoscaling.
//
// Nothing here does I/O or reads a clock. The job's reconcile loop builds the inputs from its
// tasks, applies the decisions as task edits, and records the reasons as events; tests drive the
// functions with a ManualClock's time.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"

namespace skiff::controlplane {

// ---- Disruption budgets ----

// How many more tasks of a service may be disrupted now (drained, preempted).
struct DisruptionAllowance {
  int64_t tasks = 0;  // 0 when nothing may be disrupted now.
  // When `tasks` is 0 only because of the rate limit: the time the next disruption is allowed.
  int64_t retryAtMs = 0;
  std::string reason;  // Why the allowance is what it is ("maxUnhealthy 1, 1 unhealthy").
};

// `desired` is the service's desired capacity, `ready` its tasks that are ready and not being
// killed (ready tasks above desired may all go under maxUnhealthy 0), `recentDisruptionsMs` the
// times of earlier disruptions (any order; older ones than the rate interval are ignored). Without
// a budget the allowance is unlimited (`desired`).
DisruptionAllowance disruptionAllowance(const std::optional<api::DisruptionBudget>& budget,
                                        int64_t desired, int64_t ready,
                                        const std::vector<int64_t>& recentDisruptionsMs,
                                        int64_t nowMs);

// How many tasks of a service a drain moves at once: maxUnhealthy (at least 1), or the tasks the
// availability percentage lets go of `desired` (at least 1); 1 without a budget. Each move starts a
// replacement and stops the old task once the replacement is ready.
int64_t drainParallelism(const std::optional<api::DisruptionBudget>& budget, int64_t desired);

// ---- Rollouts ----

// One unfinished task of a service during a rollout.
struct RolloutTask {
  std::string id;
  int64_t revision = 0;      // The job revision the task runs.
  bool ready = false;        // Passing its readiness check (or started, without one).
  int64_t readySinceMs = 0;  // When it last became ready.
  bool killing = false;      // A kill was decided; it holds resources until it finishes.
};

struct RolloutInput {
  int64_t desired = 0;
  int64_t targetRevision = 0;
  api::RolloutStrategy strategy;
  std::vector<RolloutTask> tasks;
  // A task of the target revision finished (or failed its liveness check) before it was healthy.
  bool newTaskFailed = false;
  bool promoted = false;  // `skiff job promote` was given after the canary pause.
};

struct RolloutStep {
  enum class Outcome { kProgressing, kPaused, kDone, kRollBack };
  Outcome outcome = Outcome::kProgressing;
  int64_t startNew = 0;              // Tasks of the target revision to add now.
  std::vector<std::string> stopOld;  // Old-revision tasks to kill now (not ready ones first).
  // When a ready new task becomes healthy (minHealthyMs), so the loop should look again; 0: none.
  int64_t nextCheckMs = 0;
  int64_t healthyNew = 0;  // New tasks ready for at least minHealthyMs.
  std::string reason;
};

// The surge and unavailability limits for `desired` tasks: percentages of surge round up, of
// unavailability down; when both come to 0 the surge is 1 so the rollout can move.
std::pair<int64_t, int64_t> rolloutLimits(const api::RolloutStrategy& strategy, int64_t desired);

// The next step of a rollout: never more than desired + maxSurge tasks that are not being killed,
// never fewer than desired - maxUnavailable available ones (new tasks count once healthy, old ones
// while ready). A failed new task means roll back; the canary pauses the rollout once `canaryTasks`
// new tasks are healthy (and the old tasks they replace are stopped) until promoted.
RolloutStep nextRolloutStep(const RolloutInput& input, int64_t nowMs);

// ---- Autoscaling ----

struct AutoscaleInput {
  api::Capacity capacity;  // Current min/desired/max.
  int64_t readyTasks = 0;
  // The latest value of each metric ("cpu" and custom names); a policy whose metric has no value
  // makes no proposal.
  std::map<std::string, double> metrics;
  int64_t lastScaleOutMs = 0;  // 0: never.
  int64_t lastScaleInMs = 0;
};

struct AutoscaleDecision {
  int64_t desired = 0;  // The new desired capacity (== capacity.desired when unchanged).
  bool changed = false;
  bool scaleOut = false;
  // When a change was held back by a cooldown: the time it ends; 0 otherwise.
  int64_t blockedUntilMs = 0;
  // The record of the decision for the event stream: the metric values, each policy's proposal,
  // the bounds and cooldowns applied.
  nlohmann::json detail;
};

// Target tracking within this ratio of the target proposes no change, so the service does not
// flap around its target.
inline constexpr double kTargetTrackingTolerance = 0.1;

// The desired capacity the policies ask for now. Target tracking proposes
// ceil(base × value / target) where base is the ready tasks (the current desired when none is
// ready); step scaling proposes desired + the change of the step the value falls in. The largest
// proposal wins, bounded by min and max; a scale-out waits out `scaleOutCooldownMs` after the last
// scale-out, a scale-in `scaleInCooldownMs` after the last scaling of either kind.
AutoscaleDecision decideAutoscale(const api::Autoscaling& autoscaling, const AutoscaleInput& input,
                                  int64_t nowMs);

}  // namespace skiff::controlplane
