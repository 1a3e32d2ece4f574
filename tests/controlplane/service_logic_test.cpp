// Service decisions as pure functions: disruption budgets, rollout steps, rollback triggers and
// autoscaling with cooldowns, driven by a manual clock.

#include "controlplane/service_logic.h"

#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"

namespace skiff::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

api::DisruptionBudget maxUnhealthy(int64_t n) {
  api::DisruptionBudget budget;
  budget.maxUnhealthy = n;
  return budget;
}

TEST(DisruptionBudget, NoBudgetAllowsEveryTask) {
  auto allowance = disruptionAllowance(std::nullopt, 5, 5, {}, 0);
  EXPECT_EQ(allowance.tasks, 5);
}

TEST(DisruptionBudget, MaxUnhealthyCountsTasksAlreadyDown) {
  EXPECT_EQ(disruptionAllowance(maxUnhealthy(1), 6, 6, {}, 0).tasks, 1);
  EXPECT_EQ(disruptionAllowance(maxUnhealthy(1), 6, 5, {}, 0).tasks, 0);
  EXPECT_EQ(disruptionAllowance(maxUnhealthy(2), 6, 5, {}, 0).tasks, 1);
  EXPECT_EQ(disruptionAllowance(maxUnhealthy(0), 6, 6, {}, 0).tasks, 0);
}

TEST(DisruptionBudget, AvailabilityPercentageRoundsTheReadyTasksThatMustRemainUp) {
  api::DisruptionBudget budget;
  budget.availabilityPercentage = 80;
  // 80% of 6 is 4.8: 5 must stay ready.
  EXPECT_EQ(disruptionAllowance(budget, 6, 6, {}, 0).tasks, 1);
  EXPECT_EQ(disruptionAllowance(budget, 6, 5, {}, 0).tasks, 0);
  budget.availabilityPercentage = 50;
  EXPECT_EQ(disruptionAllowance(budget, 10, 10, {}, 0).tasks, 5);
}

TEST(DisruptionBudget, DrainMovesAsManyTasksAtOnceAsTheBudgetLetsBeUnhealthy) {
  EXPECT_EQ(drainParallelism(std::nullopt, 6), 1);
  EXPECT_EQ(drainParallelism(maxUnhealthy(0), 6), 1) << "at least one, replacement first";
  EXPECT_EQ(drainParallelism(maxUnhealthy(3), 6), 3);
  api::DisruptionBudget budget;
  budget.availabilityPercentage = 80;
  EXPECT_EQ(drainParallelism(budget, 10), 2);
  EXPECT_EQ(drainParallelism(budget, 6), 1) << "5 of 6 must stay";
  budget.availabilityPercentage = 100;
  EXPECT_EQ(drainParallelism(budget, 6), 1);
}

