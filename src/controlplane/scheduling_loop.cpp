#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

void JobManager::Impl::wakeScheduler() {
  schedulerWake = true;
  if (schedulerTimer) schedulerTimer->cancel();
}

void JobManager::Impl::clusterChanged() {
  clusterChangedSinceIteration = true;
  wakeScheduler();
}

void JobManager::Impl::unparkAll(int64_t now) {
  for (auto& [jobId, tasks] : parkedJobs) pendingJobs.insert(jobId);
  parkedJobs.clear();
  parkedCritical.clear();
  lastRetryOfParkedMs = now;
  lastRetryOfCriticalMs = now;
}

void JobManager::Impl::unparkCritical(int64_t now) {
  for (const std::string& jobId : parkedCritical) {
    parkedJobs.erase(jobId);
    pendingJobs.insert(jobId);
  }
  parkedCritical.clear();
  lastRetryOfCriticalMs = now;
}

void JobManager::Impl::forgetParked(const std::string& jobId) {
  parkedJobs.erase(jobId);
  parkedCritical.erase(jobId);
}

int64_t JobManager::Impl::untilParkedRetryMs(int64_t now) const {
  int64_t wait = config.parkedRetryMs - (now - lastRetryOfParkedMs);
  if (!parkedCritical.empty()) {
    wait = std::min(wait, config.schedulerRetryMs - (now - lastRetryOfCriticalMs));
  }
  return std::max<int64_t>(wait, 0);
}

void JobManager::Impl::startScheduler() {
  schedulerTimer = timers.make(strand);
  schedulerWake = true;
  asio::co_spawn(strand, runScheduler(shared_from_this()), asio::detached);
}

asio::awaitable<void> JobManager::Impl::runScheduler(std::shared_ptr<Impl> self) {
  while (!self->stopped) {
    if (!self->schedulerWake) {
      if (!self->pendingJobs.empty()) {
        self->schedulerTimer->expiresAfterMs(self->config.schedulerRetryMs);
      } else if (!self->parkedJobs.empty()) {
        self->schedulerTimer->expiresAfterMs(self->untilParkedRetryMs(self->clock.nowMs()));
      } else {
        self->schedulerTimer->expiresNever();
      }
      co_await self->schedulerTimer->wait();
      if (self->stopped) break;
      if (!self->schedulerWake && self->pendingJobs.empty() && self->parkedJobs.empty()) {
        continue;
      }
    }
    self->schedulerWake = false;
    if (self->iterate()) self->schedulerWake = true;
    // Let job loops and API handlers run between iterations.
    co_await asio::post(self->strand, asio::use_awaitable);
  }
}

bool JobManager::Impl::iterate() {
  int64_t now = clock.nowMs();
  if (clusterChangedSinceIteration ||
      (!parkedJobs.empty() && now - lastRetryOfParkedMs >= config.parkedRetryMs)) {
    clusterChangedSinceIteration = false;
    unparkAll(now);
  } else if (!parkedCritical.empty() && now - lastRetryOfCriticalMs >= config.schedulerRetryMs) {
    unparkCritical(now);
  }
  ++stats.iterations;
  const size_t limit = static_cast<size_t>(std::max<int64_t>(1, config.maxTasksPerIteration));
  std::vector<scheduler::PendingJob> batch;
  std::vector<std::string> idle;
  // Jobs with wanting tasks this iteration did not collect (the limit cut them off).
  std::set<std::string> cutOff;
  size_t taken = 0;
  bool truncated = false;
  auto collect = [&](JobActor* actor) {
    scheduler::PendingJob pending{&actor->shape, {}};
    for (const TaskRecord& task : actor->view.tasks) {
      if (wantsPlacement(task, now) && !launching.contains(task.id)) {
        if (!actor->shape.gang && taken >= limit) {
          cutOff.insert(actor->view.job.id);
          break;
        }
        pending.taskIds.push_back(task.id);
        ++taken;
      }
    }
    if (pending.taskIds.empty()) {
      if (!cutOff.contains(actor->view.job.id)) idle.push_back(actor->view.job.id);
    } else {
      batch.push_back(std::move(pending));
    }
  };
  for (const std::string& jobId : pendingJobs) {
    ++stats.jobsScanned;
    JobActor* actor = findJob(jobId);
    if (actor == nullptr || actor->view.job.state != api::JobState::kAccepted) {
      idle.push_back(jobId);
    } else if (actor->shape.tier == api::Tier::kCritical && taken < limit) {
      collect(actor);
    }
  }
  auto start = pendingJobs.lower_bound(flexRotation);
  for (size_t seen = 0; seen < pendingJobs.size(); ++seen, ++start) {
    if (start == pendingJobs.end()) start = pendingJobs.begin();
    ++stats.jobsScanned;
    if (taken >= limit) {
      truncated = true;
      flexRotation = *start;
      break;
    }
    JobActor* actor = findJob(*start);
    if (actor == nullptr || actor->view.job.state != api::JobState::kAccepted ||
        actor->shape.tier == api::Tier::kCritical) {
      continue;
    }
    collect(actor);
  }
  for (const std::string& jobId : idle) pendingJobs.erase(jobId);
  if (batch.empty()) return false;

  EvictionAllowances allowances(*this, now);
  stats.tasksTried += static_cast<int64_t>(taken);
  scheduler::IterationResult result = scheduler->schedule(batch, &allowances);
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> placements;
  for (scheduler::Assignment& assignment : result.assignments) {
    launching.insert(assignment.taskId);
    placements[assignment.jobId].emplace_back(std::move(assignment.taskId),
                                              std::move(assignment.nodeId));
  }
  // Every job tried leaves the queue: parked with the tasks that found no node, or done until
  // its loop notes a wanting task again. Jobs the limit cut off stay for the next iteration.
  for (const scheduler::PendingJob& tried : batch) {
    const std::string& jobId = tried.job->id;
    if (cutOff.contains(jobId)) continue;
    pendingJobs.erase(jobId);
    std::unordered_set<std::string> unplaced;
    for (const std::string& taskId : tried.taskIds) {
      if (!launching.contains(taskId)) unplaced.insert(taskId);
    }
    if (unplaced.empty()) continue;
    // The retry period counts from the oldest park.
    if (parkedJobs.empty()) lastRetryOfParkedMs = now;
    parkedJobs[jobId] = std::move(unplaced);
    if (tried.job->tier == api::Tier::kCritical) {
      if (parkedCritical.empty()) lastRetryOfCriticalMs = now;
      parkedCritical.insert(jobId);
    }
  }
  for (auto& [jobId, list] : placements) postLaunch(jobId, std::move(list));
  std::map<std::string, std::vector<std::string>> evictions;
  for (const scheduler::Eviction& eviction : result.evictions) {
    log::info("evicting task for reserved work", {{"taskId", eviction.taskId},
                                                  {"nodeId", eviction.nodeId},
                                                  {"forTaskId", eviction.forTaskId}});
    evictions[eviction.jobId].push_back(eviction.taskId);
  }
  for (auto& [jobId, list] : evictions) postEvictions(jobId, std::move(list));
  return truncated && !result.assignments.empty();
}

