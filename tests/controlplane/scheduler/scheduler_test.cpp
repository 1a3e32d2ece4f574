// Placement unit tests: the scheduler alone, on a hand-built cluster, with a manual clock.

#include "controlplane/scheduler/scheduler.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/clock.h"

namespace skiff::controlplane::scheduler {
namespace {

NodeSpec node(std::string id, std::map<std::string, std::string> attributes = {},
              Resources capacity = {8, 32768, 100000, 1000, 0}) {
  NodeSpec spec;
  spec.id = std::move(id);
  spec.capacity = capacity;
  spec.attributes = std::move(attributes);
  return spec;
}

JobShape job(std::string id, Resources resources = {1, 1024, 1024, 10, 0}) {
  JobShape shape;
  shape.id = std::move(id);
  shape.resources = resources;
  shape.capacityGroup = "DEFAULT";
  shape.image = "busybox:1.36";
  return shape;
}

std::vector<std::string> taskIds(const std::string& jobId, int count, int from = 0) {
  std::vector<std::string> ids;
  for (int i = from; i < from + count; ++i) ids.push_back(jobId + "-" + std::to_string(i));
  return ids;
}

class SchedulerTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  std::unique_ptr<Scheduler> scheduler_ = makeScheduler(clock_);

  IterationResult run(const JobShape& shape, int count, int from = 0) {
    return scheduler_->schedule({{&shape, taskIds(shape.id, count, from)}});
  }
  static std::map<std::string, int> perNode(const IterationResult& result) {
    std::map<std::string, int> out;
    for (const Assignment& a : result.assignments) out[a.nodeId]++;
    return out;
  }
};

TEST_F(SchedulerTest, BinPackingFillsOneNodeBeforeTheNext) {
  for (const char* id : {"n1", "n2", "n3"}) scheduler_->upsertNode(node(id));
  JobShape shape = job("j");
  auto result = run(shape, 10);
  ASSERT_EQ(result.assignments.size(), 10u);
  auto counts = perNode(result);
  EXPECT_EQ(counts.size(), 2u) << "8 cpus fit on the first node, 2 spill over";
  EXPECT_EQ(counts["n1"], 8);
  EXPECT_EQ(counts["n2"], 2);
}

// Queue order: 4 cpu-heavy tasks, 4 memory-heavy tasks, then one balanced task, on two nodes
// that hold exactly (8 cores, 8 GiB) of which the work asks for (6.5 cores, 6.5 GiB).
IterationResult runCpuMemoryMix(Scheduler& scheduler, const JobShape& cpu, const JobShape& memory,
                                const JobShape& balanced) {
  for (const char* id : {"n1", "n2"})
    scheduler.upsertNode(node(id, {}, {4, 4096, 100000, 1000, 0}));
  return scheduler.schedule(
      {{&cpu, taskIds("cpu", 4)}, {&memory, taskIds("mem", 4)}, {&balanced, taskIds("bal", 1)}});
}

TEST_F(SchedulerTest, CpuHeavyAndMemoryHeavyTasksShareNodes) {
  JobShape cpu = job("cpu", {1, 256, 16, 1, 0});
  JobShape memory = job("mem", {0.25, 1024, 16, 1, 0});
  JobShape balanced = job("bal", {1.5, 1536, 16, 1, 0});
  auto result = runCpuMemoryMix(*scheduler_, cpu, memory, balanced);
  EXPECT_EQ(result.assignments.size(), 9u);
  EXPECT_EQ(result.unplaced, 0);
  auto counts = perNode(result);
  EXPECT_EQ(counts.size(), 2u);

  // Job by job, the cpu-heavy tasks take all of n1's cores and the memory-heavy ones all of n2's
  // memory: the balanced task finds no node although a third of the room is free.
  SchedulerConfig config;
  config.complementOrder = false;
  auto jobByJob = makeScheduler(clock_, config);
  result = runCpuMemoryMix(*jobByJob, cpu, memory, balanced);
  EXPECT_EQ(result.assignments.size(), 8u);
  EXPECT_EQ(result.unplaced, 1);
}

TEST_F(SchedulerTest, CriticalServicesSpreadOverNodes) {
  for (const char* id : {"n1", "n2", "n3"}) scheduler_->upsertNode(node(id));
  JobShape shape = job("svc");
  shape.tier = api::Tier::kCritical;
  shape.service = true;
  auto counts = perNode(run(shape, 3));
  EXPECT_EQ(counts.size(), 3u);
}

TEST_F(SchedulerTest, EachResourceRulesOutNodesAndPendingTasksStay) {
  scheduler_->upsertNode(node("small", {}, {2, 1024, 2048, 100, 0}));
  JobShape gpuJob = job("gpu", {1, 128, 128, 10, 1});
  auto result = run(gpuJob, 1);
  EXPECT_TRUE(result.assignments.empty());
  EXPECT_EQ(result.unplaced, 1);
  auto why = scheduler_->explain(gpuJob, "gpu-0");
  EXPECT_EQ(why["feasibleNodes"], 0);
  EXPECT_EQ(why["groups"][0]["reasons"]["gpu"], 1);

  JobShape memoryJob = job("mem", {1, 4096, 128, 10, 0});
  why = scheduler_->explain(memoryJob, "mem-0");
  EXPECT_EQ(why["groups"][0]["reasons"]["memoryMB"], 1);
  EXPECT_NE(why["summary"].get<std::string>().find("memoryMB rules out 1 nodes"),
            std::string::npos);
}

TEST_F(SchedulerTest, AddressesLeftOnTheNodeLimitTasksAndMissingMeansUnlimited) {
  scheduler_->upsertNode(node("limited", {{"addresses", "2"}}));
  JobShape shape = job("j", {0.1, 16, 16, 1, 0});
  auto counts = perNode(run(shape, 3));
  EXPECT_EQ(counts["limited"], 2);
  scheduler_->upsertNode(node("unlimited"));
  counts = perNode(run(shape, 50, 3));
  EXPECT_EQ(counts["unlimited"], 50);
}

TEST_F(SchedulerTest, UniqueHostPutsOneTaskPerNode) {
  for (const char* id : {"n1", "n2", "n3"}) scheduler_->upsertNode(node(id));
  JobShape shape = job("j");
  shape.hardConstraints = {{"uniqueHost", "true"}};
  auto result = run(shape, 4);
  EXPECT_EQ(perNode(result).size(), 3u);
  EXPECT_EQ(result.unplaced, 1);
  auto why = scheduler_->explain(shape, "j-3");
  EXPECT_EQ(why["groups"][0]["reasons"]["uniqueHost"], 3);
}

TEST_F(SchedulerTest, ExclusiveHostKeepsOtherJobsAway) {
  scheduler_->upsertNode(node("n1"));
  scheduler_->upsertNode(node("n2"));
  JobShape other = job("other");
  ASSERT_EQ(run(other, 1).assignments[0].nodeId, "n1");
  JobShape exclusive = job("excl");
  exclusive.hardConstraints = {{"exclusiveHost", "true"}};
  auto result = run(exclusive, 2);
  EXPECT_EQ(perNode(result)["n2"], 2) << "n1 runs another job";
  result = run(other, 1, 1);
  EXPECT_EQ(result.assignments[0].nodeId, "n1") << "n2 holds an exclusive task";
  scheduler_->removeTask("other-0");
  scheduler_->removeTask("other-1");
  result = run(other, 1, 2);
  EXPECT_EQ(result.assignments[0].nodeId, "n1");
}

TEST_F(SchedulerTest, ZoneBalanceSpreadsEvenlyOverThreeZones) {
  for (int i = 0; i < 9; ++i) {
    scheduler_->upsertNode(node("n" + std::to_string(i), {{"zone", "z" + std::to_string(i % 3)}}));
  }
  JobShape shape = job("j");
  shape.hardConstraints = {{"zoneBalance", "true"}};
  auto result = run(shape, 9);
  ASSERT_EQ(result.assignments.size(), 9u);
  std::map<std::string, int> zones;
  for (const Assignment& a : result.assignments) {
    zones["z" + std::to_string(std::stoi(a.nodeId.substr(1)) % 3)]++;
  }
  EXPECT_EQ(zones, (std::map<std::string, int>{{"z0", 3}, {"z1", 3}, {"z2", 3}}));
}

TEST_F(SchedulerTest, AttributeConstraintsChooseMatchingNodes) {
  scheduler_->upsertNode(node("a", {{"zone", "z1"}, {"machineType", "m5"}, {"cores", "16"}}));
  scheduler_->upsertNode(node("b", {{"zone", "z2"}, {"machineType", "r5"}, {"cores", "64"}}));
  scheduler_->upsertNode(node("c", {{"zone", "z2"}, {"machineGroup", "gpu-pool"}}));
  JobShape zone = job("zone");
  zone.hardConstraints = {{"availabilityZone", "z2"}, {"machineType", "r5"}};
  EXPECT_EQ(run(zone, 1).assignments.at(0).nodeId, "b");
  JobShape group = job("group");
  group.hardConstraints = {{"machineGroup", "gpu-pool"}};
  EXPECT_EQ(run(group, 1).assignments.at(0).nodeId, "c");
  JobShape expression = job("expr");
  expression.hardConstraints = {{"attribute.cores", ">=32"}};
  EXPECT_EQ(run(expression, 1).assignments.at(0).nodeId, "b");
  JobShape notIn = job("notin");
  notIn.hardConstraints = {{"attribute.machineType", "notin(m5,r5)"}};
  EXPECT_EQ(run(notIn, 1).assignments.at(0).nodeId, "c");
  JobShape none = job("none");
  none.hardConstraints = {{"attribute.kernel", "exists"}};
  auto result = run(none, 1);
  EXPECT_TRUE(result.assignments.empty());
  auto why = scheduler_->explain(none, "none-0");
  std::set<std::string> groups;
  for (const auto& g : why["groups"]) {
    groups.insert(g["group"].get<std::string>());
    EXPECT_EQ(g["reasons"]["attribute.kernel"], g["nodes"]);
  }
  EXPECT_EQ(groups, (std::set<std::string>{"gpu-pool", "m5", "r5"}));
}

TEST_F(SchedulerTest, SoftConstraintsAndCachedImagesRankNodes) {
  scheduler_->upsertNode(node("a", {{"zone", "z1"}}));
  scheduler_->upsertNode(node("b", {{"zone", "z2"}}));
  JobShape soft = job("soft");
  soft.softConstraints = {{"zone", "z2"}};
  EXPECT_EQ(run(soft, 1).assignments.at(0).nodeId, "b");
  // Both nodes now ran busybox; a new image goes to the node that has it once one does.
  JobShape other = job("other");
  other.image = "nginx:1";
  scheduler_->addTask(other, "seed", "a");
  JobShape nginx = job("nginx");
  nginx.image = "nginx:1";
  EXPECT_EQ(run(nginx, 1).assignments.at(0).nodeId, "a");
}

TEST_F(SchedulerTest, CriticalIsPlacedBeforeFlexInOneIteration) {
  scheduler_->upsertNode(node("n1", {}, {2, 4096, 4096, 100, 0}));
  JobShape flex = job("flex");
  JobShape critical = job("crit");
  critical.tier = api::Tier::kCritical;
  auto flexIds = taskIds("flex", 2);
  auto criticalIds = taskIds("crit", 2);
  auto result = scheduler_->schedule({{&flex, flexIds}, {&critical, criticalIds}});
  ASSERT_EQ(result.assignments.size(), 2u);
  EXPECT_EQ(result.assignments[0].jobId, "crit");
  EXPECT_EQ(result.assignments[1].jobId, "crit");
  EXPECT_EQ(result.unplaced, 2);
}

TEST_F(SchedulerTest, GangIsPlacedWholeOrNotAtAllWithoutHoldingResources) {
  scheduler_->upsertNode(node("n1", {}, {4, 8192, 8192, 100, 0}));
  JobShape gang = job("gang");
  gang.gang = true;
  auto result = run(gang, 5);
  EXPECT_TRUE(result.assignments.empty());
  EXPECT_EQ(result.unplaced, 5);
  EXPECT_EQ(scheduler_->allocated("n1")->cpu, 0) << "no partial hold";
  JobShape small = job("small");
  EXPECT_EQ(run(small, 4).assignments.size(), 4u) << "the room stayed free for others";
  for (const std::string& id : taskIds("small", 4)) scheduler_->removeTask(id);
  scheduler_->upsertNode(node("n2", {}, {4, 8192, 8192, 100, 0}));
  EXPECT_EQ(run(gang, 5).assignments.size(), 5u);
}

TEST_F(SchedulerTest, ReservedCriticalWorkPreemptsBorrowingFlexWork) {
  scheduler_->upsertNode(node("n1", {}, {4, 8192, 8192, 100, 0}));
  CapacityGroupSpec group;
  group.name = "payments";
  group.critical = {{1, 1024, 0, 0, 0}, 2};  // Disk and network are not reserved.
  scheduler_->upsertCapacityGroup(group);

  JobShape flex = job("flex");  // Group DEFAULT: no reservation, so all of it borrows.
  ASSERT_EQ(run(flex, 4).assignments.size(), 4u);
  auto usage = scheduler_->capacityUsage();
  ASSERT_FALSE(usage.empty());

  JobShape critical = job("crit");
  critical.tier = api::Tier::kCritical;
  critical.capacityGroup = "payments";
  auto result = run(critical, 2);
  EXPECT_TRUE(result.assignments.empty());
  ASSERT_EQ(result.evictions.size(), 2u) << "one victim per reserved task";
  std::set<std::string> victims;
  for (const Eviction& e : result.evictions) victims.insert(e.taskId);
  EXPECT_EQ(victims, (std::set<std::string>{"flex-3", "flex-2"})) << "newest first";
  EXPECT_EQ(scheduler_->explain(critical, "crit-0")["nomination"]["nodeId"], "n1");

  // Until the victims stop, nothing more is evicted and flex work cannot take the room.
  result = run(critical, 2);
  EXPECT_TRUE(result.evictions.empty());
  for (const std::string& id : victims) scheduler_->removeTask(id);
  JobShape flex2 = job("flex2");
  EXPECT_TRUE(run(flex2, 1).assignments.empty()) << "the freed room is nominated";
  result = run(critical, 2);
  EXPECT_EQ(result.assignments.size(), 2u);
  EXPECT_TRUE(result.evictions.empty());
}

TEST_F(SchedulerTest, WorkBeyondItsReservationAndFlexInsideItsOwnReservationAreNotEvicted) {
  scheduler_->upsertNode(node("n1", {}, {2, 8192, 8192, 100, 0}));
  CapacityGroupSpec batch;
  batch.name = "batch";
  batch.flex = {{1, 1024, 1024, 10, 0}, 2};
  scheduler_->upsertCapacityGroup(batch);
  CapacityGroupSpec web;
  web.name = "web";
  web.critical = {{1, 1024, 1024, 10, 0}, 1};
  scheduler_->upsertCapacityGroup(web);
  JobShape flex = job("flex");
  flex.capacityGroup = "batch";
  ASSERT_EQ(run(flex, 2).assignments.size(), 2u);
  JobShape critical = job("crit");
  critical.tier = api::Tier::kCritical;
  critical.capacityGroup = "web";
  auto result = run(critical, 1);
  EXPECT_TRUE(result.evictions.empty()) << "flex inside its own reservation is guaranteed too";
  auto usage = scheduler_->capacityUsage();
  bool sawBatch = false;
  for (const CapacityUsage& u : usage) {
    if (u.group == "batch" && u.tier == api::Tier::kFlex) {
      sawBatch = true;
      EXPECT_EQ(u.used.cpu, 2);
      EXPECT_EQ(u.borrowed.cpu, 0);
    }
  }
  EXPECT_TRUE(sawBatch);
}

TEST_F(SchedulerTest, NominationLapsesAfterTheTimeout) {
  scheduler_->upsertNode(node("n1", {}, {1, 8192, 8192, 100, 0}));
  CapacityGroupSpec group;
  group.name = "g";
  group.critical = {{1, 1024, 1024, 10, 0}, 1};
  scheduler_->upsertCapacityGroup(group);
  JobShape flex = job("flex");
  ASSERT_EQ(run(flex, 1).assignments.size(), 1u);
  JobShape critical = job("crit");
  critical.tier = api::Tier::kCritical;
  critical.capacityGroup = "g";
  ASSERT_EQ(run(critical, 1).evictions.size(), 1u);
  clock_.advanceMs(SchedulerConfig{}.nominationTimeoutMs);
  // The victim never stopped (still recorded); after the timeout the claim is made afresh.
  auto result = run(critical, 1);
  EXPECT_TRUE(result.evictions.empty()) << "the only flex task is already being evicted";
  EXPECT_FALSE(scheduler_->explain(critical, "crit-0").contains("nomination"));
}

TEST_F(SchedulerTest, UnschedulableNodesAreSkippedAndExplained) {
  scheduler_->upsertNode(node("n1"));
  scheduler_->setSchedulable("n1", false);
  JobShape shape = job("j");
  EXPECT_TRUE(run(shape, 1).assignments.empty());
  EXPECT_EQ(scheduler_->explain(shape, "j-0")["groups"][0]["reasons"]["notSchedulable"], 1);
  scheduler_->setSchedulable("n1", true);
  EXPECT_EQ(run(shape, 1).assignments.size(), 1u);
}

TEST_F(SchedulerTest, RemovedTasksGiveTheirResourcesBack) {
  scheduler_->upsertNode(node("n1", {}, {1, 8192, 8192, 100, 0}));
  JobShape shape = job("j");
  ASSERT_EQ(run(shape, 1).assignments.size(), 1u);
  EXPECT_TRUE(run(shape, 1, 1).assignments.empty());
  scheduler_->removeTask("j-0");
  EXPECT_EQ(scheduler_->allocated("n1")->cpu, 0);
  EXPECT_EQ(run(shape, 1, 1).assignments.size(), 1u);
}

// ---- Preemption within disruption budgets ----

// A service's disruption budget as the job manager applies it: at most `maxUnhealthy` tasks
// evicted and not yet replaced, and at most `rate` evictions per `intervalMs`. An eviction counts
// from the iteration that returns it.
class BudgetedAllowances final : public DisruptionAllowances {
 public:
  struct Budget {
    int64_t maxUnhealthy = 0;
    int64_t rate = 0;
    int64_t intervalMs = 0;
  };