TEST(DisruptionBudget, RateLimitsDisruptionsPerIntervalAndSaysWhenTheNextIsAllowed) {
  ManualClock clock(1'000'000);
  api::DisruptionBudget budget = maxUnhealthy(3);
  budget.rateTasks = 2;
  budget.rateIntervalMs = 10'000;
  std::vector<int64_t> history{clock.nowMs() - 4'000};
  EXPECT_EQ(disruptionAllowance(budget, 6, 6, history, clock.nowMs()).tasks, 1);
  history.push_back(clock.nowMs() - 1'000);
  auto blocked = disruptionAllowance(budget, 6, 6, history, clock.nowMs());
  EXPECT_EQ(blocked.tasks, 0);
  EXPECT_EQ(blocked.retryAtMs, clock.nowMs() + 6'000);
  clock.advanceMs(6'000);
  EXPECT_EQ(disruptionAllowance(budget, 6, 6, history, clock.nowMs()).tasks, 1);
}

// A little service simulator: tasks become ready `readyAfterMs` after they start and finish
// `stopAfterMs` after a kill. Each tick applies nextRolloutStep and checks the invariants.
struct SimTask {
  RolloutTask task;
  int64_t startedMs = 0;
  int64_t killedMs = 0;
};

struct RolloutSim {
  int64_t desired;
  api::RolloutStrategy strategy;
  int64_t readyAfterMs = 1'000;
  int64_t stopAfterMs = 500;
  std::vector<SimTask> tasks;
  int64_t nextId = 0;
  ManualClock clock{1'000'000};
  int64_t maxUnfinished = 0;
  int64_t minAvailable = 1'000'000;

  void add(int64_t revision, bool ready) {
    SimTask t;
    t.task.id = "t" + std::to_string(nextId++);
    t.task.revision = revision;
    t.task.ready = ready;
    t.task.readySinceMs = ready ? clock.nowMs() - 1'000'000 : 0;
    t.startedMs = clock.nowMs();
    tasks.push_back(t);
  }

  RolloutInput input(int64_t target) {
    // Time moves the tasks: readiness comes, killed tasks go.
    std::erase_if(tasks, [&](const SimTask& t) {
      return t.task.killing && clock.nowMs() >= t.killedMs + stopAfterMs;
    });
    for (auto& t : tasks) {
      if (!t.task.ready && !t.task.killing && clock.nowMs() >= t.startedMs + readyAfterMs) {
        t.task.ready = true;
        t.task.readySinceMs = t.startedMs + readyAfterMs;
      }
    }
    RolloutInput in;
    in.desired = desired;
    in.targetRevision = target;
    in.strategy = strategy;
    for (const auto& t : tasks) in.tasks.push_back(t.task);
    return in;
  }

  void apply(const RolloutStep& step, int64_t target) {
    for (const auto& id : step.stopOld) {
      for (auto& t : tasks) {
        if (t.task.id == id) {
          t.task.killing = true;
          t.task.ready = false;
          t.killedMs = clock.nowMs();
        }
      }
    }
    for (int64_t i = 0; i < step.startNew; ++i) add(target, false);
    int64_t unfinished =
        std::count_if(tasks.begin(), tasks.end(), [](const SimTask& t) { return !t.task.killing; });
    int64_t available = 0;
    for (const auto& t : tasks) {
      if (!t.task.ready) continue;
      bool oldRevision = t.task.revision != target;
      if (oldRevision || clock.nowMs() >= t.task.readySinceMs + strategy.minHealthyMs) {
        ++available;
      }
    }
    maxUnfinished = std::max(maxUnfinished, unfinished);
    minAvailable = std::min(minAvailable, available);
  }

  // Runs the rollout to its end (or `limit` ticks of 100 ms); returns the last step.
  RolloutStep run(int64_t target, bool promoted = false, int limit = 10'000) {
    RolloutStep step;
    for (int i = 0; i < limit; ++i) {
      auto in = input(target);
      in.promoted = promoted;
      step = nextRolloutStep(in, clock.nowMs());
      if (step.outcome != RolloutStep::Outcome::kProgressing) return step;
      apply(step, target);
      clock.advanceMs(100);
    }
    return step;
  }
};

TEST(RolloutStep, LimitsResolvePercentagesAndNeverBothZero) {
  api::RolloutStrategy strategy;  // 25% surge (up), 0% unavailable.
  EXPECT_EQ(rolloutLimits(strategy, 6), (std::pair<int64_t, int64_t>{2, 0}));
  strategy.maxSurge = {0, false};
  strategy.maxUnavailable = {10, true};
  EXPECT_EQ(rolloutLimits(strategy, 5), (std::pair<int64_t, int64_t>{1, 0}));
}

TEST(RolloutStep, SurgeOnlyRolloutKeepsEveryTaskAvailableAndStaysWithinTheSurge) {
  RolloutSim sim{.desired = 6, .strategy = {}};
  sim.strategy.maxSurge = {2, false};
  sim.strategy.maxUnavailable = {0, false};
  for (int i = 0; i < 6; ++i) sim.add(1, true);
  auto step = sim.run(2);
  EXPECT_EQ(step.outcome, RolloutStep::Outcome::kDone);
  EXPECT_EQ(sim.maxUnfinished, 8);
  EXPECT_EQ(sim.minAvailable, 6);
  for (const auto& t : sim.tasks) {
    if (!t.task.killing) {
      EXPECT_EQ(t.task.revision, 2);
    }
  }
}

TEST(RolloutStep, UnavailableOnlyRolloutNeverExceedsDesiredNorDropsBelowTheLimit) {
  RolloutSim sim{.desired = 6, .strategy = {}};
  sim.strategy.maxSurge = {0, false};
  sim.strategy.maxUnavailable = {1, false};
  for (int i = 0; i < 6; ++i) sim.add(1, true);
  EXPECT_EQ(sim.run(2).outcome, RolloutStep::Outcome::kDone);
  EXPECT_EQ(sim.maxUnfinished, 6);
  EXPECT_EQ(sim.minAvailable, 5);
}

TEST(RolloutStep, NewTasksCountOnlyAfterMinHealthyTime) {
  RolloutSim sim{.desired = 2, .strategy = {}};
  sim.strategy.maxSurge = {1, false};
  sim.strategy.minHealthyMs = 3'000;
  for (int i = 0; i < 2; ++i) sim.add(1, true);
  auto first = nextRolloutStep(sim.input(2), sim.clock.nowMs());
  EXPECT_EQ(first.startNew, 1);
  sim.apply(first, 2);
  sim.clock.advanceMs(1'000);  // Ready now, not yet healthy.
  auto waiting = nextRolloutStep(sim.input(2), sim.clock.nowMs());
  EXPECT_THAT(waiting.stopOld, IsEmpty());
  EXPECT_EQ(waiting.nextCheckMs, sim.clock.nowMs() + 3'000);
  sim.clock.advanceMs(3'000);
  auto moving = nextRolloutStep(sim.input(2), sim.clock.nowMs());
  EXPECT_EQ(moving.healthyNew, 1);
  EXPECT_EQ(moving.stopOld.size(), 1u);
}

TEST(RolloutStep, OldTasksThatAreNotReadyAreStoppedFirst) {
  RolloutInput in;
  in.desired = 3;
  in.targetRevision = 2;
  in.strategy.maxSurge = {0, false};
  in.strategy.maxUnavailable = {1, false};
  in.tasks = {{"a", 1, true, 0, false}, {"b", 1, false, 0, false}, {"c", 1, true, 0, false}};
  // b is down already: stopping it costs nothing, and it uses up the one unavailable task.
  EXPECT_THAT(nextRolloutStep(in, 10'000).stopOld, ElementsAre("b"));
  // With room for two, one ready task may go too.
  in.strategy.maxUnavailable = {2, false};
  EXPECT_THAT(nextRolloutStep(in, 10'000).stopOld, ElementsAre("b", "a"));
}

TEST(RolloutStep, AFailedNewTaskRollsBack) {
  RolloutInput in;
  in.desired = 2;
  in.targetRevision = 2;
  in.tasks = {{"a", 1, true, 0, false}, {"b", 2, false, 0, false}};
  in.newTaskFailed = true;
  auto step = nextRolloutStep(in, 0);
  EXPECT_EQ(step.outcome, RolloutStep::Outcome::kRollBack);
  EXPECT_EQ(step.startNew, 0);
  EXPECT_THAT(step.stopOld, IsEmpty());
}

TEST(RolloutStep, CanaryPausesAfterItsTasksAreHealthyUntilPromoted) {
  RolloutSim sim{.desired = 4, .strategy = {}};
  sim.strategy.maxSurge = {1, false};
  sim.strategy.canaryTasks = 1;
  for (int i = 0; i < 4; ++i) sim.add(1, true);
  auto paused = sim.run(2);
  ASSERT_EQ(paused.outcome, RolloutStep::Outcome::kPaused);
  int64_t newTasks = std::count_if(sim.tasks.begin(), sim.tasks.end(), [](const SimTask& t) {
    return t.task.revision == 2 && !t.task.killing;
  });
  EXPECT_EQ(newTasks, 1);
  EXPECT_EQ(sim.minAvailable, 4);
  EXPECT_EQ(sim.run(2, /*promoted=*/true).outcome, RolloutStep::Outcome::kDone);
  EXPECT_EQ(sim.minAvailable, 4);
}

TEST(RolloutStep, RollbackIsARolloutToTheOldRevision) {
  // Half-way through a rollout to 2, rolling back targets 1 again with the same limits.
  RolloutSim sim{.desired = 4, .strategy = {}};
  sim.strategy.maxSurge = {1, false};
  for (int i = 0; i < 2; ++i) sim.add(1, true);
  for (int i = 0; i < 2; ++i) sim.add(2, true);
  EXPECT_EQ(sim.run(1).outcome, RolloutStep::Outcome::kDone);
  EXPECT_EQ(sim.minAvailable, 4);
  for (const auto& t : sim.tasks) {
    if (!t.task.killing) {
      EXPECT_EQ(t.task.revision, 1);
    }
  }
}

api::Autoscaling cpuTarget(double target) {
  api::Autoscaling autoscaling;
  api::ScalingPolicy policy;
  policy.metric = "cpu";
  policy.target = target;
  autoscaling.policies.push_back(policy);
  autoscaling.scaleOutCooldownMs = 10'000;
  autoscaling.scaleInCooldownMs = 60'000;
  return autoscaling;
}

TEST(Autoscaler, TargetTrackingScalesProportionallyWithinBounds) {
  AutoscaleInput in{.capacity = {1, 2, 10}, .readyTasks = 2, .metrics = {{"cpu", 90}}};
  auto decision = decideAutoscale(cpuTarget(30), in, 1'000'000);
  EXPECT_TRUE(decision.changed);
  EXPECT_TRUE(decision.scaleOut);
  EXPECT_EQ(decision.desired, 6);
  EXPECT_EQ(decision.detail["proposals"][0]["value"], 90.0);
  EXPECT_EQ(decision.detail["decision"], "scale out");
  in.metrics["cpu"] = 900;
  EXPECT_EQ(decideAutoscale(cpuTarget(30), in, 1'000'000).desired, 10);
  in.metrics["cpu"] = 1;
  EXPECT_EQ(decideAutoscale(cpuTarget(30), in, 1'000'000).desired, 1);
}

TEST(Autoscaler, TargetTrackingIgnoresValuesWithinTheTolerance) {
  AutoscaleInput in{.capacity = {1, 4, 10}, .readyTasks = 4, .metrics = {{"cpu", 53}}};
  auto decision = decideAutoscale(cpuTarget(50), in, 1'000'000);
  EXPECT_FALSE(decision.changed);
  EXPECT_EQ(decision.detail["decision"], "unchanged");
}

TEST(Autoscaler, CooldownsHoldScalingBackAndSayUntilWhen) {
  ManualClock clock;
  AutoscaleInput in{.capacity = {1, 2, 10}, .readyTasks = 2, .metrics = {{"cpu", 90}}};
  in.lastScaleOutMs = clock.nowMs() - 4'000;
  auto held = decideAutoscale(cpuTarget(30), in, clock.nowMs());
  EXPECT_FALSE(held.changed);
  EXPECT_EQ(held.blockedUntilMs, clock.nowMs() + 6'000);
  EXPECT_EQ(held.detail["decision"], "scale-out cooldown");
  clock.advanceMs(6'000);
  EXPECT_TRUE(decideAutoscale(cpuTarget(30), in, clock.nowMs()).changed);

  // Scale-in waits for its own cooldown after any scaling.
  in.metrics["cpu"] = 5;
  auto inHeld = decideAutoscale(cpuTarget(30), in, clock.nowMs());
  EXPECT_FALSE(inHeld.changed);
  EXPECT_EQ(inHeld.blockedUntilMs, in.lastScaleOutMs + 60'000);
  clock.setMs(in.lastScaleOutMs + 60'000);
  auto scaledIn = decideAutoscale(cpuTarget(30), in, clock.nowMs());
  EXPECT_TRUE(scaledIn.changed);
  EXPECT_FALSE(scaledIn.scaleOut);
  EXPECT_EQ(scaledIn.desired, 1);
}

TEST(Autoscaler, StepScalingPicksTheStepTheValueFallsInAndTheLargestProposalWins) {
  api::Autoscaling autoscaling = cpuTarget(50);
  api::ScalingPolicy steps;
  steps.kind = api::ScalingPolicy::Kind::kStepScaling;
  steps.metric = "queueDepth";
  steps.steps = {{std::nullopt, 10.0, -1}, {100.0, 500.0, 2}, {500.0, std::nullopt, 5}};
  autoscaling.policies.push_back(steps);
  AutoscaleInput in{
      .capacity = {1, 4, 20}, .readyTasks = 4, .metrics = {{"cpu", 50}, {"queueDepth", 700}}};
  EXPECT_EQ(decideAutoscale(autoscaling, in, 1'000'000).desired, 9);
  in.metrics["queueDepth"] = 100;
  EXPECT_EQ(decideAutoscale(autoscaling, in, 1'000'000).desired, 6);
  in.metrics["queueDepth"] = 50;  // Between steps: no step applies, cpu keeps 4.
  EXPECT_FALSE(decideAutoscale(autoscaling, in, 1'000'000).changed);
  in.metrics["queueDepth"] = 3;
  in.metrics["cpu"] = 10;  // cpu asks for 1, the queue for 3: 3 wins.
  EXPECT_EQ(decideAutoscale(autoscaling, in, 1'000'000).desired, 3);
}

TEST(Autoscaler, PoliciesWithoutMetricValuesProposeNothing) {
  AutoscaleInput in{.capacity = {1, 2, 10}, .readyTasks = 2};
  auto decision = decideAutoscale(cpuTarget(30), in, 1'000'000);
  EXPECT_FALSE(decision.changed);
  EXPECT_EQ(decision.detail["decision"], "no metric values");
}

}  // namespace
}  // namespace skiff::controlplane
