#pragma once

// The decisions of a job's reconcile loop, as pure functions of the job, its tasks and the time.
//
// Nothing here does I/O or reads a clock: the caller passes `nowMs`, collects the changes in a
// `JobEdit`, makes them durable, and only then applies them to its in-memory `JobView`. That
// keeps every retry, timeout and runtime-limit rule testable with a manual clock.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/states.h"
#include "common/error.h"
#include "controlplane/records.h"

namespace skiff::controlplane {

struct LifecycleConfig {
  int64_t launchedTimeoutMs = 120'000;        // Launched without StartInitiated.
  int64_t startInitiatedTimeoutMs = 600'000;  // StartInitiated without Started (image pulls).
  int64_t killInitiatedTimeoutMs = 300'000;   // KillInitiated without Finished.
  int64_t systemRetryDelayMs = 1'000;         // Delay before retrying after a system error.
  // A batch task slot whose attempts end in a system error this many times in a row without
  // starting (after the first failure: retries) is not retried again; the job then finishes
  // failed with the last attempt's reason and message. Services retry without a bound.
  int64_t maxSystemRetries = 10;
};

// A job and the latest attempt of each of its task slots, ordered by index.
struct JobView {
  JobRecord job;
  std::vector<TaskRecord> tasks;

  // The position of the task with `index`, if any.
  std::optional<size_t> findIndex(int64_t index) const;
};

// Changes to a `JobView`, collected but not yet applied.
class JobEdit {
 public:
  explicit JobEdit(const JobView& view) : view_(view) {}

  const JobRecord& job() const { return job_ ? *job_ : view_.job; }
  JobRecord& mutableJob();

  size_t taskCount() const { return view_.tasks.size() + appended_.size(); }
  // The task at position `i`: the latest version of it in this edit.
  const TaskRecord& task(size_t i) const;
  TaskRecord& mutableTask(size_t i);
  std::optional<size_t> findIndex(int64_t index) const;
  std::optional<size_t> findTaskId(const std::string& taskId) const;

  // Adds a task with a new index.
  void appendTask(TaskRecord task);
  // Puts `next` (a retry) in the slot at position `i`; the current task there must be Finished
  // and is kept in the store as history.
  void replaceTask(size_t i, TaskRecord next);

  bool empty() const;
  // Every record this edit writes: the job if changed, then each changed or new task.
  bool jobChanged() const { return job_.has_value(); }
  std::vector<const TaskRecord*> changedTasks() const;

  // Applies the edit to `view`, which must be the view it was made from. `revision` is the
  // store revision that made the edit durable.
  void applyTo(JobView& view, store::Revision revision) &&;

