#include "controlplane/scheduler/scheduler.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <numeric>

#include "controlplane/scheduler/constraints.h"
#include "controlplane/scheduler/fitness.h"
#include "controlplane/scheduler/model.h"

namespace skiff::controlplane::scheduler {
namespace {

using nlohmann::json;

// Floating point cores are compared with a small tolerance so 0.1 + 0.2 fits in 0.3.
constexpr double kCpuEpsilon = 1e-9;
constexpr size_t kMaxImagesPerNode = 32;

size_t tierIndex(api::Tier tier) {
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

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// True when `used` stays within `limit` in every dimension.
bool within(const Resources& used, const Resources& limit) {
  return used.cpu <= limit.cpu + kCpuEpsilon && used.memoryMB <= limit.memoryMB &&
         used.diskMB <= limit.diskMB && used.networkMbps <= limit.networkMbps &&
         used.gpu <= limit.gpu;
}

// True when `used` goes beyond `reservation`. Only the dimensions the reservation's shape sets
// (above zero) are compared; with no reservation at all, any use goes beyond it.
bool exceeds(const Resources& used, const Reservation& reservation) {
  bool any = used.cpu > kCpuEpsilon || used.memoryMB > 0 || used.diskMB > 0 ||
             used.networkMbps > 0 || used.gpu > 0;
  if (reservation.count <= 0) return any;
  Resources total = reservation.total();
  const Resources& shape = reservation.shape;
  return (shape.cpu > 0 && used.cpu > total.cpu + kCpuEpsilon) ||
         (shape.memoryMB > 0 && used.memoryMB > total.memoryMB) ||
         (shape.diskMB > 0 && used.diskMB > total.diskMB) ||
         (shape.networkMbps > 0 && used.networkMbps > total.networkMbps) ||
         (shape.gpu > 0 && used.gpu > total.gpu);
}

Resources zero() {
  return {0, 0, 0, 0, 0};
}

std::string resourceKey(const Resources& r) {
  return std::to_string(r.cpu) + "/" + std::to_string(r.memoryMB) + "/" + std::to_string(r.diskMB) +
         "/" + std::to_string(r.networkMbps) + "/" + std::to_string(r.gpu);
}

json resourcesJson(const Resources& r) {
  return {{"cpu", r.cpu},
          {"memoryMB", r.memoryMB},
          {"diskMB", r.diskMB},
          {"networkMbps", r.networkMbps},
          {"gpu", r.gpu}};
}

class SchedulerImpl final : public Scheduler {
 public:
  SchedulerImpl(const Clock& clock, SchedulerConfig config) : clock_(clock), config_(config) {
    packing_.add(std::make_unique<BinPackingFitness>(config_.imbalanceWeight),
                 config_.packingWeight);
    packing_.add(std::make_unique<CachedImageFitness>(), config_.imageWeight);
    packing_.add(std::make_unique<SoftConstraintFitness>(), config_.softWeight);
    spreading_.add(std::make_unique<SpreadingFitness>(), config_.packingWeight);
    spreading_.add(std::make_unique<CachedImageFitness>(), config_.imageWeight);
    spreading_.add(std::make_unique<SoftConstraintFitness>(), config_.softWeight);
    view_.nodes = &nodes_;
  }

  // ---- Model ----

  void upsertNode(const NodeSpec& spec) override {
    auto [it, inserted] = nodeIndex_.try_emplace(spec.id, static_cast<uint32_t>(nodes_.size()));
    if (inserted) nodes_.emplace_back();
    NodeState& node = nodes_[it->second];
    node.spec = spec;
    node.present = true;
    node.zone = -1;
    if (auto zone = spec.attributes.find("zone"); zone != spec.attributes.end()) {
      node.zone = intern(zones_, zone->second);
    }
    node.group = "default";
    for (const char* key : {"machineGroup", "machineType"}) {
      if (auto group = spec.attributes.find(key); group != spec.attributes.end()) {
        node.group = group->second;
        break;
      }
    }
    node.addressLimit = -1;
    if (auto addresses = spec.attributes.find(std::string(kAddressesAttribute));
        addresses != spec.attributes.end()) {
      int64_t limit = 0;
      const std::string& text = addresses->second;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
      if (ec == std::errc() && end == text.data() + text.size() && limit >= 0) {
        node.addressLimit = limit;
      }
    }
    viewDirty_ = true;
  }

  void setSchedulable(const std::string& nodeId, bool schedulable) override {
    auto it = nodeIndex_.find(nodeId);
    if (it == nodeIndex_.end()) return;
    nodes_[it->second].spec.schedulable = schedulable;
    viewDirty_ = true;
  }

  void upsertCapacityGroup(const CapacityGroupSpec& spec) override {
    GroupState& group = groups_[static_cast<size_t>(groupOf(spec.name))];
    group.spec = spec;
    group.defined = true;
  }

  void removeCapacityGroup(const std::string& name) override {
    auto it = groupIndex_.find(name);
    if (it == groupIndex_.end()) return;
    GroupState& group = groups_[static_cast<size_t>(it->second)];
    group.defined = false;
    group.spec = CapacityGroupSpec{};
    group.spec.name = name;
  }

  void addTask(const JobShape& shape, const std::string& taskId,
               const std::string& nodeId) override {
    if (taskIndex_.contains(taskId)) return;
    auto node = nodeIndex_.find(nodeId);
    if (node == nodeIndex_.end()) return;
    record(jobOf(shape), node->second, taskId);
  }

  void removeTask(const std::string& taskId) override {
    auto it = taskIndex_.find(taskId);
    if (it == taskIndex_.end()) {
      dropNomination(taskId);
      return;
    }
    uint32_t slot = it->second;
    taskIndex_.erase(it);
    TaskEntry& entry = tasks_[slot];
    NodeState& node = nodes_[entry.node];
    subtractResources(node.used, entry.resources);
    node.taskCount--;
    if (auto pos = std::find(node.tasks.begin(), node.tasks.end(), slot); pos != node.tasks.end()) {
      *pos = node.tasks.back();
      node.tasks.pop_back();
    }
    GroupState& group = groups_[static_cast<size_t>(entry.group)];
    subtractResources(group.used[entry.tier], entry.resources);
    if (entry.evicting) subtractResources(group.evicting[entry.tier], entry.resources);
    group.tasks[entry.tier]--;
    if (auto job = jobs_.find(entry.job); job != jobs_.end()) {
      JobState& state = *job->second;
      auto count = state.perNode.find(entry.node);
      if (count != state.perNode.end() && --count->second == 0) {
        state.perNode.erase(count);
        node.distinctJobs--;
        if (node.exclusiveJob == state.index) node.exclusiveJob = -1;
      }
      if (node.zone >= 0 && static_cast<size_t>(node.zone) < state.perZone.size()) {
        state.perZone[static_cast<size_t>(node.zone)]--;
      }
      state.placed--;
    }
    entry = TaskEntry{};
    freeSlots_.push_back(slot);
  }

  void forgetJob(const std::string& jobId) override {
    auto it = jobIndex_.find(jobId);
    if (it == jobIndex_.end()) return;
    auto job = jobs_.find(it->second);
    if (job != jobs_.end() && job->second->placed > 0) return;
    for (auto nomination = nominations_.begin(); nomination != nominations_.end();) {
      if (nomination->second.job == it->second) {
        subtractResources(nodes_[nomination->second.node].nominated, nomination->second.resources);
        nomination = nominations_.erase(nomination);
      } else {
        ++nomination;
      }
    }
    if (job != jobs_.end()) jobs_.erase(job);
    jobIndex_.erase(it);
  }

  // ---- Scheduling ----

  using Scheduler::schedule;

  IterationResult schedule(const std::vector<PendingJob>& pending,
                           DisruptionAllowances* allowances) override {
    IterationResult result;
    allowances_ = allowances;
    allowanceLeft_.clear();
    refreshView();
    expireNominations();
    for (auto& [key, cursor] : classCursors_) cursor = 0;
    classCursors_.clear();
    touched_.clear();

    // Critical before flex; queue order otherwise.
    std::vector<const PendingJob*> order;
    order.reserve(pending.size());
    for (const PendingJob& job : pending) {
      if (job.job != nullptr && job.job->tier == api::Tier::kCritical) order.push_back(&job);
    }
    size_t criticalCount = order.size();
    for (const PendingJob& job : pending) {
      if (job.job != nullptr && job.job->tier != api::Tier::kCritical) order.push_back(&job);
    }
    if (config_.largestFirst) {
      // Within a tier, larger tasks first (first-fit decreasing packs tighter); every job of
      // the batch is tried in this iteration either way.
      auto larger = [](const PendingJob* a, const PendingJob* b) {
        const Resources& x = a->job->resources;
        const Resources& y = b->job->resources;
        return x.cpu / 32 + x.memoryMB / 131072.0 > y.cpu / 32 + y.memoryMB / 131072.0;
      };
      std::stable_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(criticalCount),
                       larger);
      std::stable_sort(order.begin() + static_cast<ptrdiff_t>(criticalCount), order.end(), larger);
    }

    placeTier(order.begin(), order.begin() + static_cast<ptrdiff_t>(criticalCount), result);
    placeTier(order.begin() + static_cast<ptrdiff_t>(criticalCount), order.end(), result);
    allowances_ = nullptr;
    return result;
  }

  // ---- Reading ----

  json explain(const JobShape& shape, const std::string& taskId) const override {
    std::unique_ptr<JobState> temporary;
    const JobState* job = nullptr;
    if (auto it = jobIndex_.find(shape.id); it != jobIndex_.end()) {
      job = jobs_.at(it->second).get();
    } else {
      temporary = makeJob(shape, -1);
      job = temporary.get();
    }
    ClusterView view = computeView();
    const Nomination* nomination = nullptr;
    if (auto it = nominations_.find(taskId); it != nominations_.end()) nomination = &it->second;

    struct GroupCount {
      int64_t nodes = 0;
      int64_t feasible = 0;
      std::map<std::string, int64_t> reasons;
    };
    std::map<std::string, GroupCount> groups;
    std::map<std::string, int64_t> totals;
    int64_t feasible = 0;
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
      const NodeState& node = nodes_[i];
      if (!node.present) continue;
      GroupCount& group = groups[node.group];
      group.nodes++;
      std::vector<std::string> reasons = allReasons(*job, i, view, nomination);
      if (reasons.empty()) {
        group.feasible++;
        feasible++;
      }
      for (const std::string& reason : reasons) {
        group.reasons[reason]++;
        totals[reason]++;
      }
    }
    json out = {{"taskId", taskId},
                {"jobId", shape.id},
                {"tier", api::tierName(shape.tier)},
                {"capacityGroup", shape.capacityGroup},
                {"request", resourcesJson(shape.resources)},
                {"withinReservation", withinReservationOf(*job)},
                {"gang", shape.gang},
                {"nodes", std::accumulate(groups.begin(), groups.end(), int64_t{0},
                                          [](int64_t sum, const auto& entry) {
                                            return sum + entry.second.nodes;
                                          })},
                {"feasibleNodes", feasible}};
    json groupList = json::array();
    for (const auto& [name, group] : groups) {
      groupList.push_back({{"group", name},
                           {"nodes", group.nodes},
                           {"feasible", group.feasible},
                           {"reasons", group.reasons}});
    }
    out["groups"] = std::move(groupList);
    if (nomination != nullptr) {
      int64_t evicting = 0;
      for (uint32_t slot : nodes_[nomination->node].tasks) evicting += tasks_[slot].evicting;
      out["nomination"] = {{"nodeId", nodes_[nomination->node].spec.id},
                           {"evictingTasks", evicting},
                           {"sinceMs", nomination->sinceMs}};
    }
    std::string summary;
    if (nodes_.empty()) {
      summary = "no nodes are registered";
    } else if (nomination != nullptr) {
      summary = "waiting for evicted tasks to stop on node " + nodes_[nomination->node].spec.id;
    } else if (feasible > 0) {
      summary = std::to_string(feasible) + " nodes have room; the next iteration places it" +
                (shape.gang ? std::string(" if the whole gang fits") : std::string());
    } else {
      // The reasons ruling out the most nodes first.
      std::vector<std::pair<int64_t, std::string>> ranked;
      for (const auto& [reason, count] : totals) ranked.emplace_back(count, reason);
      std::sort(ranked.begin(), ranked.end(), std::greater<>());
      summary = "no node fits:";
      for (size_t i = 0; i < ranked.size() && i < 4; ++i) {
        summary += (i == 0 ? " " : ", ") + ranked[i].second + " rules out " +
                   std::to_string(ranked[i].first) + " nodes";
      }
    }
    out["summary"] = summary;
    return out;
  }

