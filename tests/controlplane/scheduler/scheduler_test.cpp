// Placement unit tests: the scheduler alone, on a hand-built cluster, with a manual clock.

#include "controlplane/scheduler/scheduler.h"

#include <map>
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

}  // namespace
}  // namespace skiff::controlplane::scheduler