void JobManager::Impl::postLaunch(const std::string& jobId,
                                  std::vector<std::pair<std::string, std::string>> placements) {
  JobActor* actor = findJob(jobId);
  auto abandon = [this](const std::vector<std::string>& taskIds) {
    for (const std::string& taskId : taskIds) scheduler->removeTask(taskId);
    if (!taskIds.empty()) clusterChanged();
  };
  if (actor == nullptr) {
    std::vector<std::string> ids;
    for (auto& [taskId, nodeId] : placements) {
      launching.erase(taskId);
      ids.push_back(taskId);
    }
    abandon(ids);
    return;
  }
  auto shared =
      std::make_shared<std::vector<std::pair<std::string, std::string>>>(std::move(placements));
  auto rejected = std::make_shared<std::vector<std::string>>();
  auto apply = [self = shared_from_this(), shared, rejected](JobEdit& edit, int64_t now) -> Status {
    for (const auto& [taskId, nodeId] : *shared) {
      auto position = edit.findTaskId(taskId);
      auto node = self->nodes.find(nodeId);
      if (!position || edit.job().state != api::JobState::kAccepted ||
          !wantsPlacement(edit.task(*position), now) || node == self->nodes.end() ||
          node->second.lost) {
        rejected->push_back(taskId);
        continue;
      }
      launchTask(edit, *position, nodeId, now);
    }
    return Status{};
  };
  auto done = [self = shared_from_this(), shared, rejected, abandon](const Status& status,
                                                                     const JobView&) {
    std::vector<std::string> ids;
    for (const auto& [taskId, nodeId] : *shared) {
      self->launching.erase(taskId);
      ids.push_back(taskId);
    }
    abandon(status ? *rejected : ids);
  };
  post(actor, {std::move(apply), std::move(done)});
}

void JobManager::Impl::postEvictions(const std::string& jobId, std::vector<std::string> taskIds) {
  JobActor* actor = findJob(jobId);
  if (actor == nullptr) return;
  evictionsInFlight[jobId].insert(taskIds.begin(), taskIds.end());
  auto apply = [taskIds](JobEdit& edit, int64_t now) -> Status {
    for (const std::string& taskId : taskIds) evictTask(edit, taskId, now);
    return Status{};
  };
  auto done = [self = shared_from_this(), jobId, taskIds](const Status&, const JobView&) {
    auto inFlight = self->evictionsInFlight.find(jobId);
    if (inFlight == self->evictionsInFlight.end()) return;
    for (const std::string& taskId : taskIds) inFlight->second.erase(taskId);
    if (inFlight->second.empty()) self->evictionsInFlight.erase(inFlight);
  };
  post(actor, {std::move(apply), std::move(done)});
}

}  // namespace skiff::controlplane