  explicit BudgetedAllowances(const Clock& clock) : clock_(clock) {}

  void set(const std::string& jobId, Budget budget) { budgets_[jobId] = budget; }

  std::optional<int64_t> allowance(const std::string& jobId) override {
    auto it = budgets_.find(jobId);
    if (it == budgets_.end()) return std::nullopt;
    const Budget& budget = it->second;
    int64_t inWindow = 0;
    for (int64_t at : evictedAtMs_[jobId]) inWindow += at > clock_.nowMs() - budget.intervalMs;
    auto unhealthy = static_cast<int64_t>(unhealthy_[jobId].size());
    return std::max<int64_t>(0, std::min(budget.maxUnhealthy - unhealthy, budget.rate - inWindow));
  }

  // Counts the iteration's evictions; fails the test when one took more of a job than allowed.
  void apply(const IterationResult& result) {
    std::map<std::string, int64_t> perJob;
    for (const Eviction& eviction : result.evictions) perJob[eviction.jobId]++;
    for (const auto& [jobId, count] : perJob) {
      if (std::optional<int64_t> allowed = allowance(jobId)) {
        EXPECT_LE(count, *allowed) << "job " << jobId;
      }
    }
    for (const Eviction& eviction : result.evictions) {
      unhealthy_[eviction.jobId].insert(eviction.taskId);
      evictedAtMs_[eviction.jobId].push_back(clock_.nowMs());
    }
  }

