#include <algorithm>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "controlplane/scheduler/scheduler_impl.h"

namespace skiff::controlplane::scheduler::detail {

json SchedulerImpl::explain(const JobShape& shape, const std::string& taskId) const {
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

std::optional<Resources> SchedulerImpl::allocated(const std::string& nodeId) const {
  auto it = nodeIndex_.find(nodeId);
  if (it == nodeIndex_.end()) return std::nullopt;
  return nodes_[it->second].used;
}

std::vector<CapacityUsage> SchedulerImpl::capacityUsage() const {
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

std::vector<std::string> SchedulerImpl::allReasons(const JobState& job, uint32_t slot,
                                                   const ClusterView& view,
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

}  // namespace skiff::controlplane::scheduler::detail
