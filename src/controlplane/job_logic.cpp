#include "controlplane/job_logic.h"

#include <algorithm>

#include "controlplane/job_logic_internal.h"
#include "controlplane/service_logic.h"

namespace skiff::controlplane {

using nlohmann::json;

namespace {

using api::TaskReason;
using api::TaskState;
using job_logic_detail::mutableRevision;
using job_logic_detail::retarget;

constexpr int64_t kMaxSystemRetryDelayMs = 30'000;

void setState(TaskRecord& task, TaskState state, int64_t nowMs) {
  task.state = state;
  // Only a Started task serves traffic; a kill takes it out of the endpoints at once.
  if (state != TaskState::kStarted) task.ready = false;
  task.stateTimesMs[static_cast<size_t>(state)] = nowMs;
}

void finish(TaskRecord& task, TaskReason reason, std::string message, int64_t nowMs) {
  setState(task, TaskState::kFinished, nowMs);
  task.reason = reason;
  task.message = std::move(message);
}

// Starts a kill, or finishes at once a task that never reached a node.
void beginKill(TaskRecord& task, TaskReason reason, int64_t nowMs) {
  if (task.finished()) return;
  if (task.state == TaskState::kAccepted) {
    finish(task, reason, "killed before it was placed", nowMs);
    return;
  }
  if (task.state != TaskState::kKillInitiated) setState(task, TaskState::kKillInitiated, nowMs);
  if (task.killReason == TaskReason::kNone) task.killReason = reason;
}

void setReady(TaskRecord& task, bool ready, int64_t nowMs) {
  if (ready && !task.ready) task.readySinceMs = nowMs;
  task.ready = ready;
}

// The reason that decides about a retry: a deliberate kill wins over how the task ended.
TaskReason decidingReason(const TaskRecord& task) {
  return task.killReason != TaskReason::kNone ? task.killReason : task.reason;
}

const api::RetryPolicy& retryPolicyOf(const JobRecord& job) {
  return job.descriptor.isBatch() ? job.descriptor.batch->retryPolicy
                                  : job.descriptor.service->retryPolicy;
}

TaskRecord nextAttempt(const JobRecord& job, const TaskRecord& previous, int64_t nowMs,
                       const LifecycleConfig& config) {
  TaskReason reason = decidingReason(previous);
  TaskRecord next;
  next.index = previous.index;
  next.resubmitNumber = previous.resubmitNumber + 1;
  next.systemResubmitNumber = previous.systemResubmitNumber;
  next.evictionResubmitNumber = previous.evictionResubmitNumber;
  if (api::isSystemError(reason) && previous.stateTimeMs(TaskState::kStarted) == 0) {
    next.systemErrorsInRow = previous.systemErrorsInRow + 1;
  }
  int64_t delayMs = 0;
  if (api::isSystemError(reason)) {
    next.systemResubmitNumber++;
    delayMs = config.systemRetryDelayMs;
    for (int64_t i = 0; i < previous.systemResubmitNumber && delayMs < kMaxSystemRetryDelayMs;
         ++i) {
      delayMs *= 2;
    }
    delayMs = std::min(delayMs, kMaxSystemRetryDelayMs);
  } else if (reason == TaskReason::kScaledDown || reason == TaskReason::kKilled) {
    // A slot refilled after a scale-down or a kill is not a failure: no delay, no retry counted.
    next.systemResubmitNumber++;
  } else if (reason == TaskReason::kEvicted) {
    next.evictionResubmitNumber++;
    delayMs = config.systemRetryDelayMs;
  } else {
    delayMs = retryPolicyOf(job).delayBeforeRetryMs(previous.userRetries() + 1);
  }
  next.specRevision = job.specRevision;
  next.id = taskId(job.id, next.index, next.resubmitNumber);
  next.resubmitOf = previous.id;
  setState(next, TaskState::kAccepted, nowMs);
  int64_t finishedAt = previous.stateTimeMs(TaskState::kFinished);
  next.notBeforeMs = (finishedAt != 0 ? finishedAt : nowMs) + delayMs;
  if (next.notBeforeMs <= nowMs) next.notBeforeMs = 0;
  return next;
}

bool batchSlotWantsRetry(const JobRecord& job, const TaskRecord& task,
                         const LifecycleConfig& config) {
  if (!task.finished()) return false;
  const api::BatchSpec& batch = *job.descriptor.batch;
  TaskReason reason = decidingReason(task);
  if (!api::isRetryable(reason, batch.retryOnRuntimeLimit)) return false;
  if (api::isSystemError(reason)) {
    // An attempt that started was not failed by the platform's setup: it does not count.
    return task.stateTimeMs(TaskState::kStarted) != 0 ||
           task.systemErrorsInRow < config.maxSystemRetries;
  }
  if (reason == TaskReason::kEvicted) return true;
  return task.userRetries() < batch.retryPolicy.retries;
}

void noteDeadline(int64_t& next, int64_t deadline);

// Each revision keeps the pinned image its tasks ran, from the first task that reported one.
void recordPinnedImages(JobEdit& edit) {
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (task.image.empty()) continue;
    const SpecRevision* revision = edit.job().findRevision(task.specRevision);
    if (revision != nullptr && revision->image.empty()) {
      mutableRevision(edit, task.specRevision)->image = task.image;
    }
  }
}

// A task of the rollout's target that ended before it was healthy (ready for minHealthyMs):
// failed, exited or failed its liveness check, not stopped by Skiff or lost to the platform.
bool failedBeforeHealthy(const TaskRecord& task, int64_t minHealthyMs) {
  TaskReason reason = decidingReason(task);
  if (reason == TaskReason::kKilled || reason == TaskReason::kScaledDown ||
      reason == TaskReason::kEvicted || api::isSystemError(reason)) {
    return false;
  }
  int64_t finishedAt = task.stateTimeMs(TaskState::kFinished);
  return task.readySinceMs == 0 || finishedAt - task.readySinceMs < minHealthyMs;
}

// Which tasks of a service are moving off draining nodes now, by position: those already being
// stopped, then the first others in task order up to `drainParallelism`. The rest keep serving
// (and keep their slot) until a move finishes.
std::vector<bool> drainMoves(const JobEdit& edit) {
  std::vector<bool> moving(edit.taskCount(), false);
  int64_t slots = drainParallelism(edit.job().descriptor.service->disruptionBudget,
                                   edit.job().capacity.desired);
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (task.draining && !task.finished() && task.state == TaskState::kKillInitiated) {
      moving[i] = true;
      --slots;
    }
  }
  for (size_t i = 0; i < edit.taskCount() && slots > 0; ++i) {
    const TaskRecord& task = edit.task(i);
    if (task.draining && !task.finished() && task.state != TaskState::kKillInitiated) {
      moving[i] = true;
      --slots;
    }
  }
  return moving;
}

