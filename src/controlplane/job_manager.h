#pragma once

// The job manager: skiffd's in-memory view of jobs, tasks and nodes, kept in step with the store.
//
// Placement is separate: a scheduler loop runs batched iterations of `scheduler::Scheduler` over
// the jobs with pending tasks and hands each job its placements (and evictions) as commands, so
// they too become durable before memory changes.
//
// Every job has its own reconcile loop (a coroutine) that owns the job's state: API commands and
// agent reports are queued to it, it applies them together with the lifecycle rules of
// `job_logic.h`, writes the result to the store, and only after the write is durable applies it
// in memory and answers the callers. A store failure therefore never leaves memory ahead of disk.
//
// Threading: all state lives on one strand. Public methods may be called from any executor; the
// returned awaitables resume on the caller's executor.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/error.h"
#include "common/timer.h"
#include "controlplane/address_blocks.h"
#include "controlplane/capacity_groups.h"
#include "controlplane/job_logic.h"
#include "controlplane/scheduler/scheduler.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

namespace asio = boost::asio;

struct ManagerConfig {
  LifecycleConfig lifecycle;
  int64_t nodeHeartbeatTimeoutMs = 30'000;  // A node silent this long is Lost.
  int64_t nodeCheckIntervalMs = 1'000;
  // Pending tasks one scheduling iteration considers at most (gangs are never split).
  int64_t maxTasksPerIteration = 20'000;
  // While tasks stay pending, an iteration runs at least this often even when nothing changed.
  // Parked critical jobs (their tasks found no node; preemption allowances change with time) are
  // tried again this often.
  int64_t schedulerRetryMs = 1'000;
  // Parked flex jobs wait for a change in the cluster that could let them fit; they are tried
  // again at least this often as a safety net (Kubernetes flushes unschedulable pods likewise).
  int64_t parkedRetryMs = 30'000;
  // Container address blocks handed to nodes at registration (address_blocks.h).
  AddressPlan addressPlan;
  // A service that autoscales on `cpu` is given its tasks' average reported CPU use at most this
  // often; a task's report older than `usageFreshMs` no longer counts.
  int64_t cpuMetricIntervalMs = 5'000;
  int64_t usageFreshMs = 30'000;
};

// How long batch tasks on a draining node may run before they are moved (Nomad's default).
inline constexpr int64_t kDefaultDrainDeadlineMs = 3'600'000;

// What an agent's heartbeat says of one running task.
struct TaskUsage {
  double cpuCores = 0;  // CPU used since the previous heartbeat, in cores.
};

struct CreateJobResult {
  std::string id;
  std::string jobText;   // The job's wire form (docs/api.md) as JSON text.
  bool created = false;  // False when an earlier request with the same idempotency key made it.
};

struct JobFilter {
  std::optional<api::JobState> state;
  std::optional<bool> batch;
  std::string applicationName;
  std::string capacityGroup;
  std::string owner;
};

struct Page {
  std::vector<nlohmann::json> items;
  std::string nextCursor;  // Empty on the last page.
};

struct NodeRegistration {
  std::string id;
  api::Resources resources;
  nlohmann::json attributes = nlohmann::json::object();
};

struct Assignments {
  int64_t revision = 0;
  // True: `assignments` lists every unfinished task of the node. False (a delta, only when asked
  // for): it lists the tasks whose assignment changed after the poll's revision (placed on the
  // node, or their desired state changed; not their own agent's status reports), and `removed`
  // the ids of tasks that left the node (finished or moved) after it.
  bool full = true;
  nlohmann::json assignments = nlohmann::json::array();
  // With `AssignmentsForm::kText`: the same list as JSON text (and `assignments` left empty).
  std::string assignmentsText;
  std::vector<std::string> removed;
};

// The scheduler loop's work so far: a count, not a timing, so tests can check that a submission
// costs work for its own tasks only.
struct SchedulingStats {
  int64_t iterations = 0;
  int64_t jobsScanned = 0;  // Queued jobs visited by iterations.
  int64_t tasksTried = 0;   // Tasks handed to the scheduler.
  int64_t pendingJobs = 0;  // Now: jobs queued for the next iteration.
  int64_t parkedJobs = 0;   // Now: jobs whose tasks wait for a change in the cluster.
};

// How `JobManager::assignments` hands out the list: a JSON value, or JSON text for the API's
// answer (built without a JSON document per task; each job's descriptor is serialized once).
enum class AssignmentsForm { kJson, kText };

class JobManager {
 public:
  // Timers are real (`SteadyTimerSource`).
  JobManager(asio::io_context& io, store::Store& store, const Clock& clock,
             std::unique_ptr<scheduler::Scheduler> scheduler, ManagerConfig config = {});
  // Every wait (job deadlines, scheduler retries, node checks, long polls) uses `timers`, whose
  // deadlines should follow `clock` (a `ManualTimerSource` over the same `ManualClock` in tests).
  JobManager(asio::io_context& io, store::Store& store, const Clock& clock, TimerSource& timers,
             std::unique_ptr<scheduler::Scheduler> scheduler, ManagerConfig config = {});
  ~JobManager();
  JobManager(const JobManager&) = delete;
  JobManager& operator=(const JobManager&) = delete;

