#pragma once

// The cluster scheduler: decides which node runs each pending task. It is separate from job
// management: the job manager tells it what exists (nodes, capacity groups, placed tasks) and
// asks it, once per iteration, to place a batch of pending tasks; it answers with assignments
// and evictions and never touches jobs or the store itself.
//
// The model follows Fenzo (Titus's scheduler): hard constraint filters (`ConstraintFilter`)
// remove nodes, fitness policies (`FitnessPolicy`) rank the rest in [0, 1], and the search for a
// task stops at the first node whose fitness is good enough or after a bounded number of
// feasible nodes. Tiers order the queue (critical before flex); capacity groups reserve a task
// shape x count per tier; flex work that borrows beyond its group's reservation is evicted when
// reserved work needs the room, never more tasks of a job than its disruption budget allows
// (`DisruptionAllowances`). Gang jobs are placed whole in one iteration or not at all; a gang of
// reserved work preempts only when evictions make room for all of its tasks.
//
// Threading: not thread-safe; the job manager calls it from its strand.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"
#include "common/clock.h"

namespace skiff::controlplane::scheduler {

using api::Resources;

// The node attribute that holds how many task addresses a node has in all (filled by the
// networking layer). A node without it has no address limit.
inline constexpr std::string_view kAddressesAttribute = "addresses";

struct NodeSpec {
  std::string id;
  Resources capacity;
  // Attributes (agent-reported, overlaid with operator labels), as strings.
  std::map<std::string, std::string> attributes;
  // Ready and not draining: new tasks may go there.
  bool schedulable = true;
};

// What the scheduler needs to know of a job; immutable for the job's life. The job manager
// builds it once per job and passes the same object on every call for that job.
struct JobShape {
  std::string id;
  Resources resources;
  api::Tier tier = api::Tier::kFlex;
  std::string capacityGroup;
  std::string image;  // The image reference, for the cached-image bonus.
  bool service = false;
  bool gang = false;
  std::map<std::string, std::string> hardConstraints;
  std::map<std::string, std::string> softConstraints;

  static JobShape of(const std::string& jobId, const api::JobDescriptor& descriptor);
};

// A capacity group's reservation: `count` tasks of `shape` in each tier.
struct Reservation {
  Resources shape{0, 0, 0, 0, 0};
  int64_t count = 0;
  Resources total() const;
};

struct CapacityGroupSpec {
  std::string name;
  std::string applicationName;  // Informational: the application the group is for.
  Reservation critical;
  Reservation flex;
};

struct PendingJob {
  const JobShape* job = nullptr;
  std::vector<std::string> taskIds;  // Tasks of the job that want a node now.
};

struct Assignment {
  std::string jobId;
  std::string taskId;
  std::string nodeId;
};

struct Eviction {
  std::string jobId;
  std::string taskId;
  std::string nodeId;
  std::string forTaskId;  // The reserved task that needs the room.
};

struct IterationResult {
  std::vector<Assignment> assignments;
  std::vector<Eviction> evictions;
  int64_t unplaced = 0;        // Tasks left pending.
  int64_t nodesEvaluated = 0;  // (task, node) pairs looked at.
};

// How many more tasks of a job may be evicted now: its disruption budget (service jobs). The job
// manager answers from its jobs' state; the scheduler stays free of jobs and the store. During an
// iteration the scheduler asks at most once per job, only for jobs it considers taking victims
// from, and counts the answer down as it picks them. An answer must already count the evictions
// the scheduler returned earlier (as disruptions, and their tasks as no longer healthy), even when
// they are not applied yet.
class DisruptionAllowances {
 public:
  virtual ~DisruptionAllowances() = default;
  // Tasks of `jobId` that may be evicted now; std::nullopt: no limit.
  virtual std::optional<int64_t> allowance(const std::string& jobId) = 0;
};

// Fixed allowances by job id (tests, tools); jobs not listed have no limit.
class FixedDisruptionAllowances final : public DisruptionAllowances {
 public:
  explicit FixedDisruptionAllowances(std::map<std::string, int64_t> allowances = {})
      : allowances_(std::move(allowances)) {}
  std::optional<int64_t> allowance(const std::string& jobId) override {
    auto it = allowances_.find(jobId);
    if (it == allowances_.end()) return std::nullopt;
    return it->second;
  }
  void set(const std::string& jobId, int64_t tasks) { allowances_[jobId] = tasks; }