  // The victim stopped and its replacement is healthy elsewhere.
  void replaced(const std::string& jobId, const std::string& taskId) {
    unhealthy_[jobId].erase(taskId);
  }

 private:
  const Clock& clock_;
  std::map<std::string, Budget> budgets_;
  std::map<std::string, std::set<std::string>> unhealthy_;
  std::map<std::string, std::vector<int64_t>> evictedAtMs_;
};

class Preemption : public SchedulerTest {
 protected:
  // One node `n1` with `cpus` cores and the group `payments` reserving `reserved` one-core tasks
  // of critical work.
  void cluster(double cpus, int64_t reserved) {
    scheduler_->upsertNode(node("n1", {}, {cpus, 65536, 100000, 1000, 0}));
    CapacityGroupSpec group;
    group.name = "payments";
    group.critical = {{1, 1024, 0, 0, 0}, reserved};
    scheduler_->upsertCapacityGroup(group);
  }
  static JobShape critical(std::string id, bool gang = false) {
    JobShape shape = job(std::move(id));
    shape.tier = api::Tier::kCritical;
    shape.capacityGroup = "payments";
    shape.gang = gang;
    return shape;
  }
  static JobShape service(std::string id) {
    JobShape shape = job(std::move(id));
    shape.service = true;
    return shape;
  }
  IterationResult run(const JobShape& shape, int count, DisruptionAllowances& allowances) {
    return scheduler_->schedule({{&shape, taskIds(shape.id, count)}}, &allowances);
  }
  static std::set<std::string> victims(const IterationResult& result) {
    std::set<std::string> out;
    for (const Eviction& e : result.evictions) out.insert(e.taskId);
    return out;
  }
};

TEST_F(Preemption, NeverEvictsMoreServiceTasksThanTheirDisruptionBudgetAllows) {
  cluster(8, 4);
  JobShape svc = service("svc");
  ASSERT_EQ(SchedulerTest::run(svc, 8).assignments.size(), 8u);
  BudgetedAllowances budgets(clock_);
  budgets.set("svc", {.maxUnhealthy = 2, .rate = 3, .intervalMs = 60'000});
  JobShape crit = critical("crit");

  // maxUnhealthy 2: two victims although four reserved tasks wait.
  IterationResult result = run(crit, 4, budgets);
  budgets.apply(result);
  EXPECT_TRUE(result.assignments.empty());
  ASSERT_EQ(result.evictions.size(), 2u);
  EXPECT_EQ(result.unplaced, 4);
  std::set<std::string> first = victims(result);

  // While they are stopping, successive iterations take no more.
  for (int i = 0; i < 3; ++i) {
    clock_.advanceMs(1'000);
    result = run(crit, 4, budgets);
    budgets.apply(result);
    EXPECT_TRUE(result.evictions.empty()) << "iteration " << i;
  }

  // They stop and are replaced: two reserved tasks start, and the rate (3 per minute, 2 used)
  // allows one more victim.
  for (const std::string& id : first) {
    scheduler_->removeTask(id);
    budgets.replaced("svc", id);
  }
  result = run(crit, 4, budgets);
  budgets.apply(result);
  EXPECT_EQ(result.assignments.size(), 2u);
  ASSERT_EQ(result.evictions.size(), 1u);
  std::string third = result.evictions[0].taskId;
  EXPECT_FALSE(first.contains(third));
  scheduler_->removeTask(third);
  budgets.replaced("svc", third);
  result = run(crit, 4, budgets);
  budgets.apply(result);
  EXPECT_EQ(result.assignments.size(), 1u);
  EXPECT_TRUE(result.evictions.empty()) << "3 per minute are used up";
  EXPECT_EQ(result.unplaced, 1);

  // A minute after the first evictions the rate allows more; the last reserved task gets its
  // victim.
  clock_.advanceMs(57'000);
  result = run(crit, 4, budgets);
  budgets.apply(result);
  ASSERT_EQ(result.evictions.size(), 1u);
  EXPECT_EQ(result.evictions[0].jobId, "svc");
}

TEST_F(Preemption, SkipsJobsWithNoAllowanceAndEvictsOthers) {
  cluster(4, 3);
  JobShape batch = job("batch");
  ASSERT_EQ(SchedulerTest::run(batch, 2).assignments.size(), 2u);
  JobShape svc = service("svc");  // Newer, so it would be evicted first.
  ASSERT_EQ(SchedulerTest::run(svc, 2).assignments.size(), 2u);
  FixedDisruptionAllowances allowances({{"svc", 0}});
  JobShape crit = critical("crit");

  IterationResult result = run(crit, 3, allowances);
  EXPECT_EQ(victims(result), (std::set<std::string>{"batch-0", "batch-1"}))
      << "the service has no allowance; the batch job's tasks go instead";
  EXPECT_EQ(result.unplaced, 3);
  EXPECT_FALSE(scheduler_->explain(crit, "crit-2").contains("nomination"))
      << "no victims are left within the budgets: the third task waits";

  // Later iterations look again; once the service may lose one task, it does.
  result = run(crit, 3, allowances);
  EXPECT_TRUE(result.evictions.empty());
  allowances.set("svc", 1);
  result = run(crit, 3, allowances);
  ASSERT_EQ(result.evictions.size(), 1u);
  EXPECT_EQ(result.evictions[0].jobId, "svc");
  EXPECT_EQ(result.evictions[0].forTaskId, "crit-2");
}

TEST_F(Preemption, GangOfReservedWorkPreemptsOnlyWhenTheWholeGangFits) {
  cluster(4, 3);
  JobShape flex = job("flex");
  ASSERT_EQ(SchedulerTest::run(flex, 3).assignments.size(), 3u);  // One core stays free.
  JobShape gang = critical("gang", /*gang=*/true);

  // Two victims are needed; the budget allows one: nothing is evicted, nothing is held.
  FixedDisruptionAllowances allowances({{"flex", 1}});
  IterationResult result = run(gang, 3, allowances);
  EXPECT_TRUE(result.evictions.empty());
  EXPECT_TRUE(result.assignments.empty());
  EXPECT_EQ(result.unplaced, 3);
  EXPECT_EQ(scheduler_->allocated("n1")->cpu, 3);
  for (const std::string& id : taskIds("gang", 3)) {
    EXPECT_FALSE(scheduler_->explain(gang, id).contains("nomination")) << id;
  }

  // A gang beyond its group's reservation does not preempt at all.
  allowances.set("flex", 3);
  JobShape big = critical("big", /*gang=*/true);
  EXPECT_TRUE(run(big, 4, allowances).evictions.empty());

  // With room for two victims, the whole gang claims the node: two evictions, and the free core
  // is held for the gang too.
  result = run(gang, 3, allowances);
  EXPECT_TRUE(result.assignments.empty());
  ASSERT_EQ(result.evictions.size(), 2u);
  std::set<std::string> chosen = victims(result);
  for (const std::string& id : taskIds("gang", 3)) {
    EXPECT_EQ(scheduler_->explain(gang, id)["nomination"]["nodeId"], "n1") << id;
  }
  JobShape other = job("other");
  EXPECT_TRUE(SchedulerTest::run(other, 1).assignments.empty()) << "the free core is the gang's";

  // The gang starts whole once both victims stopped, not before.
  scheduler_->removeTask(*chosen.begin());
  result = run(gang, 3, allowances);
  EXPECT_TRUE(result.assignments.empty());
  EXPECT_TRUE(result.evictions.empty());
  scheduler_->removeTask(*chosen.rbegin());
  result = run(gang, 3, allowances);
  EXPECT_EQ(result.assignments.size(), 3u);
  EXPECT_TRUE(result.evictions.empty());
  EXPECT_EQ(scheduler_->allocated("n1")->cpu, 4);
}

}  // namespace
}  // namespace skiff::controlplane::scheduler
