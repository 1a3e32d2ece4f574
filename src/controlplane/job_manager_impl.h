#pragma once

// The job manager's internals, shared by its .cpp files and by nothing else: the per-job actor,
// the per-node state, and `JobManager::Impl`, which owns them on one strand. Each concern lives
// in its own file:
//   job_manager.cpp          the facade: job, task and capacity-group calls
//   job_loop.cpp             each job's reconcile loop, its commits and node bookkeeping
//   scheduling_loop.cpp      the scheduler loop: queued and parked jobs, placements, evictions
//   node_tracker.cpp         nodes: registration, heartbeats, lost-node checks, assignments
//   job_manager_recover.cpp  rebuilding the state from the store
//   job_manager_wire.cpp     JSON answers and small helpers

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "common/async.h"
#include "common/log.h"
#include "common/timer.h"
#include "controlplane/job_manager.h"
#include "controlplane/records.h"

namespace skiff::controlplane {
namespace manager_internal {

using nlohmann::json;
using Strand = asio::strand<asio::io_context::executor_type>;

std::string sha256Hex(const std::string& data);

struct Command {
  std::function<Status(JobEdit&, int64_t nowMs)> apply;
  // Called on the strand once the command's effect is durable (or failed); may be empty.
  std::function<void(const Status&, const JobView&)> done;
};

struct JobActor {
  JobView view;
  scheduler::JobShape shape;  // What the scheduler needs of the job; fixed for its life.
  // A list: a deque allocates its first block when constructed, for every job, and most jobs
  // never get a command.
  std::list<Command> mailbox;
  std::unique_ptr<Timer> timer;
  int64_t deadlineMs = 0;
  bool wake = false;
  bool loopRunning = false;
  // The descriptor as JSON text for assignment answers, and the job revision it was made at.
  std::string descriptorText;
  int64_t descriptorRevision = -1;
  // The latest CPU use its agents reported per running task (cores, when), for `cpu` autoscaling.
  struct CpuReport {
    double cores = 0;
    int64_t atMs = 0;
  };
  std::unordered_map<std::string, CpuReport> cpuReports;
  int64_t cpuMetricAtMs = 0;  // When the `cpu` metric was last handed to the autoscaler.
};

bool autoscalesOnCpu(const api::JobDescriptor& descriptor);

// The average CPU use of the job's running tasks with a fresh report, in percent of the cores
// each task asked for; nullopt when no task has one. Reports of finished tasks are dropped.
std::optional<double> averageCpuPercent(JobActor& actor, int64_t nowMs, int64_t freshMs);

// How many task removals a node remembers for delta answers; an agent further behind gets the
// full list.
constexpr size_t kRemovedLogLimit = 256;

struct NodeState {
  NodeRecord record;
  int64_t lastHeartbeatMs = 0;
  bool lost = false;
  // Unfinished tasks placed on the node, each with the node revision of its last change.
  std::map<std::string, int64_t> tasks;
  int64_t revision = 0;
  // Tasks that left the node (finished or moved), oldest first, with the node revision they left
  // at: the `removed` of delta answers. At most kRemovedLogLimit entries.
  std::deque<std::pair<int64_t, std::string>> removedLog;
  // Delta answers cover the changes after this revision; an older poll gets the full list.
  int64_t deltaFloor = 0;
  std::vector<std::shared_ptr<Timer>> waiters;
};

std::string nodeStateName(const NodeState& node);

json nodeToWire(const NodeState& node, const api::Resources& allocated);

json jobToWire(const JobView& view);
// `jobToWire(view)` as JSON text, taking the descriptor's JSON text from a caller that already
// wrote it.
std::string jobToWireText(const JobView& view, std::string_view descriptorText);

bool matchesFilter(const JobRecord& job, const JobFilter& filter);

// The scheduler's view of a node: agent attributes as strings, overlaid with operator labels.
scheduler::NodeSpec nodeSpec(const NodeState& node);

// JSON text as the API writes it (invalid UTF-8 from agents is replaced, not thrown on).
std::string dumpText(const json& value);

Error unavailable();

}  // namespace manager_internal

using namespace manager_internal;

struct JobManager::Impl : std::enable_shared_from_this<Impl> {
  asio::io_context& io;
  store::Store& store;
  const Clock& clock;
  TimerSource& timers;
  std::unique_ptr<scheduler::Scheduler> scheduler;
  ManagerConfig config;
  Strand strand;