  std::optional<Resources> allocated(const std::string& nodeId) const override {
    auto it = nodeIndex_.find(nodeId);
    if (it == nodeIndex_.end()) return std::nullopt;
    return nodes_[it->second].used;
  }

  std::vector<CapacityUsage> capacityUsage() const override {
    std::vector<CapacityUsage> out;
    for (const GroupState& group : groups_) {
      for (size_t tier = 0; tier < 2; ++tier) {
        const Reservation& reservation = group.reservation(tier);
        if (!group.defined && group.tasks[tier] == 0) continue;
        if (group.defined && reservation.count == 0 && group.tasks[tier] == 0) continue;
        CapacityUsage usage;
        usage.group = group.name;
        usage.tier = tier == 0 ? api::Tier::kCritical : api::Tier::kFlex;
        usage.reserved = group.defined ? reservation.total() : zero();
        usage.used = group.used[tier];
        usage.tasks = group.tasks[tier];
        const Resources& u = usage.used;
        const Resources& r = usage.reserved;
        if (!group.defined || reservation.count <= 0) {
          usage.borrowed = u;
        } else {
          // Dimensions the shape leaves at zero are not reserved, so not counted as borrowed.
          const Resources& shape = reservation.shape;
          usage.borrowed = {
              shape.cpu > 0 ? std::max(0.0, u.cpu - r.cpu) : 0.0,
              shape.memoryMB > 0 ? std::max<int64_t>(0, u.memoryMB - r.memoryMB) : 0,
              shape.diskMB > 0 ? std::max<int64_t>(0, u.diskMB - r.diskMB) : 0,
              shape.networkMbps > 0 ? std::max<int64_t>(0, u.networkMbps - r.networkMbps) : 0,
              shape.gpu > 0 ? std::max<int64_t>(0, u.gpu - r.gpu) : 0};
        }
        out.push_back(usage);
      }
    }
    std::sort(out.begin(), out.end(), [](const CapacityUsage& a, const CapacityUsage& b) {
      return a.group != b.group ? a.group < b.group : a.tier < b.tier;
    });
    return out;
  }

