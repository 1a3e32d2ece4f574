#include "controlplane/service_logic.h"

#include <algorithm>
#include <cmath>

namespace skiff::controlplane {

using nlohmann::json;

DisruptionAllowance disruptionAllowance(const std::optional<api::DisruptionBudget>& budget,
                                        int64_t desired, int64_t ready,
                                        const std::vector<int64_t>& recentDisruptionsMs,
                                        int64_t nowMs) {
  DisruptionAllowance out;
  if (!budget) {
    out.tasks = std::max<int64_t>(desired, 1);
    out.reason = "no disruption budget";
    return out;
  }
  // Ready tasks above desired (replacements already up) may go without anyone being unhealthy.
  int64_t unhealthy = desired - ready;
  if (budget->maxUnhealthy) {
    out.tasks = std::max<int64_t>(0, *budget->maxUnhealthy - unhealthy);
    out.reason = "maxUnhealthy " + std::to_string(*budget->maxUnhealthy) + ", " +
                 std::to_string(std::max<int64_t>(0, unhealthy)) + " unhealthy";
  } else {
    double percentage = budget->availabilityPercentage.value_or(100);
    // The ready tasks that must remain: rounded up, so the percentage is never undercut.
    auto mustRemain =
        static_cast<int64_t>(std::ceil(static_cast<double>(desired) * percentage / 100.0 - 1e-9));
    out.tasks = std::max<int64_t>(0, ready - mustRemain);
    out.reason = "availability " + json(percentage).dump() + "% of " + std::to_string(desired) +
                 " needs " + std::to_string(mustRemain) + " ready, " + std::to_string(ready) +
                 " ready";
  }
  if (budget->rateTasks > 0 && out.tasks > 0) {
    std::vector<int64_t> inWindow;
    for (int64_t at : recentDisruptionsMs) {
      if (at > nowMs - budget->rateIntervalMs) inWindow.push_back(at);
    }
    int64_t left = budget->rateTasks - static_cast<int64_t>(inWindow.size());
    if (left <= 0) {
      // The window frees a slot when its oldest disruptions age out.
      std::sort(inWindow.begin(), inWindow.end());
      size_t expiring = static_cast<size_t>(-left);
      out.retryAtMs = inWindow[std::min(expiring, inWindow.size() - 1)] + budget->rateIntervalMs;
      out.tasks = 0;
      out.reason += "; rate " + std::to_string(budget->rateTasks) + " per " +
                    std::to_string(budget->rateIntervalMs) + " ms used up";
    } else {
      out.tasks = std::min(out.tasks, left);
    }
  }
  return out;
}

int64_t drainParallelism(const std::optional<api::DisruptionBudget>& budget, int64_t desired) {
  if (!budget) return 1;
  if (budget->maxUnhealthy) return std::max<int64_t>(1, *budget->maxUnhealthy);
  double percentage = budget->availabilityPercentage.value_or(100);
  auto mustRemain =
      static_cast<int64_t>(std::ceil(static_cast<double>(desired) * percentage / 100.0 - 1e-9));
  return std::max<int64_t>(1, desired - mustRemain);
}

std::pair<int64_t, int64_t> rolloutLimits(const api::RolloutStrategy& strategy, int64_t desired) {
  int64_t surge = strategy.maxSurge.resolve(desired, true);
  int64_t unavailable = strategy.maxUnavailable.resolve(desired, false);
  if (surge == 0 && unavailable == 0) surge = 1;
  return {surge, unavailable};
}

RolloutStep nextRolloutStep(const RolloutInput& input, int64_t nowMs) {
  RolloutStep step;
  auto [surge, unavailable] = rolloutLimits(input.strategy, input.desired);
  int64_t unfinished = 0;
  int64_t newTasks = 0;
  int64_t oldReadyCount = 0;
  std::vector<const RolloutTask*> oldNotReady;
  std::vector<const RolloutTask*> oldReady;
  for (const RolloutTask& task : input.tasks) {
    // As in Kubernetes, tasks being killed do not count against the surge: the next wave starts
    // while the old tasks stop.
    if (task.killing) continue;
    ++unfinished;
    if (task.revision == input.targetRevision) {
      ++newTasks;
      if (!task.ready) continue;
      int64_t healthyAt = task.readySinceMs + input.strategy.minHealthyMs;
      if (healthyAt <= nowMs) {
        ++step.healthyNew;
      } else if (step.nextCheckMs == 0 || healthyAt < step.nextCheckMs) {
        step.nextCheckMs = healthyAt;
      }
    } else if (task.ready) {
      ++oldReadyCount;
      oldReady.push_back(&task);
    } else {
      oldNotReady.push_back(&task);
    }
  }
  int64_t oldTasks = static_cast<int64_t>(oldReady.size() + oldNotReady.size());
  if (input.newTaskFailed) {
    step.outcome = RolloutStep::Outcome::kRollBack;
    step.reason = "a task of revision " + std::to_string(input.targetRevision) +
                  " failed before it was healthy";
    return step;
  }
  if (oldTasks == 0 && step.healthyNew >= input.desired) {
    step.outcome = RolloutStep::Outcome::kDone;
    step.reason = std::to_string(step.healthyNew) + " tasks of revision " +
                  std::to_string(input.targetRevision) + " are healthy";
    return step;
  }
  // The canary: at most `canaryTasks` new tasks until promoted, and a pause once they are healthy.
  int64_t newCap = input.desired;
  bool canaryHolds = input.strategy.canaryTasks > 0 && !input.promoted;
  if (canaryHolds) newCap = std::min(newCap, input.strategy.canaryTasks);

  int64_t room = input.desired + surge - unfinished;
  step.startNew = std::clamp<int64_t>(std::min(room, newCap - newTasks), 0, input.desired);

  // Old tasks that are not ready never count as available: stop them first.
  int64_t available = step.healthyNew + oldReadyCount;
  int64_t minAvailable = input.desired - unavailable;
  // Every old task goes eventually; availability limits the ready ones. While the canary holds,
  // old tasks make way only for the canary tasks themselves.
  int64_t excessOld = oldTasks;
  if (canaryHolds) excessOld = std::max<int64_t>(0, oldTasks + newTasks - input.desired);
  int64_t stopBudget = std::min(excessOld, oldTasks);
  for (const RolloutTask* task : oldNotReady) {
    if (stopBudget == 0) break;
    step.stopOld.push_back(task->id);
    --stopBudget;
  }
  int64_t canStopReady = std::max<int64_t>(0, available - minAvailable);
  for (const RolloutTask* task : oldReady) {
    if (stopBudget == 0 || canStopReady == 0) break;
    step.stopOld.push_back(task->id);
    --stopBudget;
    --canStopReady;
  }
  // The old tasks stopped now no longer count against the surge: their replacements start in the
  // same step rather than after the kills are through.
  int64_t roomAfterStops = room + static_cast<int64_t>(step.stopOld.size());
  step.startNew =
      std::clamp<int64_t>(std::min(roomAfterStops, newCap - newTasks), 0, input.desired);
  if (canaryHolds && step.healthyNew >= input.strategy.canaryTasks && oldTasks > 0 &&
      step.startNew == 0 && step.stopOld.empty()) {
    step.outcome = RolloutStep::Outcome::kPaused;
    step.reason =
        "canary: " + std::to_string(step.healthyNew) + " new tasks healthy, waiting for promote";
    return step;
  }
  step.reason = std::to_string(step.healthyNew) + "/" + std::to_string(input.desired) +
                " new tasks healthy, " + std::to_string(oldTasks) + " old left";
  return step;
}

AutoscaleDecision decideAutoscale(const api::Autoscaling& autoscaling, const AutoscaleInput& input,
                                  int64_t nowMs) {
  AutoscaleDecision decision;
  int64_t current = input.capacity.desired;
  decision.desired = current;
  json proposals = json::array();
  std::optional<int64_t> best;
  for (const api::ScalingPolicy& policy : autoscaling.policies) {
    auto value = input.metrics.find(policy.metric);
    if (value == input.metrics.end()) continue;
    int64_t proposal = current;
    json record = {{"metric", policy.metric}, {"value", value->second}};
    if (policy.kind == api::ScalingPolicy::Kind::kTargetTracking) {
      double ratio = value->second / policy.target;
      int64_t base = input.readyTasks > 0 ? input.readyTasks : current;
      if (std::fabs(ratio - 1.0) > kTargetTrackingTolerance && base > 0) {
        proposal = static_cast<int64_t>(std::ceil(static_cast<double>(base) * ratio - 1e-9));
      }
      record["policy"] = "targetTracking";
      record["target"] = policy.target;
    } else {
      for (const auto& s : policy.steps) {
        if ((!s.lower || value->second >= *s.lower) && (!s.upper || value->second < *s.upper)) {
          proposal = current + s.change;
          break;
        }
      }
      record["policy"] = "stepScaling";
    }
    record["proposal"] = proposal;
    proposals.push_back(std::move(record));
    best = best ? std::max(*best, proposal) : proposal;
  }
  decision.detail = {{"from", current},
                     {"min", input.capacity.min},
                     {"max", input.capacity.max},
                     {"readyTasks", input.readyTasks},
                     {"proposals", proposals}};
  if (!best) {
    decision.detail["decision"] = "no metric values";
    return decision;
  }
  int64_t wanted = std::clamp(*best, input.capacity.min, input.capacity.max);
  decision.detail["bounded"] = wanted;
  if (wanted == current) {
    decision.detail["decision"] = "unchanged";
    return decision;
  }
  if (wanted > current) {
    if (input.lastScaleOutMs > 0 && nowMs < input.lastScaleOutMs + autoscaling.scaleOutCooldownMs) {
      decision.blockedUntilMs = input.lastScaleOutMs + autoscaling.scaleOutCooldownMs;
      decision.detail["decision"] = "scale-out cooldown";
      return decision;
    }
    decision.scaleOut = true;
  } else {
    int64_t last = std::max(input.lastScaleOutMs, input.lastScaleInMs);
    if (last > 0 && nowMs < last + autoscaling.scaleInCooldownMs) {
      decision.blockedUntilMs = last + autoscaling.scaleInCooldownMs;
      decision.detail["decision"] = "scale-in cooldown";
      return decision;
    }
  }
  decision.desired = wanted;
  decision.changed = true;
  decision.detail["to"] = wanted;
  decision.detail["decision"] = decision.scaleOut ? "scale out" : "scale in";
  return decision;
}

}  // namespace skiff::controlplane
