#pragma once

// The scheduler's implementation (internal to src/controlplane/scheduler): the state behind
// `makeScheduler` and the helpers its parts share. The parts:
//   scheduler.cpp   the cluster model (nodes, tasks, jobs, groups, nominations) and iterations;
//   placement.cpp   the node search: resource and constraint checks, tiers, interleaving, gangs;
//   preemption.cpp  reservations, borrowing, disruption allowances, victims and nominations;
//   explain.cpp     `explain`, `allocated` and `capacityUsage`;
//   resources.cpp   resource arithmetic.
//
// Not thread-safe: the job manager calls the scheduler from its strand.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/scheduler/constraints.h"
#include "controlplane/scheduler/fitness.h"
#include "controlplane/scheduler/model.h"
#include "controlplane/scheduler/scheduler.h"

namespace skiff::controlplane::scheduler::detail {

using nlohmann::json;

// Floating point cores are compared with a small tolerance so 0.1 + 0.2 fits in 0.3.
inline constexpr double kCpuEpsilon = 1e-9;
inline constexpr size_t kMaxImagesPerNode = 32;
inline constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// Critical is tier 0, flex tier 1.
inline size_t tierIndex(api::Tier tier) {
  return tier == api::Tier::kCritical ? 0 : 1;
}

// Why a node cannot take a task.
enum class Reason : uint8_t {
  kOk,
  kNotSchedulable,
  kExclusiveOther,  // The node runs another job's exclusive task.
  kFilter,          // A hard constraint (see `filter`).
  kCpu,
  kMemory,
  kDisk,
  kNetwork,
  kGpu,
  kAddresses,
};

struct Check {
  Reason reason = Reason::kOk;
  const ConstraintFilter* filter = nullptr;
  Monotonicity monotonicity = Monotonicity::kClass;
  bool ok() const { return reason == Reason::kOk; }
};

struct TaskEntry {
  std::string id;
  uint32_t node = 0;
  int64_t job = 0;
  Resources resources;
  size_t tier = 1;
  int group = 0;
  int64_t seq = 0;  // Placement order, newest highest.
  bool evicting = false;
  bool live = false;
};

struct GroupState {
  std::string name;
  bool defined = false;
  CapacityGroupSpec spec;
  Resources used[2] = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  Resources evicting[2] = {{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  int64_t tasks[2] = {0, 0};

  const Reservation& reservation(size_t tier) const {
    return tier == 0 ? spec.critical : spec.flex;
  }
};

struct Nomination {
  uint32_t node = 0;
  int64_t job = 0;
  Resources resources;
  int64_t sinceMs = 0;
};

// The node where evicting `victims` (task slots) makes room for one task.
struct PreemptionPlan {
  uint32_t node = 0;
  std::vector<uint32_t> victims;
};

// True when `used` stays within `limit` in every dimension.
inline bool within(const Resources& used, const Resources& limit) {
  return used.cpu <= limit.cpu + kCpuEpsilon && used.memoryMB <= limit.memoryMB &&
         used.diskMB <= limit.diskMB && used.networkMbps <= limit.networkMbps &&
         used.gpu <= limit.gpu;
}
// True when `used` goes beyond `reservation`. Only the dimensions the reservation's shape sets
// (above zero) are compared; with no reservation at all, any use goes beyond it.
bool exceeds(const Resources& used, const Reservation& reservation);
Resources zero();
// Equal for equal requests; names a request in cursor and shape tables.
std::string resourceKey(const Resources& r);
json resourcesJson(const Resources& r);

class SchedulerImpl final : public Scheduler {
 public:
  SchedulerImpl(const Clock& clock, SchedulerConfig config);

  // ---- Model (scheduler.cpp) ----
  void upsertNode(const NodeSpec& spec) override;
  void setSchedulable(const std::string& nodeId, bool schedulable) override;
  void upsertCapacityGroup(const CapacityGroupSpec& spec) override;
  void removeCapacityGroup(const std::string& name) override;
  void addTask(const JobShape& shape, const std::string& taskId,
               const std::string& nodeId) override;
  void removeTask(const std::string& taskId) override;
  void forgetJob(const std::string& jobId) override;

  // ---- Scheduling (scheduler.cpp, placement.cpp) ----

  using Scheduler::schedule;
  IterationResult schedule(const std::vector<PendingJob>& pending,
                           DisruptionAllowances* allowances) override;

  // ---- Reading (explain.cpp) ----
  json explain(const JobShape& shape, const std::string& taskId) const override;
  std::optional<Resources> allocated(const std::string& nodeId) const override;
  std::vector<CapacityUsage> capacityUsage() const override;

 private:
  // Model upkeep (scheduler.cpp).
  static int intern(std::unordered_map<std::string, int>& table, const std::string& value);
  int groupOf(const std::string& name);
  std::unique_ptr<JobState> makeJob(const JobShape& shape, int64_t index) const;
  JobState& jobOf(const JobShape& shape);
  void record(JobState& job, uint32_t nodeSlot, const std::string& taskId);
  void dropNomination(const std::string& taskId);
  void expireNominations();
  void nominate(const std::string& taskId, uint32_t node, int64_t job, const Resources& resources,
                int64_t sinceMs);
  ClusterView computeView() const;
  void refreshView();

  // Placement (placement.cpp).
  // The resource check: `own` is the task's own nomination on this node, if any.
  // Defined here so that the search, which calls it for every node it looks at, inlines it.
  static Reason resourceReason(const NodeState& node, const Resources& request,
                               const Resources* own) {
    Resources used = node.used;
    addResources(used, node.nominated);
    if (own != nullptr) subtractResources(used, *own);
    const Resources& capacity = node.spec.capacity;
    if (used.cpu + request.cpu > capacity.cpu + kCpuEpsilon) return Reason::kCpu;
    if (used.memoryMB + request.memoryMB > capacity.memoryMB) return Reason::kMemory;
    if (used.diskMB + request.diskMB > capacity.diskMB) return Reason::kDisk;
    if (used.networkMbps + request.networkMbps > capacity.networkMbps) return Reason::kNetwork;
    if (used.gpu + request.gpu > capacity.gpu) return Reason::kGpu;
    if (node.addressLimit >= 0 && node.taskCount + 1 > node.addressLimit) {
      return Reason::kAddresses;
    }
    return Reason::kOk;
  }

  // The first reason the node cannot take the job's task, cheapest checks first.
  // Defined here so that the search, which calls it for every node it looks at, inlines it.
  Check check(const JobState& job, uint32_t slot, const ClusterView& view, const Resources* own,
              bool resources = true) const {
    const NodeState& node = nodes_[slot];
    if (!node.present || !node.spec.schedulable) return {Reason::kNotSchedulable};
    if (resources) {
      if (Reason reason = resourceReason(node, job.shape.resources, own); reason != Reason::kOk) {
        return {reason};
      }
    }
    if (node.exclusiveJob >= 0 && node.exclusiveJob != job.index) return {Reason::kExclusiveOther};
    for (const auto& filter : job.hard) {
      if (!filter->accepts(job, slot, node, view)) {
        return {Reason::kFilter, filter.get(), filter->monotonicity()};
      }
    }
    return {};
  }
  using OrderIt = std::vector<const PendingJob*>::const_iterator;

  // One tier of an iteration: gang jobs and spreading services job by job, then the other jobs
  // interleaved by shape (`SchedulerConfig::complementOrder`) or job by job.
  void placeTier(OrderIt begin, OrderIt end, IterationResult& result);

  // Places `taskIds[from..]` of `job` in order. After the first task that finds no node, the
  // rest only try their nominated nodes, and preemption is tried until it finds no victims.
  void placeTasks(JobState& job, const std::vector<std::string>& taskIds, size_t from,
                  IterationResult& result);

  // The jobs' tasks, interleaved: jobs with the same request form a shape; each step takes the
  // next task of a job of the shape that best complements the node that took the previous task
  // (the first job in queue order, among the first few, whose constraints accept that node). A
  // job whose task finds no node leaves the rotation and its other tasks go through
  // `placeTasks` (nominations, preemption).
  void placeInterleaved(
      const std::vector<std::pair<JobState*, const std::vector<std::string>*>>& jobs,
      IterationResult& result);

  // The best node for one task of `job`, or -1. Starts after the nodes that earlier tasks of the
  // same class or job already ruled out in this iteration.
  int64_t findNode(JobState& job, const std::string& taskId, int64_t& evaluated);
  void resetCursors();

  // Places a gang whole, or none of it. When some of its tasks find no node and the whole gang
  // is within its group's reservation, it preempts: every such task needs victims (or waits for
  // those an earlier iteration chose), else nothing is evicted. A gang waiting for victims holds
  // nominations for all its tasks, also those that fit now, so it starts whole later.
  void placeGang(JobState& job, const std::vector<std::string>& taskIds, IterationResult& result);

  // Preemption (preemption.cpp).
  // True when `tasks` more tasks of `job` stay within its group's reservation for its tier.
  bool withinReservationOf(const JobState& job, int64_t tasks = 1) const;

  // A flex group uses more than its flex reservation, not counting tasks already being evicted.
  bool borrowing(const GroupState& group, const Resources& pendingEvictions) const;

  // How many more tasks of job `index` may be evicted in this iteration.
  int64_t allowanceLeft(int64_t index);

  // Finds the node where evicting the fewest borrowing flex tasks makes room for one task of
  // `job`, taking no more tasks of a job than its disruption allowance has left. Changes nothing.
  std::optional<PreemptionPlan> planPreemption(const JobState& job);

  // Marks the plan's victims evicting (into `evictions`), counts them against their jobs'
  // allowances and nominates the node for `taskId`.
  void applyPreemption(const JobState& job, const std::string& taskId, const PreemptionPlan& plan,
                       std::vector<Eviction>& evictions);

  // Takes back an applied plan that was not used (a gang that cannot be whole).
  void undoPreemption(const std::string& taskId, const PreemptionPlan& plan);

  // Finds victims for `taskId` and marks them evicting, or (true) it already waits for some.
  // False when no node would do.
  bool preempt(JobState& job, const std::string& taskId, IterationResult& result);

  // Explaining (explain.cpp).
  std::vector<std::string> allReasons(const JobState& job, uint32_t slot, const ClusterView& view,
                                      const Nomination* nomination) const;

  const Clock& clock_;
  SchedulerConfig config_;
  WeightedFitness packing_;
  WeightedFitness spreading_;
  ComplementFitness complement_;
  std::vector<NodeState> nodes_;
  std::unordered_map<std::string, uint32_t> nodeIndex_;
  std::unordered_map<std::string, int> zones_;
  std::unordered_map<std::string, int> images_;
  std::unordered_map<std::string, int64_t> jobIndex_;
  std::unordered_map<int64_t, std::unique_ptr<JobState>> jobs_;
  int64_t nextJob_ = 0;
  std::vector<TaskEntry> tasks_;
  std::vector<uint32_t> freeSlots_;
  std::unordered_map<std::string, uint32_t> taskIndex_;
  std::vector<GroupState> groups_;
  std::unordered_map<std::string, int> groupIndex_;
  std::unordered_map<std::string, Nomination> nominations_;
  std::unordered_map<std::string, size_t> classCursors_;
  std::vector<JobState*> touched_;
  ClusterView view_;
  bool viewDirty_ = true;
  int64_t seq_ = 0;

  // The current iteration's disruption allowances, and what is left of them per job index.
  DisruptionAllowances* allowances_ = nullptr;
  std::unordered_map<int64_t, int64_t> allowanceLeft_;
};

}  // namespace skiff::controlplane::scheduler::detail