  std::map<std::string, std::unique_ptr<JobActor>> jobs;
  struct IdempotencyEntry {
    std::string jobId;
    std::string requestHash;
  };
  std::unordered_map<std::string, IdempotencyEntry> idempotency;
  // Keys whose first request is being written; later requests with the key wait for it.
  std::unordered_map<std::string, std::vector<std::shared_ptr<Timer>>> inflightKeys;
  std::map<std::string, NodeState> nodes;
  // Every node's address block -> the node, and where the search for a free block goes on. A
  // registration holds its block from the moment it chooses it: the strand runs another
  // registration while one awaits its commit, and both must not take the same block.
  std::unordered_map<std::string, std::string> blockHolders;
  uint64_t blockSearchFrom = 0;
  // Jobs that may have tasks wanting a node that were not tried since the cluster last changed,
  // in id (= submission) order: what the next iteration considers.
  std::set<std::string> pendingJobs;
  // Jobs whose wanting tasks found no node when last tried, with those tasks. They wait for a
  // change that could let them fit (a node added, back or relabelled, resources freed, a
  // capacity group changed) or for `schedulerRetryMs`, like Kubernetes's unschedulable pods:
  // a submission then costs the scheduler work for its own tasks only, however many wait.
  std::map<std::string, std::unordered_set<std::string>> parkedJobs;
  // The parked jobs of the critical tier, tried again every schedulerRetryMs.
  std::set<std::string> parkedCritical;
  bool clusterChangedSinceIteration = false;
  int64_t lastRetryOfParkedMs = 0;
  int64_t lastRetryOfCriticalMs = 0;
  SchedulingStats stats;
  // Tasks the scheduler placed whose launch is not yet durable.
  std::unordered_set<std::string> launching;
  // Per job, tasks the scheduler chose to evict whose eviction is not yet durable.
  std::map<std::string, std::set<std::string>> evictionsInFlight;
  std::map<std::string, CapacityGroupRecord> capacityGroups;
  std::unique_ptr<Timer> schedulerTimer;
  bool schedulerWake = false;
  std::string flexRotation;  // Where the next iteration's flex pass starts.
  size_t taskCount = 0;
  int64_t revisionBase = 0;
  bool stopped = false;
  std::unique_ptr<Timer> nodeTimer;

  Impl(asio::io_context& ioContext, store::Store& s, const Clock& c, TimerSource& t,
       std::unique_ptr<scheduler::Scheduler> p, ManagerConfig cfg)
      : io(ioContext),
        store(s),
        clock(c),
        timers(t),
        scheduler(std::move(p)),
        config(cfg),
        strand(asio::make_strand(ioContext)) {}

  // Runs `body` on the strand and returns its result to the caller's executor.
  template <typename T, typename Body>
  asio::awaitable<T> onStrand(Body body) {
    co_return co_await asio::co_spawn(strand, std::move(body), asio::use_awaitable);
  }

  asio::awaitable<Result<store::TxnResult>> commit(store::Txn txn);

  // ---- Job loops ----

  void ensureLoop(JobActor* actor);

  void wakeJob(JobActor* actor);

  void post(JobActor* actor, Command command);

  static asio::awaitable<void> runJob(std::shared_ptr<Impl> self, JobActor* actor);

  asio::awaitable<void> step(JobActor* actor);

  // Records the CPU use a node reported for its tasks and hands each service that autoscales on
  // `cpu` its tasks' average, at most once per cpuMetricIntervalMs. The metric goes through the
  // job's loop like a pushed one, so the decision is recorded the same way.
  void takeUsage(const NodeState& node, const std::map<std::string, TaskUsage>& usage);