// Stops tasks moving off draining nodes: those not ready at once (they serve nothing); a ready
// moving task once a replacement is ready (no task of the job outside the moves is unready) and
// the disruption budget (maxUnhealthy 0 without one) and its rate allow.
void stopDrainedTasks(JobEdit& edit, const std::vector<bool>& moving, int64_t nowMs,
                      int64_t& nextDeadline) {
  std::vector<size_t> readyDraining;
  int64_t ready = 0;
  int64_t unreadyStaying = 0;  // Replacements (or others) not ready yet.
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (task.finished() || task.state == TaskState::kKillInitiated) continue;
    if (task.ready) ++ready;
    if (!task.draining) {
      if (!task.ready) ++unreadyStaying;
      continue;
    }
    if (!task.ready) {
      beginKill(edit.mutableTask(i), TaskReason::kScaledDown, nowMs);
      edit.mutableTask(i).message = "moved off a draining node";
    } else if (i < moving.size() && moving[i]) {
      readyDraining.push_back(i);
    }
  }
  if (static_cast<int64_t>(readyDraining.size()) <= unreadyStaying) return;
  readyDraining.resize(readyDraining.size() - static_cast<size_t>(unreadyStaying));
  std::optional<api::DisruptionBudget> budget = edit.job().descriptor.service->disruptionBudget;
  if (!budget) {
    budget = api::DisruptionBudget{};
    budget->maxUnhealthy = 0;
  }
  std::vector<int64_t> recent;
  for (int64_t at : edit.job().disruptionsMs) {
    if (budget->rateTasks == 0 || at > nowMs - budget->rateIntervalMs) recent.push_back(at);
  }
  DisruptionAllowance allowance =
      disruptionAllowance(budget, edit.job().capacity.desired, ready, recent, nowMs);
  if (allowance.retryAtMs != 0) noteDeadline(nextDeadline, allowance.retryAtMs);
  int64_t stopped = 0;
  for (size_t i : readyDraining) {
    if (stopped >= allowance.tasks) break;
    beginKill(edit.mutableTask(i), TaskReason::kScaledDown, nowMs);
    edit.mutableTask(i).message = "moved off a draining node";
    recent.push_back(nowMs);
    ++stopped;
  }
  if (stopped > 0 || recent.size() != edit.job().disruptionsMs.size()) {
    // Keep only what the rate still needs.
    if (budget->rateTasks == 0) recent.clear();
    edit.mutableJob().disruptionsMs = recent;
  }
}