 private:
  static int intern(std::unordered_map<std::string, int>& table, const std::string& value) {
    auto [it, inserted] = table.try_emplace(value, static_cast<int>(table.size()));
    return it->second;
  }

  int groupOf(const std::string& name) {
    auto [it, inserted] = groupIndex_.try_emplace(name, static_cast<int>(groups_.size()));
    if (inserted) {
      groups_.emplace_back();
      groups_.back().name = name;
      groups_.back().spec.name = name;
    }
    return it->second;
  }

  std::unique_ptr<JobState> makeJob(const JobShape& shape, int64_t index) const {
    auto job = std::make_unique<JobState>();
    job->shape = shape;
    job->index = index;
    job->hard = compileConstraints(shape.hardConstraints);
    job->soft = compileConstraints(shape.softConstraints);
    job->exclusive = false;
    for (const auto& filter : job->hard) job->exclusive |= filter->name() == "exclusiveHost";
    job->spreading = shape.tier == api::Tier::kCritical && shape.service;
    // Jobs with the same request and the same static constraints are ruled out by the same
    // nodes. An exclusive job is a class of its own (other jobs are kept off its nodes).
    job->classKey = resourceKey(shape.resources);
    for (const auto& filter : job->hard) {
      if (filter->monotonicity() == Monotonicity::kClass)
        job->classKey += "|" + filter->signature();
    }
    if (job->exclusive) job->classKey += "|exclusive:" + shape.id;
    return job;
  }

