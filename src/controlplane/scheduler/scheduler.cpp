#include <algorithm>
#include <charconv>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/scheduler/scheduler_impl.h"

namespace skiff::controlplane::scheduler::detail {

SchedulerImpl::SchedulerImpl(const Clock& clock, SchedulerConfig config)
    : clock_(clock), config_(config) {
  packing_.add(std::make_unique<BinPackingFitness>(config_.imbalanceWeight), config_.packingWeight);
  packing_.add(std::make_unique<CachedImageFitness>(), config_.imageWeight);
  packing_.add(std::make_unique<SoftConstraintFitness>(), config_.softWeight);
  spreading_.add(std::make_unique<SpreadingFitness>(), config_.packingWeight);
  spreading_.add(std::make_unique<CachedImageFitness>(), config_.imageWeight);
  spreading_.add(std::make_unique<SoftConstraintFitness>(), config_.softWeight);
  view_.nodes = &nodes_;
}

void SchedulerImpl::upsertNode(const NodeSpec& spec) {
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

void SchedulerImpl::setSchedulable(const std::string& nodeId, bool schedulable) {
  auto it = nodeIndex_.find(nodeId);
  if (it == nodeIndex_.end()) return;
  nodes_[it->second].spec.schedulable = schedulable;
  viewDirty_ = true;
}

void SchedulerImpl::upsertCapacityGroup(const CapacityGroupSpec& spec) {
  GroupState& group = groups_[static_cast<size_t>(groupOf(spec.name))];
  group.spec = spec;
  group.defined = true;
}

void SchedulerImpl::removeCapacityGroup(const std::string& name) {
  auto it = groupIndex_.find(name);
  if (it == groupIndex_.end()) return;
  GroupState& group = groups_[static_cast<size_t>(it->second)];
  group.defined = false;
  group.spec = CapacityGroupSpec{};
  group.spec.name = name;
}

void SchedulerImpl::addTask(const JobShape& shape, const std::string& taskId,
                            const std::string& nodeId) {
  if (taskIndex_.contains(taskId)) return;
  auto node = nodeIndex_.find(nodeId);
  if (node == nodeIndex_.end()) return;
  record(jobOf(shape), node->second, taskId);
}

void SchedulerImpl::removeTask(const std::string& taskId) {
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

void SchedulerImpl::forgetJob(const std::string& jobId) {
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

IterationResult SchedulerImpl::schedule(const std::vector<PendingJob>& pending,
                                        DisruptionAllowances* allowances) {
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
    std::stable_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(criticalCount), larger);
    std::stable_sort(order.begin() + static_cast<ptrdiff_t>(criticalCount), order.end(), larger);
  }

  placeTier(order.begin(), order.begin() + static_cast<ptrdiff_t>(criticalCount), result);
  placeTier(order.begin() + static_cast<ptrdiff_t>(criticalCount), order.end(), result);
  allowances_ = nullptr;
  return result;
}

int SchedulerImpl::intern(std::unordered_map<std::string, int>& table, const std::string& value) {
  auto [it, inserted] = table.try_emplace(value, static_cast<int>(table.size()));
  return it->second;
}

int SchedulerImpl::groupOf(const std::string& name) {
  auto [it, inserted] = groupIndex_.try_emplace(name, static_cast<int>(groups_.size()));
  if (inserted) {
    groups_.emplace_back();
    groups_.back().name = name;
    groups_.back().spec.name = name;
  }
  return it->second;
}

std::unique_ptr<JobState> SchedulerImpl::makeJob(const JobShape& shape, int64_t index) const {
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
    if (filter->monotonicity() == Monotonicity::kClass) job->classKey += "|" + filter->signature();
  }
  if (job->exclusive) job->classKey += "|exclusive:" + shape.id;
  return job;
}

JobState& SchedulerImpl::jobOf(const JobShape& shape) {
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

void SchedulerImpl::record(JobState& job, uint32_t nodeSlot, const std::string& taskId) {
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

void SchedulerImpl::dropNomination(const std::string& taskId) {
  auto it = nominations_.find(taskId);
  if (it == nominations_.end()) return;
  subtractResources(nodes_[it->second.node].nominated, it->second.resources);
  nominations_.erase(it);
}

void SchedulerImpl::expireNominations() {
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

void SchedulerImpl::nominate(const std::string& taskId, uint32_t node, int64_t job,
                             const Resources& resources, int64_t sinceMs) {
  dropNomination(taskId);
  nominations_[taskId] = {node, job, resources, sinceMs};
  addResources(nodes_[node].nominated, resources);
}

ClusterView SchedulerImpl::computeView() const {
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

void SchedulerImpl::refreshView() {
  if (!viewDirty_) return;
  view_ = computeView();
  viewDirty_ = false;
}

}  // namespace skiff::controlplane::scheduler::detail

namespace skiff::controlplane::scheduler {

bool NodeState::hasImage(int image) const {
  return std::find(images.begin(), images.end(), image) != images.end();
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
  return std::make_unique<detail::SchedulerImpl>(clock, config);
}

}  // namespace skiff::controlplane::scheduler