 private:
  std::map<std::string, int64_t> allowances_;
};

struct SchedulerConfig {
  // The search for one task stops at a node with at least this fitness...
  double goodEnoughFitness = 0.9;
  // ...or once this many feasible nodes were scored.
  int64_t maxFeasibleNodesScored = 8;
  // Weights of the fitness components (normalized by their sum).
  double packingWeight = 0.7;  // Bin packing, or spreading for critical-tier services.
  double imageWeight = 0.15;   // The node already ran the image.
  double softWeight = 0.15;    // Share of soft constraints the node meets.
  // Bin packing: penalty per unit of gap between a node's cpu and memory shares.
  double imbalanceWeight = 0.5;
  // Within a tier, an iteration tries jobs with larger tasks first (first-fit decreasing);
  // off: queue order.
  bool largestFirst = false;
  // Within a tier, an iteration interleaves the tasks of non-gang packing jobs: the next task
  // comes from the job whose task shape best complements the room left on the node that took the
  // last task (`ComplementFitness`), or, when no shape fits there, from the job with the largest
  // tasks; the node is still chosen by the usual search. Cpu-heavy and memory-heavy tasks then
  // share nodes instead of one exhausting a node's cores and the other its memory. Off: job by
  // job in queue order (gang jobs and spreading services always go job by job, before the
  // interleaved ones of their tier).
  bool complementOrder = true;
  // A preemptor's claim on the room its evictions free lapses after this long.
  int64_t nominationTimeoutMs = 120'000;
};

// Per capacity group and tier: reservation, usage, and usage beyond the reservation.
struct CapacityUsage {
  std::string group;
  api::Tier tier = api::Tier::kFlex;
  Resources reserved{0, 0, 0, 0, 0};
  Resources used{0, 0, 0, 0, 0};
  Resources borrowed{0, 0, 0, 0, 0};
  int64_t tasks = 0;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // ---- The cluster model ----
  // Adds or replaces a node (its placed tasks stay).
  virtual void upsertNode(const NodeSpec& node) = 0;
  virtual void setSchedulable(const std::string& nodeId, bool schedulable) = 0;
  virtual void upsertCapacityGroup(const CapacityGroupSpec& group) = 0;
  virtual void removeCapacityGroup(const std::string& name) = 0;
  // Records a task holding resources on a node (recovery, or a placement made elsewhere).
  // Ignored when the node is unknown or the task is already recorded.
  virtual void addTask(const JobShape& job, const std::string& taskId,
                       const std::string& nodeId) = 0;
  // Releases a task's resources (it finished, or its launch was abandoned). Unknown ids are
  // ignored.
  virtual void removeTask(const std::string& taskId) = 0;
  // Forgets what is cached for a finished job (its tasks must be removed already).
  virtual void forgetJob(const std::string& jobId) = 0;

  // ---- Scheduling ----
  // One iteration over `pending` (in queue order; critical jobs go before flex jobs, otherwise
  // the order is kept). Placed tasks are recorded as holding their resources at once. Victims of
  // preemption stay within `allowances` (null: no limits); a reserved task that finds no
  // victims within them stays pending and tries again in a later iteration.
  virtual IterationResult schedule(const std::vector<PendingJob>& pending,
                                   DisruptionAllowances* allowances) = 0;
  IterationResult schedule(const std::vector<PendingJob>& pending) {
    return schedule(pending, nullptr);
  }

  // ---- Reading ----
  // Why `taskId` of `job` has no node: per node group, how many nodes each resource or
  // constraint rules out. See docs/api.md (GET /v1/tasks/{id}/why).
  virtual nlohmann::json explain(const JobShape& job, const std::string& taskId) const = 0;
  virtual std::optional<Resources> allocated(const std::string& nodeId) const = 0;
  virtual std::vector<CapacityUsage> capacityUsage() const = 0;
};

std::unique_ptr<Scheduler> makeScheduler(const Clock& clock, SchedulerConfig config = {});

// Resource arithmetic shared with the job manager.
bool fits(const Resources& capacity, const Resources& used, const Resources& request);
// Inline: the placement search calls it for every node it looks at.
inline void addResources(Resources& total, const Resources& delta) {
  total.cpu += delta.cpu;
  total.memoryMB += delta.memoryMB;
  total.diskMB += delta.diskMB;
  total.networkMbps += delta.networkMbps;
  total.gpu += delta.gpu;
}
void subtractResources(Resources& total, const Resources& delta);

}  // namespace skiff::controlplane::scheduler