  JobState& jobOf(const JobShape& shape) {
    auto it = jobIndex_.find(shape.id);
    if (it != jobIndex_.end()) return *jobs_[it->second];
    int64_t index = nextJob_++;
    auto job = makeJob(shape, index);
    job->image = shape.image.empty() ? -1 : intern(images_, shape.image);
    job->group = groupOf(shape.capacityGroup);
    JobState& ref = *job;
    jobIndex_.emplace(shape.id, index);
    jobs_.emplace(index, std::move(job));
    return ref;
  }

  void record(JobState& job, uint32_t nodeSlot, const std::string& taskId) {
    uint32_t slot = 0;
    if (!freeSlots_.empty()) {
      slot = freeSlots_.back();
      freeSlots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(tasks_.size());
      tasks_.emplace_back();
    }
    TaskEntry& entry = tasks_[slot];
    entry.id = taskId;
    entry.node = nodeSlot;
    entry.job = job.index;
    entry.resources = job.shape.resources;
    entry.tier = tierIndex(job.shape.tier);
    entry.group = job.group;
    entry.seq = ++seq_;
    entry.evicting = false;
    entry.live = true;
    taskIndex_.emplace(taskId, slot);

    NodeState& node = nodes_[nodeSlot];
    addResources(node.used, entry.resources);
    node.taskCount++;
    node.tasks.push_back(slot);
    if (++job.perNode[nodeSlot] == 1) node.distinctJobs++;
    if (job.exclusive) node.exclusiveJob = job.index;
    if (node.zone >= 0) {
      if (job.perZone.size() <= static_cast<size_t>(node.zone)) job.perZone.resize(node.zone + 1);
      job.perZone[static_cast<size_t>(node.zone)]++;
    }
    job.placed++;
    if (job.image >= 0 && !node.hasImage(job.image)) {
      node.images.push_back(job.image);
      if (node.images.size() > kMaxImagesPerNode) node.images.pop_front();
    }
    GroupState& group = groups_[static_cast<size_t>(job.group)];
    addResources(group.used[entry.tier], entry.resources);
    group.tasks[entry.tier]++;
    dropNomination(taskId);
  }

  void dropNomination(const std::string& taskId) {
    auto it = nominations_.find(taskId);
    if (it == nominations_.end()) return;
    subtractResources(nodes_[it->second.node].nominated, it->second.resources);
    nominations_.erase(it);
  }

  void expireNominations() {
    int64_t now = clock_.nowMs();
    for (auto it = nominations_.begin(); it != nominations_.end();) {
      if (now - it->second.sinceMs >= config_.nominationTimeoutMs) {
        subtractResources(nodes_[it->second.node].nominated, it->second.resources);
        it = nominations_.erase(it);
      } else {
        ++it;
      }
    }
  }

  ClusterView computeView() const {
    ClusterView view;
    view.nodes = &nodes_;
    view.zonePresent.assign(zones_.size(), 0);
    for (const NodeState& node : nodes_) {
      if (node.present && node.spec.schedulable && node.zone >= 0) {
        view.zonePresent[static_cast<size_t>(node.zone)] = 1;
      }
    }
    for (uint8_t present : view.zonePresent) view.zoneCount += present;
    return view;
  }

  void refreshView() {
    if (!viewDirty_) return;
    view_ = computeView();
    viewDirty_ = false;
  }

  // The resource check: `own` is the task's own nomination on this node, if any.
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
    if (node.addressLimit >= 0 && node.taskCount + 1 > node.addressLimit) return Reason::kAddresses;
    return Reason::kOk;
  }

  // The first reason the node cannot take the job's task, cheapest checks first.
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

  std::vector<std::string> allReasons(const JobState& job, uint32_t slot, const ClusterView& view,
                                      const Nomination* nomination) const {
    std::vector<std::string> reasons;
    const NodeState& node = nodes_[slot];
    if (!node.present || !node.spec.schedulable) return {"notSchedulable"};
    const Resources* own =
        nomination != nullptr && nomination->node == slot ? &nomination->resources : nullptr;
    // Every resource that is short, not just the first.
    Resources used = node.used;
    addResources(used, node.nominated);
    if (own != nullptr) subtractResources(used, *own);
    const Resources& request = job.shape.resources;
    const Resources& capacity = node.spec.capacity;
    if (used.cpu + request.cpu > capacity.cpu + kCpuEpsilon) reasons.emplace_back("cpu");
    if (used.memoryMB + request.memoryMB > capacity.memoryMB) reasons.emplace_back("memoryMB");
    if (used.diskMB + request.diskMB > capacity.diskMB) reasons.emplace_back("diskMB");
    if (used.networkMbps + request.networkMbps > capacity.networkMbps) {
      reasons.emplace_back("networkMbps");
    }
    if (used.gpu + request.gpu > capacity.gpu) reasons.emplace_back("gpu");
    if (node.addressLimit >= 0 && node.taskCount + 1 > node.addressLimit) {
      reasons.emplace_back("addresses");
    }
    if (node.exclusiveJob >= 0 && node.exclusiveJob != job.index) {
      reasons.emplace_back("exclusiveHost");
    }
    for (const auto& filter : job.hard) {
      if (!filter->accepts(job, slot, node, view)) reasons.emplace_back(filter->name());
    }
    return reasons;
  }