// One rollout step. Returns true when the rollout changed target (a rollback) and should be
// looked at again at once.
bool rolloutPass(JobEdit& edit, int64_t nowMs, int64_t& nextDeadline) {
  const JobRecord& job = edit.job();
  const api::RolloutStrategy& strategy = job.descriptor.service->rollout;
  RolloutInput input;
  input.desired = job.capacity.desired;
  input.targetRevision = job.specRevision;
  input.strategy = strategy;
  input.promoted = job.rollout.promoted;
  std::string failure;
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (!task.finished()) {
      input.tasks.push_back(
          {task.id, task.specRevision, task.ready, task.readySinceMs,
           task.state == TaskState::kKillInitiated || task.killReason != TaskReason::kNone});
    } else if (task.specRevision == input.targetRevision && !job.rollout.rollingBack &&
               task.stateTimeMs(TaskState::kAccepted) >= job.rollout.startedAtMs &&
               failedBeforeHealthy(task, strategy.minHealthyMs)) {
      input.newTaskFailed = true;
      failure = "task " + task.id + " ended before it was healthy (" +
                std::string(api::taskReasonName(task.reason)) + ": " + task.message + ")";
    }
  }
  RolloutStep step = nextRolloutStep(input, nowMs);
  int64_t target = input.targetRevision;
  switch (step.outcome) {
    case RolloutStep::Outcome::kRollBack: {
      int64_t from = job.rollout.fromRevision;
      if (job.findRevision(from) == nullptr) return false;
      SpecRevision* failed = mutableRevision(edit, target);
      failed->outcome = "rolledBack";
      failed->message = failure;
      mutableRevision(edit, from)->outcome = "rolling";
      retarget(edit, from);
      RolloutState& rollout = edit.mutableJob().rollout;
      rollout.fromRevision = target;
      rollout.rollingBack = true;
      rollout.promoted = true;
      rollout.startedAtMs = nowMs;
      rollout.message = "rolling back to revision " + std::to_string(from) + ": " + failure;
      return true;
    }
    case RolloutStep::Outcome::kDone: {
      JobRecord& mutableJob = edit.mutableJob();
      for (SpecRevision& revision : mutableJob.revisions) {
        if (revision.number == target) {
          revision.outcome = "current";
        } else if (revision.outcome == "current" || revision.outcome == "rolling" ||
                   revision.outcome == "paused") {
          revision.outcome = "superseded";
        }
      }
      mutableJob.rollout = RolloutState{};
      return false;
    }
    case RolloutStep::Outcome::kPaused:
      if (job.findRevision(target)->outcome != "paused" || job.rollout.message != step.reason) {
        mutableRevision(edit, target)->outcome = "paused";
        edit.mutableJob().rollout.message = step.reason;
      }
      return false;
    case RolloutStep::Outcome::kProgressing:
      break;
  }
  if (job.rollout.message != step.reason) edit.mutableJob().rollout.message = step.reason;
  for (const std::string& id : step.stopOld) {
    if (auto position = edit.findTaskId(id)) {
      beginKill(edit.mutableTask(*position), TaskReason::kScaledDown, nowMs);
    }
  }
  for (int64_t k = 0; k < step.startNew; ++k) {
    TaskRecord task;
    task.specRevision = target;
    task.index = edit.job().nextIndex;
    task.id = taskId(edit.job().id, task.index, 0);
    setState(task, TaskState::kAccepted, nowMs);
    edit.mutableJob().nextIndex++;
    edit.appendTask(std::move(task));
  }
  if (step.nextCheckMs != 0) noteDeadline(nextDeadline, step.nextCheckMs);
  return false;
}