  // Queues the job for the scheduler when some task wants a node now. A parked job is queued
  // again only for a wanting task it was not parked with (a new task, a retry).
  void notePending(JobActor* actor, int64_t now);

  // ---- Scheduling ----

  void wakeScheduler();

  // Something happened that could let parked tasks fit: the next iteration tries them again.
  void clusterChanged();

  void unparkAll(int64_t now);
  void unparkCritical(int64_t now);
  void forgetParked(const std::string& jobId);
  // How long the scheduler loop may sleep before a parked job is due for a retry.
  int64_t untilParkedRetryMs(int64_t now) const;

  void startScheduler();

  static asio::awaitable<void> runScheduler(std::shared_ptr<Impl> self);

  // The scheduler's question during an iteration: how many more tasks of a job preemption may
  // evict, by its disruption budget, counting evictions not yet durable (evictionAllowance).
  struct EvictionAllowances final : scheduler::DisruptionAllowances {
    EvictionAllowances(Impl& impl, int64_t nowMs) : impl(impl), nowMs(nowMs) {}
    std::optional<int64_t> allowance(const std::string& jobId) override {
      JobActor* actor = impl.findJob(jobId);
      if (actor == nullptr) return std::nullopt;
      static const std::set<std::string> kNone;
      auto inFlight = impl.evictionsInFlight.find(jobId);
      return evictionAllowance(
          actor->view, inFlight == impl.evictionsInFlight.end() ? kNone : inFlight->second, nowMs);
    }
    Impl& impl;
    int64_t nowMs;
  };

  // One scheduling iteration: critical jobs first, then flex jobs from where the last
  // truncated iteration stopped. Returns true when another iteration should follow at once.
  bool iterate();

  // Hands placements to the job's loop: it launches the tasks that still want a node (on nodes
  // still usable) and the scheduler forgets the rest, or all of them if the write fails.
  void postLaunch(const std::string& jobId,
                  std::vector<std::pair<std::string, std::string>> placements);

  // Hands evictions to the job's loop; until they are durable (or failed) they stay in
  // `evictionsInFlight`, so the job's disruption allowance already counts them.
  void postEvictions(const std::string& jobId, std::vector<std::string> taskIds);

  store::Txn buildTxn(const JobEdit& edit);

  json wire(const NodeState& node) const;

  void bumpNode(const std::string& nodeId);

  // Which tasks of a node one durable edit changed: still (or newly) on it, or gone from it.
  struct NodeChange {
    std::vector<std::string> onNode;
    std::vector<std::string> left;
  };

  // Moves the node's revision once and stamps the changed tasks with it, so a delta answer
  // (changes after the poll's revision) and the revision it carries come from one point in time.
  void applyNodeChange(const std::string& nodeId, const NodeChange& change);

  // Node bookkeeping for a durable edit, before it is applied to the view.
  void account(JobActor* actor, const JobEdit& edit);

  // ---- Jobs ----

  JobActor* findJob(const std::string& id);

  // Sends `apply` to the job's loop and answers with the job once it is durable.
  asio::awaitable<Result<json>> jobCommand(std::string jobId,
                                           std::function<Status(JobEdit&, int64_t)> apply);

  // `descriptorText` is `api::toJson(descriptor).dump()`, written once for the request hash,
  // the stored record and the answer.
  asio::awaitable<Result<CreateJobResult>> create(api::JobDescriptor descriptor,
                                                  std::string descriptorText, std::string key,
                                                  std::string requestHash);

  // ---- Nodes ----

  void startNodeChecks();

  static asio::awaitable<void> checkNodes(std::shared_ptr<Impl> self);

  // The node's assignments as a JSON array in text: every unfinished task of the node, or (with
  // `after` set) those changed after that node revision. Full answers list every task of the
  // node, so this is built without a JSON document per task and with each job's descriptor
  // serialized once per job revision.
  std::string assignmentsFor(const NodeState& node, std::optional<int64_t> after = std::nullopt);
};

}  // namespace skiff::controlplane
