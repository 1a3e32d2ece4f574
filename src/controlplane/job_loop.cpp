#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

void JobManager::Impl::ensureLoop(JobActor* actor) {
  if (!actor->timer) actor->timer = timers.make(strand);
  if (actor->loopRunning || stopped) return;
  actor->loopRunning = true;
  asio::co_spawn(strand, runJob(shared_from_this(), actor), asio::detached);
}

void JobManager::Impl::wakeJob(JobActor* actor) {
  actor->wake = true;
  if (actor->loopRunning) {
    actor->timer->cancel();
  } else {
    ensureLoop(actor);
  }
}

void JobManager::Impl::post(JobActor* actor, Command command) {
  actor->mailbox.push_back(std::move(command));
  wakeJob(actor);
}

asio::awaitable<void> JobManager::Impl::runJob(std::shared_ptr<Impl> self, JobActor* actor) {
  while (!self->stopped) {
    if (actor->mailbox.empty() && !actor->wake) {
      if (actor->view.job.state == api::JobState::kFinished) break;
      int64_t now = self->clock.nowMs();
      if (actor->deadlineMs == 0 || actor->deadlineMs > now) {
        if (actor->deadlineMs == 0) {
          actor->timer->expiresNever();
        } else {
          actor->timer->expiresAfterMs(actor->deadlineMs - now);
        }
        co_await actor->timer->wait();
        continue;
      }
    }
    actor->wake = false;
    co_await self->step(actor);
  }
  actor->loopRunning = false;
  for (auto& command : actor->mailbox) {
    if (command.done) command.done(Status(std::unexpected(unavailable())), actor->view);
  }
  actor->mailbox.clear();
}

asio::awaitable<void> JobManager::Impl::step(JobActor* actor) {
  JobEdit edit(actor->view);
  std::vector<std::pair<Command, Status>> handled;
  int64_t now = clock.nowMs();
  constexpr size_t kMaxCommandsPerStep = 512;
  while (!actor->mailbox.empty() && handled.size() < kMaxCommandsPerStep) {
    Command command = std::move(actor->mailbox.front());
    actor->mailbox.pop_front();
    Status status = command.apply ? command.apply(edit, now) : Status{};
    handled.emplace_back(std::move(command), std::move(status));
  }
  if (!actor->mailbox.empty()) actor->wake = true;
  actor->deadlineMs = reconcile(edit, now, config.lifecycle);

  Status committed;
  if (!edit.empty()) {
    auto result = co_await commit(buildTxn(edit));
    if (!result) {
      committed = std::unexpected(result.error().wrap("saving job " + actor->view.job.id));
      log::error("job update not saved",
                 {{"jobId", actor->view.job.id}, {"error", result.error().message()}});
      // Try again later; the in-memory state still matches the store.
      actor->deadlineMs = clock.nowMs() + 1000;
    } else {
      account(actor, edit);
      std::move(edit).applyTo(actor->view, result->revision);
    }
  }
  for (auto& [command, status] : handled) {
    if (command.done) command.done(status ? committed : status, actor->view);
  }
  notePending(actor, clock.nowMs());
  if (actor->view.job.state == api::JobState::kFinished) {
    scheduler->forgetJob(actor->view.job.id);
    forgetParked(actor->view.job.id);
  }
}

void JobManager::Impl::takeUsage(const NodeState& node,
                                 const std::map<std::string, TaskUsage>& usage) {
  int64_t now = clock.nowMs();
  std::set<JobActor*> touched;
  for (const auto& [taskId, sample] : usage) {
    if (!node.tasks.contains(taskId)) continue;
    auto jobId = jobIdOfTask(taskId);
    JobActor* actor = jobId ? findJob(*jobId) : nullptr;
    if (actor == nullptr || !autoscalesOnCpu(actor->view.job.descriptor)) continue;
    actor->cpuReports[taskId] = {sample.cpuCores, now};
    touched.insert(actor);
  }
  for (JobActor* actor : touched) {
    if (actor->cpuMetricAtMs != 0 && now - actor->cpuMetricAtMs < config.cpuMetricIntervalMs) {
      continue;
    }
    auto average = averageCpuPercent(*actor, now, config.usageFreshMs);
    if (!average) continue;
    actor->cpuMetricAtMs = now;
    std::map<std::string, double> metrics{{"cpu", std::round(*average * 10) / 10}};
    post(actor, Command{[metrics](JobEdit& edit, int64_t at) {
                          return controlplane::applyMetrics(edit, metrics, at);
                        },
                        nullptr});
  }
}