  using OrderIt = std::vector<const PendingJob*>::const_iterator;

  // One tier of an iteration: gang jobs and spreading services job by job, then the other jobs
  // interleaved by shape (`SchedulerConfig::complementOrder`) or job by job.
  void placeTier(OrderIt begin, OrderIt end, IterationResult& result) {
    std::vector<std::pair<JobState*, const std::vector<std::string>*>> interleaved;
    for (OrderIt it = begin; it != end; ++it) {
      const PendingJob* pendingJob = *it;
      JobState& job = jobOf(*pendingJob->job);
      job.cursor = 0;
      job.classCursor = &classCursors_[job.classKey];
      touched_.push_back(&job);
      if (job.shape.gang) {
        placeGang(job, pendingJob->taskIds, result);
      } else if (job.spreading || !config_.complementOrder) {
        placeTasks(job, pendingJob->taskIds, 0, result);
      } else {
        interleaved.emplace_back(&job, &pendingJob->taskIds);
      }
    }
    if (!interleaved.empty()) placeInterleaved(interleaved, result);
  }

  // Places `taskIds[from..]` of `job` in order. After the first task that finds no node, the
  // rest only try their nominated nodes, and preemption is tried until it finds no victims.
  void placeTasks(JobState& job, const std::vector<std::string>& taskIds, size_t from,
                  IterationResult& result) {
    bool exhausted = false;  // No node fits this job's tasks this iteration.
    bool noVictims = false;  // Preemption found no node either.
    for (size_t i = from; i < taskIds.size(); ++i) {
      const std::string& taskId = taskIds[i];
      if (taskIndex_.contains(taskId)) continue;
      int64_t node = exhausted && !nominations_.contains(taskId)
                         ? -1
                         : findNode(job, taskId, result.nodesEvaluated);
      if (node >= 0) {
        record(job, static_cast<uint32_t>(node), taskId);
        result.assignments.push_back({job.shape.id, taskId, nodes_[node].spec.id});
        continue;
      }
      exhausted = true;
      result.unplaced++;
      if (!noVictims && withinReservationOf(job)) {
        noVictims = !preempt(job, taskId, result);
      }
    }
  }

  // The jobs' tasks, interleaved: jobs with the same request form a shape; each step takes the
  // next task of a job of the shape that best complements the node that took the previous task
  // (the first job in queue order, among the first few, whose constraints accept that node). A
  // job whose task finds no node leaves the rotation and its other tasks go through
  // `placeTasks` (nominations, preemption).
  void placeInterleaved(
      const std::vector<std::pair<JobState*, const std::vector<std::string>*>>& jobs,
      IterationResult& result) {
    struct Member {
      JobState* job;
      const std::vector<std::string>* taskIds;
      size_t next = 0;
      bool done = false;
    };
    struct Shape {
      Resources request;
      std::vector<Member> members;
      size_t head = 0;  // Members before `head` are done.
    };
    constexpr size_t kMembersTried = 8;
    std::vector<Shape> shapes;
    std::unordered_map<std::string, size_t> shapeIndex;
    for (const auto& [job, taskIds] : jobs) {
      auto [it, inserted] =
          shapeIndex.try_emplace(resourceKey(job->shape.resources), shapes.size());
      if (inserted) shapes.push_back({job->shape.resources, {}, 0});
      shapes[it->second].members.push_back({job, taskIds, 0, false});
    }
    int64_t last = -1;  // The node that took the previous task.
    // The largest shape first when the last node has no room for any (first-fit decreasing),
    // measured in shares of the last node (or the first node).
    auto size = [&](const Resources& r) {
      if (nodes_.empty()) return 0.0;
      const Resources& capacity = nodes_[last >= 0 ? static_cast<size_t>(last) : 0].spec.capacity;
      return (capacity.cpu > 0 ? r.cpu / capacity.cpu : 0) +
             (capacity.memoryMB > 0
                  ? static_cast<double>(r.memoryMB) / static_cast<double>(capacity.memoryMB)
                  : 0);
    };
    // Shapes with tasks left, in order of first appearance; each step looks at the first
    // `kShapesTried` of them so that a batch of many distinct shapes stays linear.
    constexpr size_t kShapesTried = 32;
    std::vector<size_t> live(shapes.size());
    std::iota(live.begin(), live.end(), size_t{0});
    while (!live.empty()) {
      Shape* chosen = nullptr;
      Member* chosenMember = nullptr;
      double best = -1;
      for (size_t l = 0; l < live.size() && l < kShapesTried; ++l) {
        Shape& shape = shapes[live[l]];
        Member* member = &shape.members[shape.head];
        double score = 0;
        if (last >= 0) {
          const auto node = static_cast<uint32_t>(last);
          // Shapes that fit the last node, with a job whose constraints accept it, come first.
          if (resourceReason(nodes_[node], shape.request, nullptr) == Reason::kOk) {
            Member* accepting = nullptr;
            for (size_t i = shape.head, tried = 0;
                 i < shape.members.size() && tried < kMembersTried; ++i) {
              Member& candidate = shape.members[i];
              if (candidate.done) continue;
              ++tried;
              if (check(*candidate.job, node, view_, nullptr).ok()) {
                accepting = &candidate;
                break;
              }
            }
            if (accepting != nullptr) {
              member = accepting;
              score = complement_.score(*member->job, node, nodes_[node], view_);
            }
          }
        }
        // Among shapes that do not fit the last node, the largest.
        score = score > 0 ? 2 + score : 1 / (1 + 1 / std::max(size(shape.request), 1e-9));
        if (score > best) {
          best = score;
          chosen = &shape;
          chosenMember = member;
        }
      }
      Member& member = *chosenMember;
      const std::vector<std::string>& ids = *member.taskIds;
      while (member.next < ids.size() && taskIndex_.contains(ids[member.next])) ++member.next;
      bool done = member.next >= ids.size();
      if (!done) {
        const std::string& taskId = ids[member.next];
        int64_t node = findNode(*member.job, taskId, result.nodesEvaluated);
        if (node >= 0) {
          record(*member.job, static_cast<uint32_t>(node), taskId);
          result.assignments.push_back({member.job->shape.id, taskId, nodes_[node].spec.id});
          last = node;
          done = ++member.next >= ids.size();
        } else {
          placeTasks(*member.job, ids, member.next, result);
          done = true;
        }
      }
      if (done) {
        member.done = true;
        while (chosen->head < chosen->members.size() && chosen->members[chosen->head].done) {
          ++chosen->head;
        }
        if (chosen->head >= chosen->members.size()) {
          auto index = static_cast<size_t>(chosen - shapes.data());
          live.erase(std::find(live.begin(), live.end(), index));
        }
      }
    }
  }

