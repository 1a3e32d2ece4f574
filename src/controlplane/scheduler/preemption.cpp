#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "controlplane/scheduler/scheduler_impl.h"

namespace skiff::controlplane::scheduler::detail {

bool SchedulerImpl::withinReservationOf(const JobState& job, int64_t tasks) const {
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

bool SchedulerImpl::borrowing(const GroupState& group, const Resources& pendingEvictions) const {
  Resources used = group.used[1];
  subtractResources(used, group.evicting[1]);
  subtractResources(used, pendingEvictions);
  return exceeds(used, group.defined ? group.spec.flex : Reservation{});
}

int64_t SchedulerImpl::allowanceLeft(int64_t index) {
  if (allowances_ == nullptr) return kNoLimit;
  auto [it, inserted] = allowanceLeft_.try_emplace(index, kNoLimit);
  if (inserted) {
    std::optional<int64_t> allowance = allowances_->allowance(jobs_.at(index)->shape.id);
    if (allowance) it->second = std::max<int64_t>(0, *allowance);
  }
  return it->second;
}

std::optional<PreemptionPlan> SchedulerImpl::planPreemption(const JobState& job) {
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

void SchedulerImpl::applyPreemption(const JobState& job, const std::string& taskId,
                                    const PreemptionPlan& plan, std::vector<Eviction>& evictions) {
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

void SchedulerImpl::undoPreemption(const std::string& taskId, const PreemptionPlan& plan) {
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

bool SchedulerImpl::preempt(JobState& job, const std::string& taskId, IterationResult& result) {
  if (nominations_.contains(taskId)) return true;  // Already waiting for evictions.
  std::optional<PreemptionPlan> plan = planPreemption(job);
  if (!plan) return false;
  applyPreemption(job, taskId, *plan, result.evictions);
  return true;
}

}  // namespace skiff::controlplane::scheduler::detail