void noteDeadline(int64_t& next, int64_t deadline) {
  if (deadline > 0 && (next == 0 || deadline < next)) next = deadline;
}

void finishJob(JobEdit& edit, std::string reason, std::string message, int64_t nowMs) {
  JobRecord& job = edit.mutableJob();
  job.state = api::JobState::kFinished;
  job.reason = std::move(reason);
  job.message = std::move(message);
  job.stateTimeMs = nowMs;
}

}  // namespace

JobView newJob(std::string id, api::JobDescriptor descriptor, std::string idempotencyKey,
               int64_t nowMs) {
  JobView view;
  view.job.id = std::move(id);
  view.job.state = api::JobState::kAccepted;
  view.job.stateTimeMs = nowMs;
  view.job.createdAtMs = nowMs;
  view.job.idempotencyKey = std::move(idempotencyKey);
  int64_t count = 0;
  if (descriptor.isBatch()) {
    count = descriptor.batch->size;
  } else {
    view.job.capacity = descriptor.service->capacity;
    view.job.enabled = descriptor.service->enabled;
    view.job.revisions.push_back({1, descriptor.container, nowMs, "current", "", ""});
    count = view.job.capacity.desired;
  }
  view.job.descriptor = std::move(descriptor);
  view.job.nextIndex = count;
  view.tasks.reserve(static_cast<size_t>(count));
  for (int64_t index = 0; index < count; ++index) {
    TaskRecord task;
    task.id = taskId(view.job.id, index, 0);
    task.index = index;
    setState(task, TaskState::kAccepted, nowMs);
    view.tasks.push_back(std::move(task));
  }
  return view;
}

bool applyStatus(JobEdit& edit, const TaskStatusUpdate& update, int64_t nowMs) {
  auto position = edit.findTaskId(update.taskId);
  if (!position) return false;
  const TaskRecord& current = edit.task(*position);
  if (update.seq <= current.lastSeq || current.finished()) return false;
  // An impossible transition is ignored entirely: it must not consume the seq or touch the task.
  if (update.state != current.state && !api::isValidTransition(current.state, update.state)) {
    return false;
  }
  TaskRecord& task = edit.mutableTask(*position);
  task.lastSeq = update.seq;
  if (!update.image.empty()) task.image = update.image;
  if (!update.ip.empty()) task.ip = update.ip;
  if (update.state == task.state) {
    if (update.ready && task.state == TaskState::kStarted) setReady(task, *update.ready, nowMs);
    return true;
  }
  if (update.state == TaskState::kFinished) {
    TaskReason reason = update.reason;
    if (reason == TaskReason::kNone) {
      reason = update.exitCode.value_or(0) == 0 ? TaskReason::kNormal : TaskReason::kFailed;
    }
    // A task we were killing ends with the kill's reason, unless the platform failed it.
    if (task.killReason != TaskReason::kNone && !api::isSystemError(reason)) {
      reason = task.killReason;
    }
    finish(task, reason, update.message, nowMs);
    if (update.exitCode) {
      task.exitCode = *update.exitCode;
      task.hasExitCode = true;
    }
    return true;
  }
  if (update.state == TaskState::kKillInitiated && task.killReason == TaskReason::kNone) {
    task.killReason = update.reason == TaskReason::kNone ? TaskReason::kKilled : update.reason;
  }
  setState(task, update.state, nowMs);
  if (!update.message.empty()) task.message = update.message;
  if (update.state == TaskState::kStarted) {
    bool checked = edit.job().descriptor.container.readiness.has_value();
    setReady(task, update.ready.value_or(!checked), nowMs);
  }
  return true;
}

Status killJob(JobEdit& edit, int64_t nowMs) {
  if (edit.job().state == api::JobState::kFinished) {
    return fail(ErrorCode::kFailedPrecondition, "job " + edit.job().id + " is already finished");
  }
  if (edit.job().state == api::JobState::kAccepted) {
    JobRecord& job = edit.mutableJob();
    job.state = api::JobState::kKillInitiated;
    job.reason = "killed";
    job.message = "killed by request";
    job.stateTimeMs = nowMs;
  }
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (!task.finished() && task.state != TaskState::kKillInitiated) {
      beginKill(edit.mutableTask(i), TaskReason::kKilled, nowMs);
    }
  }
  return {};
}