  // The best node for one task of `job`, or -1. Starts after the nodes that earlier tasks of the
  // same class or job already ruled out in this iteration.
  int64_t findNode(JobState& job, const std::string& taskId, int64_t& evaluated) {
    if (auto it = nominations_.find(taskId); it != nominations_.end()) {
      ++evaluated;
      if (check(job, it->second.node, view_, &it->second.resources).ok()) return it->second.node;
    }
    size_t& classCursor = *job.classCursor;
    if (job.cursor < classCursor) job.cursor = classCursor;
    const size_t start = job.cursor;
    bool classPrefix = start == classCursor;
    bool jobPrefix = true;
    const WeightedFitness& fitness = job.spreading ? spreading_ : packing_;
    int64_t best = -1;
    double bestScore = -1;
    int64_t scored = 0;
    for (size_t i = start; i < nodes_.size(); ++i) {
      ++evaluated;
      Check result = check(job, static_cast<uint32_t>(i), view_, nullptr);
      if (!result.ok()) {
        if (classPrefix && result.monotonicity == Monotonicity::kClass) {
          classCursor = i + 1;
        } else {
          classPrefix = false;
        }
        if (jobPrefix && result.monotonicity != Monotonicity::kDynamic) {
          job.cursor = i + 1;
        } else {
          jobPrefix = false;
        }
        continue;
      }
      classPrefix = false;
      jobPrefix = false;
      double score = fitness.score(job, static_cast<uint32_t>(i), nodes_[i], view_);
      if (score > bestScore) {
        best = static_cast<int64_t>(i);
        bestScore = score;
      }
      if (score >= config_.goodEnoughFitness || ++scored >= config_.maxFeasibleNodesScored) break;
    }
    return best;
  }

  void resetCursors() {
    for (auto& [key, cursor] : classCursors_) cursor = 0;
    for (JobState* job : touched_) job->cursor = 0;
  }