  // Loads every job, task and node from the store and starts the reconcile loops. Call once,
  // before serving. Blocking.
  Status recover();
  asio::awaitable<SchedulingStats> schedulingStats();
  // Stops every loop; pending callers get kUnavailable.
  void stop();

  // Accepts a validated job. With an idempotency key, a repeat of an earlier request returns the
  // job it created (`created` false) and a different request under the same key fails with
  // kConflict. Answers once the job is durable.
  asio::awaitable<Result<CreateJobResult>> createJob(api::JobDescriptor descriptor,
                                                     std::string idempotencyKey);
  asio::awaitable<Result<nlohmann::json>> getJob(std::string jobId);
  asio::awaitable<Result<Page>> listJobs(JobFilter filter, std::string cursor, size_t limit);
  asio::awaitable<Result<nlohmann::json>> killJob(std::string jobId);
  asio::awaitable<Result<nlohmann::json>> updateCapacity(std::string jobId,
                                                         std::optional<int64_t> min,
                                                         std::optional<int64_t> desired,
                                                         std::optional<int64_t> max);
  asio::awaitable<Result<nlohmann::json>> setEnabled(std::string jobId, bool enabled);
  // Rolling updates of services (job_logic.h: updateContainer, promoteRollout, rollbackTo).
  asio::awaitable<Result<nlohmann::json>> updateContainer(std::string jobId,
                                                          api::Container container);
  asio::awaitable<Result<nlohmann::json>> promote(std::string jobId);
  asio::awaitable<Result<nlohmann::json>> rollback(std::string jobId,
                                                   std::optional<int64_t> revision);
  asio::awaitable<Result<nlohmann::json>> history(std::string jobId);
  // Autoscaling metric values pushed for a service (job_logic.h, applyMetrics).
  asio::awaitable<Result<nlohmann::json>> pushMetrics(std::string jobId,
                                                      std::map<std::string, double> metrics);

  asio::awaitable<Result<nlohmann::json>> getTask(std::string taskId);
  asio::awaitable<Result<Page>> listTasks(std::string jobId, std::optional<api::TaskState> state,
                                          std::string cursor, size_t limit);
  asio::awaitable<Result<nlohmann::json>> killTask(std::string taskId, bool shrink);
  // Why a task has no node yet (see docs/api.md, GET /v1/tasks/{id}/why).
  asio::awaitable<Result<nlohmann::json>> whyTask(std::string taskId);

  // Capacity groups. `create` fails with kAlreadyExists when the name is taken; `replace`
  // creates or replaces.
  asio::awaitable<Result<nlohmann::json>> putCapacityGroup(scheduler::CapacityGroupSpec spec,
                                                           bool createOnly);
  asio::awaitable<Result<nlohmann::json>> getCapacityGroup(std::string name);
  asio::awaitable<Result<nlohmann::json>> listCapacityGroups();
  asio::awaitable<Result<nlohmann::json>> deleteCapacityGroup(std::string name);

  // Registers or re-registers a node. `created` is set when it is new.
  asio::awaitable<Result<nlohmann::json>> registerNode(NodeRegistration registration,
                                                       bool* created);
  // Marks the node alive and takes its tasks' usage. Usage of tasks not placed on the node is
  // ignored; services autoscaling on `cpu` get the average use of their tasks in percent of the
  // cores each asked for (see ManagerConfig::cpuMetricIntervalMs).
  asio::awaitable<Result<nlohmann::json>> heartbeat(std::string nodeId,
                                                    std::map<std::string, TaskUsage> usage = {});
  asio::awaitable<Result<nlohmann::json>> listNodes();
  asio::awaitable<Result<nlohmann::json>> getNode(std::string nodeId);
  // Stops new placements on the node and moves its tasks off: service tasks within their
  // disruption budgets, batch tasks once `deadlineMs` from now has passed (drainTasksOnNode).
  // Draining again sets a new deadline.
  asio::awaitable<Result<nlohmann::json>> drainNode(std::string nodeId,
                                                    int64_t deadlineMs = kDefaultDrainDeadlineMs);
  // Sets (value) and removes (nullopt) operator labels on a node.
  asio::awaitable<Result<nlohmann::json>> labelNode(
      std::string nodeId, std::map<std::string, std::optional<std::string>> changes);
  // Long poll: answers when the node's assignments changed after `afterRevision`, or after
  // `waitMs`; at once when `afterRevision` is newer than the node's revision (skiffd restarted
  // from an older state). With `delta`, answers with the changes after `afterRevision` when the
  // node's bounded memory of changes reaches back that far (an empty delta when the wait timed
  // out), and with the full list otherwise (revision 0, re-registration, restart).
  asio::awaitable<Result<Assignments>> assignments(std::string nodeId, int64_t afterRevision,
                                                   int64_t waitMs,
                                                   AssignmentsForm form = AssignmentsForm::kJson,
                                                   bool delta = false);
  // Applies agent reports for tasks on `nodeId`; returns how many changed something.
  asio::awaitable<Result<int64_t>> applyTaskStatus(std::string nodeId,
                                                   std::vector<TaskStatusUpdate> updates);

  // Number of jobs and of tasks held in memory (for tests and benchmarks).
  asio::awaitable<std::pair<size_t, size_t>> counts();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace skiff::controlplane