Status killTask(JobEdit& edit, const std::string& id, bool shrink, int64_t nowMs) {
  auto position = edit.findTaskId(id);
  if (!position) return fail(ErrorCode::kNotFound, "task " + id + " is not active");
  if (edit.task(*position).finished()) {
    return fail(ErrorCode::kFailedPrecondition, "task " + id + " is already finished");
  }
  if (shrink) {
    if (edit.job().descriptor.isBatch()) {
      return fail(ErrorCode::kFailedPrecondition, "shrink applies to service jobs only");
    }
    const api::Capacity& capacity = edit.job().capacity;
    if (capacity.desired <= capacity.min) {
      return fail(ErrorCode::kFailedPrecondition,
                  "shrinking would take desired below min (" + std::to_string(capacity.min) + ")");
    }
    edit.mutableJob().capacity.desired--;
  }
  beginKill(edit.mutableTask(*position), shrink ? TaskReason::kScaledDown : TaskReason::kKilled,
            nowMs);
  return {};
}

bool evictTask(JobEdit& edit, const std::string& taskId, int64_t nowMs) {
  auto position = edit.findTaskId(taskId);
  if (!position) return false;
  const TaskRecord& task = edit.task(*position);
  if (task.finished() || task.state == TaskState::kKillInitiated) return false;
  beginKill(edit.mutableTask(*position), TaskReason::kEvicted, nowMs);
  // Preemption is a voluntary disruption: it counts against the budget's rate like a drain move.
  const JobRecord& job = edit.job();
  if (job.descriptor.service && job.descriptor.service->disruptionBudget &&
      job.descriptor.service->disruptionBudget->rateTasks > 0) {
    int64_t intervalMs = job.descriptor.service->disruptionBudget->rateIntervalMs;
    std::vector<int64_t> recent;
    for (int64_t at : job.disruptionsMs) {
      if (at > nowMs - intervalMs) recent.push_back(at);  // Keep only what the rate still needs.
    }
    recent.push_back(nowMs);
    edit.mutableJob().disruptionsMs = std::move(recent);
  }
  return true;
}

std::optional<int64_t> evictionAllowance(const JobView& view, const std::set<std::string>& evicting,
                                         int64_t nowMs) {
  const JobRecord& job = view.job;
  if (!job.descriptor.service || !job.descriptor.service->disruptionBudget) return std::nullopt;
  const api::DisruptionBudget& budget = *job.descriptor.service->disruptionBudget;
  int64_t ready = 0;
  std::vector<int64_t> recent;
  for (int64_t at : job.disruptionsMs) {
    if (budget.rateTasks == 0 || at > nowMs - budget.rateIntervalMs) recent.push_back(at);
  }
  for (const TaskRecord& task : view.tasks) {
    if (task.finished() || task.state == TaskState::kKillInitiated) continue;
    if (evicting.contains(task.id)) {
      recent.push_back(nowMs);
    } else if (task.ready) {
      ++ready;
    }
  }
  return disruptionAllowance(budget, job.capacity.desired, ready, recent, nowMs).tasks;
}

int64_t drainTasksOnNode(JobEdit& edit, const std::string& nodeId, int64_t deadlineAtMs) {
  if (edit.job().state != api::JobState::kAccepted) return 0;
  const bool batch = edit.job().descriptor.isBatch();
  int64_t marked = 0;
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (task.nodeId != nodeId || task.finished() || task.state == TaskState::kKillInitiated ||
        task.killReason != TaskReason::kNone) {
      continue;
    }
    if (batch) {
      if (task.draining && task.drainDeadlineMs == deadlineAtMs) continue;
      edit.mutableTask(i).draining = true;
      edit.mutableTask(i).drainDeadlineMs = deadlineAtMs;
    } else {
      if (task.draining) continue;
      edit.mutableTask(i).draining = true;
    }
    ++marked;
  }
  return marked;
}

void launchTask(JobEdit& edit, size_t position, const std::string& nodeId, int64_t nowMs) {
  TaskRecord& task = edit.mutableTask(position);
  task.nodeId = nodeId;
  task.notBeforeMs = 0;
  setState(task, TaskState::kLaunched, nowMs);
}

void finishTasksOnNode(JobEdit& edit, const std::string& nodeId, TaskReason reason,
                       const std::string& message, int64_t nowMs) {
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (!task.finished() && task.state != TaskState::kAccepted && task.nodeId == nodeId) {
      finish(edit.mutableTask(i), reason, message, nowMs);
    }
  }
}

