#include <algorithm>
#include <numeric>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "controlplane/scheduler/scheduler_impl.h"

namespace skiff::controlplane::scheduler::detail {

void SchedulerImpl::placeTier(OrderIt begin, OrderIt end, IterationResult& result) {
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

void SchedulerImpl::placeTasks(JobState& job, const std::vector<std::string>& taskIds, size_t from,
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

void SchedulerImpl::placeInterleaved(
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
    auto [it, inserted] = shapeIndex.try_emplace(resourceKey(job->shape.resources), shapes.size());
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
          for (size_t i = shape.head, tried = 0; i < shape.members.size() && tried < kMembersTried;
               ++i) {
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

int64_t SchedulerImpl::findNode(JobState& job, const std::string& taskId, int64_t& evaluated) {
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

void SchedulerImpl::resetCursors() {
  for (auto& [key, cursor] : classCursors_) cursor = 0;
  for (JobState* job : touched_) job->cursor = 0;
}

void SchedulerImpl::placeGang(JobState& job, const std::vector<std::string>& taskIds,
                              IterationResult& result) {
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
  for (const std::string& taskId : taskIds) result.unplaced += taskIndex_.contains(taskId) ? 0 : 1;
}

}  // namespace skiff::controlplane::scheduler::detail