  // Places a gang whole, or none of it. When some of its tasks find no node and the whole gang
  // is within its group's reservation, it preempts: every such task needs victims (or waits for
  // those an earlier iteration chose), else nothing is evicted. A gang waiting for victims holds
  // nominations for all its tasks, also those that fit now, so it starts whole later.
  void placeGang(JobState& job, const std::vector<std::string>& taskIds, IterationResult& result) {
    struct Placed {
      std::string taskId;
      uint32_t node = 0;
      std::optional<Nomination> nomination;  // The claim it had before it was placed.
    };
    int64_t remaining = 0;
    for (const std::string& taskId : taskIds) remaining += taskIndex_.contains(taskId) ? 0 : 1;
    const bool mayPreempt = remaining > 0 && withinReservationOf(job, remaining);
    std::vector<Placed> placed;
    std::vector<std::string> missing;
    for (const std::string& taskId : taskIds) {
      if (taskIndex_.contains(taskId)) continue;
      int64_t node = findNode(job, taskId, result.nodesEvaluated);
      if (node < 0) {
        missing.push_back(taskId);
        // Without preemption the gang cannot be whole: the other tasks need not look.
        if (!mayPreempt) break;
        continue;
      }
      Placed entry{taskId, static_cast<uint32_t>(node), std::nullopt};
      if (auto it = nominations_.find(taskId); it != nominations_.end()) {
        entry.nomination = it->second;
      }
      record(job, static_cast<uint32_t>(node), taskId);
      placed.push_back(std::move(entry));
    }
    if (missing.empty()) {
      for (const Placed& entry : placed) {
        result.assignments.push_back({job.shape.id, entry.taskId, nodes_[entry.node].spec.id});
      }
      return;
    }
    bool waiting = false;
    if (mayPreempt) {
      std::vector<Eviction> evictions;
      std::vector<std::pair<std::string, PreemptionPlan>> applied;
      waiting = true;
      for (const std::string& taskId : missing) {
        if (nominations_.contains(taskId)) continue;  // Its victims are still stopping.
        std::optional<PreemptionPlan> plan = planPreemption(job);
        if (!plan) {
          waiting = false;
          break;
        }
        applyPreemption(job, taskId, *plan, evictions);
        applied.emplace_back(taskId, std::move(*plan));
      }
      if (waiting) {
        for (Eviction& eviction : evictions) result.evictions.push_back(std::move(eviction));
      } else {
        for (auto it = applied.rbegin(); it != applied.rend(); ++it) {
          undoPreemption(it->first, it->second);
        }
      }
    }
    // Not whole this iteration: give back what the partial gang took. A waiting gang keeps the
    // room as nominations; otherwise earlier claims are restored. Resources grew again, so the
    // cursors no longer hold.
    for (const Placed& entry : placed) {
      removeTask(entry.taskId);
      if (waiting) {
        nominate(entry.taskId, entry.node, job.index, job.shape.resources,
                 entry.nomination ? entry.nomination->sinceMs : clock_.nowMs());
      } else if (entry.nomination) {
        nominate(entry.taskId, entry.nomination->node, entry.nomination->job,
                 entry.nomination->resources, entry.nomination->sinceMs);
      }
    }
    resetCursors();
    for (const std::string& taskId : taskIds)
      result.unplaced += taskIndex_.contains(taskId) ? 0 : 1;
  }

  // True when `tasks` more tasks of `job` stay within its group's reservation for its tier.
  bool withinReservationOf(const JobState& job, int64_t tasks = 1) const {
    // A job the scheduler has not seen yet (`explain`) finds its group by name.
    int index = job.group;
    if (index < 0) {
      auto it = groupIndex_.find(job.shape.capacityGroup);
      if (it == groupIndex_.end()) return false;
      index = it->second;
    }
    if (static_cast<size_t>(index) >= groups_.size()) return false;
    const GroupState& group = groups_[static_cast<size_t>(index)];
    if (!group.defined) return false;
    size_t tier = tierIndex(job.shape.tier);
    Resources after = group.used[tier];
    for (int64_t i = 0; i < tasks; ++i) addResources(after, job.shape.resources);
    return group.reservation(tier).count > 0 && !exceeds(after, group.reservation(tier));
  }

  // A flex group uses more than its flex reservation, not counting tasks already being evicted.
  bool borrowing(const GroupState& group, const Resources& pendingEvictions) const {
    Resources used = group.used[1];
    subtractResources(used, group.evicting[1]);
    subtractResources(used, pendingEvictions);
    return exceeds(used, group.defined ? group.spec.flex : Reservation{});
  }

  // How many more tasks of job `index` may be evicted in this iteration.
  int64_t allowanceLeft(int64_t index) {
    if (allowances_ == nullptr) return kNoLimit;
    auto [it, inserted] = allowanceLeft_.try_emplace(index, kNoLimit);
    if (inserted) {
      std::optional<int64_t> allowance = allowances_->allowance(jobs_.at(index)->shape.id);
      if (allowance) it->second = std::max<int64_t>(0, *allowance);
    }
    return it->second;
  }