 private:
  const JobView& view_;
  std::optional<JobRecord> job_;
  std::map<size_t, TaskRecord> changed_;       // Position in view_.tasks -> new version.
  std::map<size_t, TaskRecord> replacements_;  // Position -> the retry that takes the slot.
  std::vector<TaskRecord> appended_;
  std::vector<TaskRecord> history_;  // Finished attempts of appended tasks that were retried.
};

// A status report from an agent.
struct TaskStatusUpdate {
  std::string taskId;
  int64_t seq = 0;
  api::TaskState state = api::TaskState::kStarted;
  api::TaskReason reason = api::TaskReason::kNone;
  std::optional<int32_t> exitCode;
  std::string message;
  std::string image;  // The pinned image reference, when the agent resolved it.
  std::string ip;     // The container's address, when the agent gave it one.
  // The readiness check's verdict, when the agent reports one (only meaningful while Started).
  std::optional<bool> ready;
};

// Builds the view of a newly accepted job: its record and, for batch jobs, `size` Accepted tasks
// (service jobs get `desired` tasks).
JobView newJob(std::string id, api::JobDescriptor descriptor, std::string idempotencyKey,
               int64_t nowMs);

// Applies an agent's report. A task is ready while Started and not being killed: from the
// report that says `ready: true` (or from Started itself when the job has no readiness check)
// until one says `ready: false` or the task leaves Started. Stale (`seq` not above the last
// applied) and impossible transitions are ignored and reported as false; a report of Finished
// during a kill keeps the kill's reason.
bool applyStatus(JobEdit& edit, const TaskStatusUpdate& update, int64_t nowMs);

// Starts killing the whole job. Fails when it is already Finished.
Status killJob(JobEdit& edit, int64_t nowMs);

// Kills one task. With `shrink` (service jobs) the desired capacity drops by one so the task is
// not replaced.
Status killTask(JobEdit& edit, const std::string& taskId, bool shrink, int64_t nowMs);

// Evicts one task to make room for reserved work: it is killed with reason `evicted`, which does
// not count against the job's retries, and leaves the service's endpoints at once. For a service
// whose disruption budget has a rate, the eviction is recorded in `disruptionsMs`. False when the
// task is unknown, finished, or already being killed.
bool evictTask(JobEdit& edit, const std::string& taskId, int64_t nowMs);

// How many more tasks of the job preemption may evict now: for a service with a disruption
// budget, the budget's allowance (service_logic.h, disruptionAllowance) over its ready tasks and
// recent disruptions. `evicting` names tasks whose eviction was decided but is not applied yet:
// they count as disrupted now and as not ready. std::nullopt: no limit (batch jobs, services
// without a budget).
std::optional<int64_t> evictionAllowance(const JobView& view, const std::set<std::string>& evicting,
                                         int64_t nowMs);

// Changes a service job's capacity; unset fields keep their value.
Status updateCapacity(JobEdit& edit, std::optional<int64_t> min, std::optional<int64_t> desired,
                      std::optional<int64_t> max);
Status setEnabled(JobEdit& edit, bool enabled);

// Starts rolling a service to a new container spec (`container`, already validated): a new
// revision, rolled with the job's rollout strategy by `reconcile`. An identical spec changes
// nothing. Fails for batch jobs, finished or killed jobs, and specs that change resources,
// constraints or the security profile (placement is per job).
Status updateContainer(JobEdit& edit, const api::Container& container, int64_t nowMs);
// Lifts the canary pause of the rollout in progress.
Status promoteRollout(JobEdit& edit);
// Rolls back to `revision`, or to the revision before the current one (during a rollout: the one
// it started from).
Status rollbackTo(JobEdit& edit, std::optional<int64_t> revision, int64_t nowMs);
// The revisions of a service, newest first: number, image, pinned image, outcome, message.
nlohmann::json historyOf(const JobView& view);

// Takes pushed metric values (merged over earlier ones) and lets the job's autoscaling policies
// decide (service_logic.h, decideAutoscale): a change sets the desired capacity, and every change
// or cooldown hold is recorded in the job's `autoscale.lastDecision` with the values behind it.
// Fails for jobs without autoscaling policies and for jobs being killed.
Status applyMetrics(JobEdit& edit, const std::map<std::string, double>& metrics, int64_t nowMs);

// Marks the tasks on `nodeId` (a draining node) for moving. Service tasks: `reconcile` starts a
// replacement for each elsewhere and stops the old task once the replacement is ready and the job's
// disruption budget allows (without a budget: maxUnhealthy 0). Batch tasks may finish until
// `deadlineAtMs` (a later drain of the node moves it); then `reconcile` evicts them (reason
// `evicted`, not charged against retries) and they are placed again elsewhere.
// Returns how many tasks were marked.
int64_t drainTasksOnNode(JobEdit& edit, const std::string& nodeId, int64_t deadlineAtMs);

// Moves an Accepted task to Launched on `nodeId`.
void launchTask(JobEdit& edit, size_t position, const std::string& nodeId, int64_t nowMs);

// Marks every unfinished task on `nodeId` Finished with `reason` (lost nodes).
void finishTasksOnNode(JobEdit& edit, const std::string& nodeId, api::TaskReason reason,
                       const std::string& message, int64_t nowMs);

// One pass of the reconcile loop: timeouts, runtime limit, retries, service capacity (or, during
// a rollout, the rollout's next step: see service_logic.h) and job completion. Returns the time of
// the next deadline (0 when there is none).
int64_t reconcile(JobEdit& edit, int64_t nowMs, const LifecycleConfig& config);

// One address a job's traffic may go to: a ready task.
struct Endpoint {
  std::string taskId;
  std::string ip;
  std::string nodeId;
  std::vector<int64_t> ports;
  int64_t readySinceMs = 0;
};

// The endpoint of `task` when it is ready (and the job not being killed), else nullopt.
std::optional<Endpoint> endpointOf(const JobRecord& job, const TaskRecord& task);
// The job's ready tasks, ordered by task id.
std::vector<Endpoint> endpointsOf(const JobView& view);
nlohmann::json toWire(const Endpoint& endpoint);

// True when the task wants a node: Accepted and past its retry delay.
bool wantsPlacement(const TaskRecord& task, int64_t nowMs);

}  // namespace skiff::controlplane