std::optional<Endpoint> endpointOf(const JobRecord& job, const TaskRecord& task) {
  if (!task.ready || task.state != TaskState::kStarted || task.killReason != TaskReason::kNone ||
      job.state != api::JobState::kAccepted) {
    return std::nullopt;
  }
  return Endpoint{task.id, task.ip, task.nodeId, job.descriptor.container.ports, task.readySinceMs};
}

std::vector<Endpoint> endpointsOf(const JobView& view) {
  std::vector<Endpoint> out;
  for (const TaskRecord& task : view.tasks) {
    if (auto endpoint = endpointOf(view.job, task)) out.push_back(std::move(*endpoint));
  }
  std::sort(out.begin(), out.end(),
            [](const Endpoint& a, const Endpoint& b) { return a.taskId < b.taskId; });
  return out;
}

nlohmann::json toWire(const Endpoint& endpoint) {
  return {{"taskId", endpoint.taskId},
          {"ip", endpoint.ip},
          {"nodeId", endpoint.nodeId},
          {"ports", endpoint.ports},
          {"readySinceMs", endpoint.readySinceMs}};
}

bool wantsPlacement(const TaskRecord& task, int64_t nowMs) {
  return task.state == TaskState::kAccepted && task.notBeforeMs <= nowMs;
}