  // Finds the node where evicting the fewest borrowing flex tasks makes room for one task of
  // `job`, taking no more tasks of a job than its disruption allowance has left. Changes nothing.
  std::optional<PreemptionPlan> planPreemption(const JobState& job) {
    const Resources& request = job.shape.resources;
    std::optional<PreemptionPlan> best;
    std::vector<uint32_t> victims;
    std::unordered_map<int, Resources> groupEvictions;
    std::unordered_map<int64_t, int64_t> jobEvictions;
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
      const NodeState& node = nodes_[i];
      if (!check(job, i, view_, nullptr, /*resources=*/false).ok()) continue;
      // Candidates: flex tasks here, newest first (the least work lost).
      std::vector<uint32_t> candidates;
      for (uint32_t slot : node.tasks) {
        const TaskEntry& entry = tasks_[slot];
        if (entry.tier == 1 && !entry.evicting) candidates.push_back(slot);
      }
      if (candidates.empty()) continue;
      std::sort(candidates.begin(), candidates.end(),
                [&](uint32_t a, uint32_t b) { return tasks_[a].seq > tasks_[b].seq; });
      Resources used = node.used;
      addResources(used, node.nominated);
      int64_t taskCount = node.taskCount;
      for (uint32_t slot : node.tasks) {
        if (tasks_[slot].evicting) {
          subtractResources(used, tasks_[slot].resources);
          --taskCount;
        }
      }
      victims.clear();
      groupEvictions.clear();
      jobEvictions.clear();
      auto roomy = [&] {
        Resources after = used;
        addResources(after, request);
        return within(after, node.spec.capacity) &&
               (node.addressLimit < 0 || taskCount + 1 <= node.addressLimit);
      };
      for (uint32_t slot : candidates) {
        if (roomy()) break;
        if (best && victims.size() + 1 >= best->victims.size()) break;
        const TaskEntry& entry = tasks_[slot];
        Resources& pending = groupEvictions.try_emplace(entry.group, zero()).first->second;
        if (!borrowing(groups_[static_cast<size_t>(entry.group)], pending)) continue;
        // A job whose budget allows no more disruptions is skipped; others may still do.
        int64_t& taken = jobEvictions[entry.job];
        if (taken >= allowanceLeft(entry.job)) continue;
        ++taken;
        addResources(pending, entry.resources);
        subtractResources(used, entry.resources);
        --taskCount;
        victims.push_back(slot);
      }
      if (victims.empty() || !roomy()) continue;
      if (!best || victims.size() < best->victims.size()) best = PreemptionPlan{i, victims};
    }
    return best;
  }

  // Marks the plan's victims evicting (into `evictions`), counts them against their jobs'
  // allowances and nominates the node for `taskId`.
  void applyPreemption(const JobState& job, const std::string& taskId, const PreemptionPlan& plan,
                       std::vector<Eviction>& evictions) {
    const NodeState& node = nodes_[plan.node];
    for (uint32_t slot : plan.victims) {
      TaskEntry& entry = tasks_[slot];
      entry.evicting = true;
      addResources(groups_[static_cast<size_t>(entry.group)].evicting[entry.tier], entry.resources);
      if (auto left = allowanceLeft_.find(entry.job);
          left != allowanceLeft_.end() && left->second != kNoLimit) {
        --left->second;
      }
      const JobState& victimJob = *jobs_.at(entry.job);
      evictions.push_back({victimJob.shape.id, entry.id, node.spec.id, taskId});
    }
    nominate(taskId, plan.node, job.index, job.shape.resources, clock_.nowMs());
  }

  // Takes back an applied plan that was not used (a gang that cannot be whole).
  void undoPreemption(const std::string& taskId, const PreemptionPlan& plan) {
    for (uint32_t slot : plan.victims) {
      TaskEntry& entry = tasks_[slot];
      entry.evicting = false;
      subtractResources(groups_[static_cast<size_t>(entry.group)].evicting[entry.tier],
                        entry.resources);
      if (auto left = allowanceLeft_.find(entry.job);
          left != allowanceLeft_.end() && left->second != kNoLimit) {
        ++left->second;
      }
    }
    dropNomination(taskId);
  }

  void nominate(const std::string& taskId, uint32_t node, int64_t job, const Resources& resources,
                int64_t sinceMs) {
    dropNomination(taskId);
    nominations_[taskId] = {node, job, resources, sinceMs};
    addResources(nodes_[node].nominated, resources);
  }

  // Finds victims for `taskId` and marks them evicting, or (true) it already waits for some.
  // False when no node would do.
  bool preempt(JobState& job, const std::string& taskId, IterationResult& result) {
    if (nominations_.contains(taskId)) return true;  // Already waiting for evictions.
    std::optional<PreemptionPlan> plan = planPreemption(job);
    if (!plan) return false;
    applyPreemption(job, taskId, *plan, result.evictions);
    return true;
  }

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

}  // namespace

bool NodeState::hasImage(int image) const {
  return std::find(images.begin(), images.end(), image) != images.end();
}

Resources Reservation::total() const {
  return {shape.cpu * static_cast<double>(count), shape.memoryMB * count, shape.diskMB * count,
          shape.networkMbps * count, shape.gpu * count};
}

JobShape JobShape::of(const std::string& jobId, const api::JobDescriptor& descriptor) {
  JobShape shape;
  shape.id = jobId;
  shape.resources = descriptor.container.resources;
  shape.tier = descriptor.tier;
  shape.capacityGroup = descriptor.capacityGroup;
  shape.image = descriptor.container.image.reference();
  shape.service = !descriptor.isBatch();
  shape.gang = descriptor.isBatch() && descriptor.batch->gang;
  shape.hardConstraints = descriptor.container.hardConstraints;
  shape.softConstraints = descriptor.container.softConstraints;
  return shape;
}

std::unique_ptr<Scheduler> makeScheduler(const Clock& clock, SchedulerConfig config) {
  return std::make_unique<SchedulerImpl>(clock, config);
}

bool fits(const Resources& capacity, const Resources& used, const Resources& request) {
  Resources after = used;
  addResources(after, request);
  return within(after, capacity);
}

void addResources(Resources& total, const Resources& delta) {
  total.cpu += delta.cpu;
  total.memoryMB += delta.memoryMB;
  total.diskMB += delta.diskMB;
  total.networkMbps += delta.networkMbps;
  total.gpu += delta.gpu;
}

void subtractResources(Resources& total, const Resources& delta) {
  total.cpu -= delta.cpu;
  if (total.cpu < kCpuEpsilon) total.cpu = 0;
  total.memoryMB -= delta.memoryMB;
  total.diskMB -= delta.diskMB;
  total.networkMbps -= delta.networkMbps;
  total.gpu -= delta.gpu;
}

}  // namespace skiff::controlplane::scheduler