void JobManager::Impl::notePending(JobActor* actor, int64_t now) {
  if (actor->view.job.state != api::JobState::kAccepted) return;
  const std::string& jobId = actor->view.job.id;
  auto parked = parkedJobs.find(jobId);
  for (const TaskRecord& task : actor->view.tasks) {
    if (!wantsPlacement(task, now) || launching.contains(task.id)) continue;
    if (parked != parkedJobs.end() && parked->second.contains(task.id)) continue;
    if (parked != parkedJobs.end()) forgetParked(jobId);
    pendingJobs.insert(jobId);
    wakeScheduler();
    return;
  }
}

store::Txn JobManager::Impl::buildTxn(const JobEdit& edit) {
  store::Txn txn;
  const std::string& jobId = edit.job().id;
  if (edit.jobChanged())
    txn.onSuccess.push_back(store::Op::put(jobKey(jobId), toStored(edit.job())));
  for (const TaskRecord* task : edit.changedTasks()) {
    txn.onSuccess.push_back(store::Op::put(taskKey(jobId, task->id), toStored(*task)));
  }
  return txn;
}

void JobManager::Impl::bumpNode(const std::string& nodeId) {
  auto it = nodes.find(nodeId);
  if (it == nodes.end()) return;
  it->second.revision++;
  for (auto& waiter : it->second.waiters) waiter->cancel();
  it->second.waiters.clear();
}

void JobManager::Impl::applyNodeChange(const std::string& nodeId, const NodeChange& change) {
  auto it = nodes.find(nodeId);
  if (it == nodes.end()) return;
  NodeState& node = it->second;
  bumpNode(nodeId);
  for (const std::string& taskId : change.left) {
    node.tasks.erase(taskId);
    node.removedLog.emplace_back(node.revision, taskId);
  }
  while (node.removedLog.size() > kRemovedLogLimit) {
    node.deltaFloor = std::max(node.deltaFloor, node.removedLog.front().first);
    node.removedLog.pop_front();
  }
  for (const std::string& taskId : change.onNode) node.tasks[taskId] = node.revision;
}

void JobManager::Impl::account(JobActor* actor, const JobEdit& edit) {
  const JobView& view = actor->view;
  int64_t tasksBefore = static_cast<int64_t>(view.tasks.size());
  // Each node's revision moves once per commit, whatever the number of its tasks in it, so it
  // never passes the store revision that `recover` restarts it from.
  std::map<std::string, NodeChange> touched;
  for (const TaskRecord* task : edit.changedTasks()) {
    const TaskRecord* old = nullptr;
    if (auto position = view.findIndex(task->index);
        position && view.tasks[*position].id == task->id) {
      old = &view.tasks[*position];
    }
    bool wasOnNode = old != nullptr && !old->finished() && !old->nodeId.empty();
    bool isOnNode = !task->finished() && !task->nodeId.empty();
    if (wasOnNode && !(isOnNode && old->nodeId == task->nodeId)) {
      touched[old->nodeId].left.push_back(old->id);
    }
    // Delta answers list a task when its assignment changed (new on the node, or its desired
    // state): not for the node's own status reports, which its agent already knows.
    bool assignmentChanged = !wasOnNode || old->nodeId != task->nodeId ||
                             (old->state == api::TaskState::kKillInitiated) !=
                                 (task->state == api::TaskState::kKillInitiated);
    if (isOnNode && assignmentChanged) touched[task->nodeId].onNode.push_back(task->id);
    // A finished task gives its resources back (also one the scheduler placed whose launch
    // lost a race with a kill).
    if (task->finished() || (wasOnNode && !isOnNode)) {
      scheduler->removeTask(task->id);
      clusterChanged();
    }
    if (!task->nodeId.empty()) touched[task->nodeId];
  }
  for (const auto& [nodeId, change] : touched) applyNodeChange(nodeId, change);
  int64_t appended = static_cast<int64_t>(edit.taskCount()) - tasksBefore;
  taskCount += static_cast<size_t>(std::max<int64_t>(appended, 0));
}

}  // namespace skiff::controlplane