int64_t reconcile(JobEdit& edit, int64_t nowMs, const LifecycleConfig& config) {
  int64_t nextDeadline = 0;
  if (edit.job().state == api::JobState::kFinished) return 0;
  const bool batch = edit.job().descriptor.isBatch();
  const bool killing = edit.job().state == api::JobState::kKillInitiated;

  // Timeouts and the runtime limit.
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    auto since = [&](TaskState s) { return task.stateTimeMs(s); };
    switch (task.state) {
      case TaskState::kLaunched:
      case TaskState::kStartInitiated: {
        int64_t timeout = task.state == TaskState::kLaunched ? config.launchedTimeoutMs
                                                             : config.startInitiatedTimeoutMs;
        int64_t deadline = since(task.state) + timeout;
        if (nowMs >= deadline) {
          finish(edit.mutableTask(i), TaskReason::kStuckInState,
                 "stuck in " + std::string(api::taskStateName(task.state)) + " for " +
                     std::to_string(nowMs - since(task.state)) + " ms",
                 nowMs);
        } else {
          noteDeadline(nextDeadline, deadline);
        }
        break;
      }
      case TaskState::kStarted: {
        if (!batch) break;
        if (task.draining && task.killReason == TaskReason::kNone) {
          if (nowMs >= task.drainDeadlineMs) {
            beginKill(edit.mutableTask(i), TaskReason::kEvicted, nowMs);
            edit.mutableTask(i).message = "moved off a draining node at its drain deadline";
            noteDeadline(nextDeadline, nowMs + config.killInitiatedTimeoutMs);
            break;
          }
          noteDeadline(nextDeadline, task.drainDeadlineMs);
        }
        int64_t deadline =
            since(TaskState::kStarted) + edit.job().descriptor.batch->runtimeLimitSec * 1000;
        if (nowMs >= deadline) {
          beginKill(edit.mutableTask(i), TaskReason::kRuntimeLimitExceeded, nowMs);
          noteDeadline(nextDeadline, nowMs + config.killInitiatedTimeoutMs);
        } else {
          noteDeadline(nextDeadline, deadline);
        }
        break;
      }
      case TaskState::kKillInitiated: {
        int64_t deadline = since(TaskState::kKillInitiated) + config.killInitiatedTimeoutMs;
        if (nowMs >= deadline) {
          finish(edit.mutableTask(i), TaskReason::kStuckInState,
                 "did not stop within " + std::to_string(config.killInitiatedTimeoutMs) +
                     " ms of the kill",
                 nowMs);
        } else {
          noteDeadline(nextDeadline, deadline);
        }
        break;
      }
      case TaskState::kAccepted:
        if (task.notBeforeMs > nowMs) noteDeadline(nextDeadline, task.notBeforeMs);
        break;
      case TaskState::kFinished:
        break;
    }
  }

  if (killing) {
    bool allFinished = true;
    for (size_t i = 0; i < edit.taskCount(); ++i) allFinished &= edit.task(i).finished();
    if (allFinished) finishJob(edit, "killed", "every task stopped after the kill", nowMs);
    return allFinished ? 0 : nextDeadline;
  }

  if (batch) {
    bool allDone = true;
    int64_t failed = 0;
    const TaskRecord* lastFailed = nullptr;
    for (size_t i = 0; i < edit.taskCount(); ++i) {
      const TaskRecord& task = edit.task(i);
      if (!task.finished()) {
        allDone = false;
        continue;
      }
      if (batchSlotWantsRetry(edit.job(), task, config)) {
        TaskRecord next = nextAttempt(edit.job(), task, nowMs, config);
        if (next.notBeforeMs > nowMs) noteDeadline(nextDeadline, next.notBeforeMs);
        edit.replaceTask(i, std::move(next));
        allDone = false;
      } else if (task.reason != TaskReason::kNormal) {
        ++failed;
        if (lastFailed == nullptr || task.stateTimeMs(TaskState::kFinished) >=
                                         lastFailed->stateTimeMs(TaskState::kFinished)) {
          lastFailed = &task;
        }
      }
    }
    if (allDone) {
      if (failed == 0) {
        finishJob(edit, "normal", "every task finished normally", nowMs);
      } else {
        // The last failure's reason and message, so the job alone says why (a missing image).
        std::string message =
            std::to_string(failed) + " of " + std::to_string(edit.taskCount()) + " tasks failed";
        message += " (task " + std::to_string(lastFailed->index) + ": " +
                   std::string(api::taskReasonName(lastFailed->reason));
        if (!lastFailed->message.empty()) message += ": " + lastFailed->message;
        message += ")";
        finishJob(edit, "failed", message, nowMs);
      }
    }
    return nextDeadline;
  }

  // During a rollout, the rollout decides which tasks start and stop.
  recordPinnedImages(edit);
  if (edit.job().rollout.active) {
    for (int pass = 0; pass < 2 && edit.job().rollout.active; ++pass) {
      if (!rolloutPass(edit, nowMs, nextDeadline)) break;
    }
    if (edit.job().rollout.active) return nextDeadline;
  }

  // Service jobs keep `desired` tasks that are neither finished nor being killed; tasks moving
  // off a draining node do not count, so their replacements start (drainMoves bounds how many
  // move at once).
  std::vector<bool> moving = drainMoves(edit);
  int64_t active = 0;
  std::vector<size_t> alive;
  for (size_t i = 0; i < edit.taskCount(); ++i) {
    const TaskRecord& task = edit.task(i);
    if (!task.finished() && task.state != TaskState::kKillInitiated && !moving[i]) {
      ++active;
      alive.push_back(i);
    }
  }
  int64_t desired = edit.job().capacity.desired;
  if (active > desired) {
    // Scale down the newest tasks first, preferring those that never started.
    std::stable_sort(alive.begin(), alive.end(), [&](size_t a, size_t b) {
      bool aPending = edit.task(a).state == TaskState::kAccepted;
      bool bPending = edit.task(b).state == TaskState::kAccepted;
      if (aPending != bPending) return aPending;
      return edit.task(a).index > edit.task(b).index;
    });
    for (size_t k = 0; k < static_cast<size_t>(active - desired); ++k) {
      beginKill(edit.mutableTask(alive[k]), TaskReason::kScaledDown, nowMs);
    }
  }
  for (size_t i = 0; i < edit.taskCount() && active < desired; ++i) {
    const TaskRecord& task = edit.task(i);
    if (!task.finished()) continue;
    TaskRecord next = nextAttempt(edit.job(), task, nowMs, config);
    if (next.notBeforeMs > nowMs) noteDeadline(nextDeadline, next.notBeforeMs);
    edit.replaceTask(i, std::move(next));
    ++active;
  }
  while (active < desired) {
    TaskRecord task;
    task.specRevision = edit.job().specRevision;
    task.index = edit.job().nextIndex;
    task.id = taskId(edit.job().id, task.index, 0);
    setState(task, TaskState::kAccepted, nowMs);
    edit.mutableJob().nextIndex++;
    edit.appendTask(std::move(task));
    ++active;
  }
  stopDrainedTasks(edit, moving, nowMs, nextDeadline);
  return nextDeadline;
}

}  // namespace skiff::controlplane
