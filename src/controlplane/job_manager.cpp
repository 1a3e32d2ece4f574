#include "controlplane/job_manager.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <unordered_set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <openssl/evp.h>

#include "common/async.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/timer.h"

namespace skiff::controlplane {
namespace {

using nlohmann::json;
using Strand = asio::strand<asio::io_context::executor_type>;

std::string sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return hexEncode(digest, length);
}

struct Command {
  std::function<Status(JobEdit&, int64_t nowMs)> apply;
  // Called on the strand once the command's effect is durable (or failed); may be empty.
  std::function<void(const Status&, const JobView&)> done;
};

struct JobActor {
  JobView view;
  scheduler::JobShape shape;  // What the scheduler needs of the job; fixed for its life.
  std::deque<Command> mailbox;
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

bool autoscalesOnCpu(const api::JobDescriptor& descriptor) {
  if (!descriptor.service || !descriptor.service->autoscaling) return false;
  for (const api::ScalingPolicy& policy : descriptor.service->autoscaling->policies) {
    if (policy.metric == "cpu") return true;
  }
  return false;
}

// The average CPU use of the job's running tasks with a fresh report, in percent of the cores
// each task asked for; nullopt when no task has one. Reports of finished tasks are dropped.
std::optional<double> averageCpuPercent(JobActor& actor, int64_t nowMs, int64_t freshMs) {
  double requested = actor.view.job.descriptor.container.resources.cpu;
  if (requested <= 0) return std::nullopt;
  std::unordered_map<std::string, JobActor::CpuReport> kept;
  double sum = 0;
  int64_t count = 0;
  for (const TaskRecord& task : actor.view.tasks) {
    auto it = actor.cpuReports.find(task.id);
    if (it == actor.cpuReports.end() || task.finished()) continue;
    kept.insert(*it);
    if (task.state != api::TaskState::kStarted || task.killReason != api::TaskReason::kNone ||
        nowMs - it->second.atMs > freshMs) {
      continue;
    }
    sum += it->second.cores / requested * 100.0;
    ++count;
  }
  actor.cpuReports = std::move(kept);
  if (count == 0) return std::nullopt;
  return sum / static_cast<double>(count);
}

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

std::string nodeStateName(const NodeState& node) {
  if (node.lost) return "Lost";
  return node.record.draining ? "Draining" : "Ready";
}

json nodeToWire(const NodeState& node, const api::Resources& allocated) {
  json out = {{"id", node.record.id},
              {"resources", resourcesToJson(node.record.resources)},
              {"allocated", resourcesToJson(allocated)},
              {"attributes", node.record.attributes},
              {"labels", node.record.labels},
              {"network", {{"block", node.record.addressBlock}}},
              {"state", nodeStateName(node)},
              {"lastHeartbeatMs", node.lastHeartbeatMs},
              {"registeredAtMs", node.record.registeredAtMs},
              {"taskCount", node.tasks.size()},
              {"revision", node.record.modRevision}};
  if (node.record.draining) out["drainDeadlineMs"] = node.record.drainDeadlineMs;
  return out;
}

json jobToWire(const JobView& view) {
  json out = toWire(view.job);
  std::array<int64_t, api::kTaskStateCount> counts{};
  for (const TaskRecord& task : view.tasks) counts[static_cast<size_t>(task.state)]++;
  json taskCounts = json::object();
  for (int i = 0; i < api::kTaskStateCount; ++i) {
    taskCounts[std::string(api::taskStateName(static_cast<api::TaskState>(i)))] =
        counts[static_cast<size_t>(i)];
  }
  out["taskCounts"] = std::move(taskCounts);
  return out;
}

bool matchesFilter(const JobRecord& job, const JobFilter& filter) {
  if (filter.state && job.state != *filter.state) return false;
  if (filter.batch && job.descriptor.isBatch() != *filter.batch) return false;
  if (!filter.applicationName.empty() && job.descriptor.applicationName != filter.applicationName) {
    return false;
  }
  if (!filter.capacityGroup.empty() && job.descriptor.capacityGroup != filter.capacityGroup) {
    return false;
  }
  if (!filter.owner.empty() && job.descriptor.owner.teamEmail != filter.owner) return false;
  return true;
}

// The scheduler's view of a node: agent attributes as strings, overlaid with operator labels.
scheduler::NodeSpec nodeSpec(const NodeState& node) {
  scheduler::NodeSpec spec;
  spec.id = node.record.id;
  spec.capacity = node.record.resources;
  if (node.record.attributes.is_object()) {
    for (const auto& [key, value] : node.record.attributes.items()) {
      spec.attributes[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  for (const auto& [key, value] : node.record.labels) spec.attributes[key] = value;
  spec.schedulable = !node.lost && !node.record.draining;
  return spec;
}

// JSON text as the API writes it (invalid UTF-8 from agents is replaced, not thrown on).
std::string dumpText(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Error unavailable() {
  return Error(ErrorCode::kUnavailable, "skiffd is shutting down");
}

}  // namespace

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
  bool clusterChangedSinceIteration = false;
  int64_t lastRetryOfParkedMs = 0;
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

  asio::awaitable<Result<store::TxnResult>> commit(store::Txn txn) {
    Completion<Result<store::TxnResult>> done;
    store.commitAsync(std::move(txn),
                      [done](Result<store::TxnResult> result) { done.set(std::move(result)); });
    co_return co_await done.wait();
  }

  // ---- Job loops ----

  void ensureLoop(JobActor* actor) {
    if (!actor->timer) actor->timer = timers.make(strand);
    if (actor->loopRunning || stopped) return;
    actor->loopRunning = true;
    asio::co_spawn(strand, runJob(shared_from_this(), actor), asio::detached);
  }

  void wakeJob(JobActor* actor) {
    actor->wake = true;
    if (actor->loopRunning) {
      actor->timer->cancel();
    } else {
      ensureLoop(actor);
    }
  }

  void post(JobActor* actor, Command command) {
    actor->mailbox.push_back(std::move(command));
    wakeJob(actor);
  }

  static asio::awaitable<void> runJob(std::shared_ptr<Impl> self, JobActor* actor) {
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

  asio::awaitable<void> step(JobActor* actor) {
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
      parkedJobs.erase(actor->view.job.id);
    }
  }

  // Records the CPU use a node reported for its tasks and hands each service that autoscales on
  // `cpu` its tasks' average, at most once per cpuMetricIntervalMs. The metric goes through the
  // job's loop like a pushed one, so the decision is recorded the same way.
  void takeUsage(const NodeState& node, const std::map<std::string, TaskUsage>& usage) {
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

  // Queues the job for the scheduler when some task wants a node now. A parked job is queued
  // again only for a wanting task it was not parked with (a new task, a retry).
  void notePending(JobActor* actor, int64_t now) {
    if (actor->view.job.state != api::JobState::kAccepted) return;
    const std::string& jobId = actor->view.job.id;
    auto parked = parkedJobs.find(jobId);
    for (const TaskRecord& task : actor->view.tasks) {
      if (!wantsPlacement(task, now) || launching.contains(task.id)) continue;
      if (parked != parkedJobs.end() && parked->second.contains(task.id)) continue;
      if (parked != parkedJobs.end()) parkedJobs.erase(parked);
      pendingJobs.insert(jobId);
      wakeScheduler();
      return;
    }
  }

  // ---- Scheduling ----

  void wakeScheduler() {
    schedulerWake = true;
    if (schedulerTimer) schedulerTimer->cancel();
  }

  // Something happened that could let parked tasks fit: the next iteration tries them again.
  void clusterChanged() {
    clusterChangedSinceIteration = true;
    wakeScheduler();
  }

  void unparkAll(int64_t now) {
    for (auto& [jobId, tasks] : parkedJobs) pendingJobs.insert(jobId);
    parkedJobs.clear();
    lastRetryOfParkedMs = now;
  }

  void startScheduler() {
    schedulerTimer = timers.make(strand);
    schedulerWake = true;
    asio::co_spawn(strand, runScheduler(shared_from_this()), asio::detached);
  }

  static asio::awaitable<void> runScheduler(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      if (!self->schedulerWake) {
        if (self->pendingJobs.empty() && self->parkedJobs.empty()) {
          self->schedulerTimer->expiresNever();
        } else {
          self->schedulerTimer->expiresAfterMs(self->config.schedulerRetryMs);
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
  bool iterate() {
    int64_t now = clock.nowMs();
    if (clusterChangedSinceIteration ||
        (!parkedJobs.empty() && now - lastRetryOfParkedMs >= config.schedulerRetryMs)) {
      clusterChangedSinceIteration = false;
      unparkAll(now);
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

  // Hands placements to the job's loop: it launches the tasks that still want a node (on nodes
  // still usable) and the scheduler forgets the rest, or all of them if the write fails.
  void postLaunch(const std::string& jobId,
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
    auto apply = [self = shared_from_this(), shared, rejected](JobEdit& edit,
                                                               int64_t now) -> Status {
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

  // Hands evictions to the job's loop; until they are durable (or failed) they stay in
  // `evictionsInFlight`, so the job's disruption allowance already counts them.
  void postEvictions(const std::string& jobId, std::vector<std::string> taskIds) {
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

  store::Txn buildTxn(const JobEdit& edit) {
    store::Txn txn;
    const std::string& jobId = edit.job().id;
    if (edit.jobChanged())
      txn.onSuccess.push_back(store::Op::put(jobKey(jobId), toStored(edit.job())));
    for (const TaskRecord* task : edit.changedTasks()) {
      txn.onSuccess.push_back(store::Op::put(taskKey(jobId, task->id), toStored(*task)));
    }
    return txn;
  }

  json wire(const NodeState& node) const {
    return nodeToWire(node,
                      scheduler->allocated(node.record.id).value_or(api::Resources{0, 0, 0, 0, 0}));
  }

  void bumpNode(const std::string& nodeId) {
    auto it = nodes.find(nodeId);
    if (it == nodes.end()) return;
    it->second.revision++;
    for (auto& waiter : it->second.waiters) waiter->cancel();
    it->second.waiters.clear();
  }

  // Which tasks of a node one durable edit changed: still (or newly) on it, or gone from it.
  struct NodeChange {
    std::vector<std::string> onNode;
    std::vector<std::string> left;
  };

  // Moves the node's revision once and stamps the changed tasks with it, so a delta answer
  // (changes after the poll's revision) and the revision it carries come from one point in time.
  void applyNodeChange(const std::string& nodeId, const NodeChange& change) {
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

  // Node bookkeeping for a durable edit, before it is applied to the view.
  void account(JobActor* actor, const JobEdit& edit) {
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

  // ---- Jobs ----

  JobActor* findJob(const std::string& id) {
    auto it = jobs.find(id);
    return it == jobs.end() ? nullptr : it->second.get();
  }

  // Sends `apply` to the job's loop and answers with the job once it is durable.
  asio::awaitable<Result<json>> jobCommand(std::string jobId,
                                           std::function<Status(JobEdit&, int64_t)> apply) {
    Completion<Result<json>> done;
    asio::post(
        strand, [self = shared_from_this(), jobId, apply = std::move(apply), done]() mutable {
          JobActor* actor = self->findJob(jobId);
          if (actor == nullptr) {
            done.set(fail(ErrorCode::kNotFound, "job " + jobId + " not found"));
            return;
          }
          self->post(actor, {std::move(apply), [done](const Status& status, const JobView& view) {
                               if (!status) {
                                 done.set(std::unexpected(status.error()));
                               } else {
                                 done.set(jobToWire(view));
                               }
                             }});
        });
    co_return co_await done.wait();
  }

  asio::awaitable<Result<CreateJobResult>> create(api::JobDescriptor descriptor, std::string key,
                                                  std::string requestHash) {
    if (stopped) co_return std::unexpected(unavailable());
    if (!key.empty()) {
      // A request with the same key is being written: wait for its outcome.
      while (inflightKeys.contains(key)) {
        std::shared_ptr<Timer> waiter = timers.make(strand);
        waiter->expiresAfterMs(3'600'000);
        inflightKeys[key].push_back(waiter);
        co_await waiter->wait();
      }
      if (auto it = idempotency.find(key); it != idempotency.end()) {
        if (it->second.requestHash != requestHash) {
          co_return fail(
              ErrorCode::kConflict,
              "idempotency key was already used for a different job (" + it->second.jobId + ")");
        }
        JobActor* actor = findJob(it->second.jobId);
        if (actor == nullptr) {
          co_return fail(ErrorCode::kInternal, "idempotency key refers to a missing job");
        }
        co_return CreateJobResult{jobToWire(actor->view), false};
      }
      inflightKeys[key];
    }

    int64_t now = clock.nowMs();
    std::string jobId = newJobId(now);
    while (jobs.contains(jobId)) jobId = newJobId(now);
    auto actor = std::make_unique<JobActor>();
    actor->view = newJob(jobId, std::move(descriptor), key, now);
    actor->shape = scheduler::JobShape::of(jobId, actor->view.job.descriptor);

    store::Txn txn;
    if (!key.empty()) {
      txn.compares.push_back(store::Compare::notExists(idempotencyKey(key)));
      txn.onSuccess.push_back(store::Op::put(
          idempotencyKey(key), json({{"jobId", jobId}, {"requestHash", requestHash}}).dump()));
    }
    txn.onSuccess.push_back(store::Op::put(jobKey(jobId), toStored(actor->view.job)));
    for (const TaskRecord& task : actor->view.tasks) {
      txn.onSuccess.push_back(store::Op::put(taskKey(jobId, task.id), toStored(task)));
    }
    auto result = co_await commit(std::move(txn));

    if (!key.empty()) {
      auto waiters = std::move(inflightKeys[key]);
      inflightKeys.erase(key);
      for (auto& waiter : waiters) waiter->cancel();
    }
    if (!result) co_return std::unexpected(result.error().wrap("saving the job"));
    if (!result->succeeded) {
      co_return fail(ErrorCode::kConflict, "idempotency key is already in use");
    }
    actor->view.job.modRevision = result->revision;
    for (TaskRecord& task : actor->view.tasks) task.modRevision = result->revision;
    taskCount += actor->view.tasks.size();
    if (!key.empty()) idempotency[key] = {jobId, requestHash};
    JobActor* raw = actor.get();
    jobs.emplace(jobId, std::move(actor));
    log::info("job accepted", {{"jobId", jobId},
                               {"applicationName", raw->view.job.descriptor.applicationName},
                               {"tasks", raw->view.tasks.size()}});
    CreateJobResult created{jobToWire(raw->view), true};
    wakeJob(raw);
    co_return created;
  }

  // ---- Nodes ----

  void startNodeChecks() {
    nodeTimer = timers.make(strand);
    asio::co_spawn(strand, checkNodes(shared_from_this()), asio::detached);
  }

  static asio::awaitable<void> checkNodes(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      self->nodeTimer->expiresAfterMs(self->config.nodeCheckIntervalMs);
      co_await self->nodeTimer->wait();
      if (self->stopped) break;
      int64_t now = self->clock.nowMs();
      for (auto& [id, node] : self->nodes) {
        if (node.lost || now - node.lastHeartbeatMs < self->config.nodeHeartbeatTimeoutMs) continue;
        node.lost = true;
        self->scheduler->setSchedulable(id, false);
        log::warn("node lost", {{"nodeId", id}, {"tasks", node.tasks.size()}});
        std::set<std::string> jobIds;
        for (const auto& [taskId, changedAt] : node.tasks) {
          if (auto jobId = jobIdOfTask(taskId)) jobIds.insert(*jobId);
        }
        std::string nodeId = id;
        for (const std::string& jobId : jobIds) {
          if (JobActor* actor = self->findJob(jobId)) {
            self->post(actor, {[nodeId](JobEdit& edit, int64_t nowMs) -> Status {
                                 finishTasksOnNode(edit, nodeId, api::TaskReason::kLost,
                                                   "node " + nodeId + " stopped heartbeating",
                                                   nowMs);
                                 return {};
                               },
                               nullptr});
          }
        }
      }
    }
  }

  // The node's assignments as a JSON array in text: every unfinished task of the node, or (with
  // `after` set) those changed after that node revision. Full answers list every task of the
  // node, so this is built without a JSON document per task and with each job's descriptor
  // serialized once per job revision.
  std::string assignmentsFor(const NodeState& node, std::optional<int64_t> after = std::nullopt) {
    std::string list = "[";
    for (const auto& [taskId, changedAt] : node.tasks) {
      if (after && changedAt <= *after) continue;
      auto jobId = jobIdOfTask(taskId);
      if (!jobId) continue;
      JobActor* actor = findJob(*jobId);
      if (actor == nullptr) continue;
      JobEdit lookup(actor->view);
      auto position = lookup.findTaskId(taskId);
      if (!position) continue;
      const TaskRecord& task = actor->view.tasks[*position];
      if (actor->descriptorRevision != actor->view.job.modRevision ||
          actor->descriptorText.empty()) {
        actor->descriptorText = dumpText(api::toJson(actor->view.job.descriptor));
        actor->descriptorRevision = actor->view.job.modRevision;
      }
      if (list.size() > 1) list += ',';
      list += R"({"task":)";
      list += dumpText(toWire(task, *jobId));
      list += R"(,"job":{"id":)";
      list += dumpText(json(actor->view.job.id));
      list += R"(,"descriptor":)";
      // A service task runs the container of its own spec revision, whatever the job rolls to.
      const SpecRevision* revision = actor->view.job.findRevision(task.specRevision);
      if (revision != nullptr && task.specRevision != actor->view.job.specRevision) {
        api::JobDescriptor ofRevision = actor->view.job.descriptor;
        ofRevision.container = revision->container;
        list += dumpText(api::toJson(ofRevision));
      } else {
        list += actor->descriptorText;
      }
      list += R"(},"desiredState":)";
      list += task.state == api::TaskState::kKillInitiated ? R"("Killed"})" : R"("Running"})";
    }
    list += ']';
    return list;
  }
};

JobManager::JobManager(asio::io_context& io, store::Store& store, const Clock& clock,
                       std::unique_ptr<scheduler::Scheduler> scheduler, ManagerConfig config)
    : JobManager(io, store, clock, SteadyTimerSource::instance(), std::move(scheduler), config) {}

JobManager::JobManager(asio::io_context& io, store::Store& store, const Clock& clock,
                       TimerSource& timers, std::unique_ptr<scheduler::Scheduler> scheduler,
                       ManagerConfig config)
    : impl_(std::make_shared<Impl>(io, store, clock, timers, std::move(scheduler), config)) {}

JobManager::~JobManager() {
  stop();
}

Status JobManager::recover() {
  Impl& impl = *impl_;
  int64_t now = impl.clock.nowMs();

  auto nodesRevision =
      impl.store.scanPrefix(std::string(kNodesPrefix), [&](const store::KeyValue& kv) {
        auto node = nodeFromStored(kv.value, kv.modRevision);
        if (!node) {
          log::error("skipping corrupt node record",
                     {{"key", kv.key}, {"error", node.error().message()}});
          return;
        }
        NodeState state;
        state.record = std::move(*node);
        if (!state.record.addressBlock.empty()) {
          impl.blockHolders[state.record.addressBlock] = state.record.id;
        }
        state.lastHeartbeatMs = now;  // A grace period: agents heartbeat again after a restart.
        impl.nodes.emplace(state.record.id, std::move(state));
      });
  if (!nodesRevision) return std::unexpected(nodesRevision.error().wrap("loading nodes"));

  std::optional<Error> loadError;
  std::unique_ptr<JobActor> current;
  std::vector<TaskRecord> tasks;
  auto flush = [&] {
    if (!current) return;
    // Keep only the latest attempt of each slot; older attempts stay in the store as history.
    std::sort(tasks.begin(), tasks.end(), [](const TaskRecord& a, const TaskRecord& b) {
      return a.index != b.index ? a.index < b.index : a.resubmitNumber > b.resubmitNumber;
    });
    for (TaskRecord& task : tasks) {
      if (!current->view.tasks.empty() && current->view.tasks.back().index == task.index) continue;
      current->view.tasks.push_back(std::move(task));
    }
    tasks.clear();
    impl.taskCount += current->view.tasks.size();
    std::string id = current->view.job.id;
    impl.jobs.emplace(std::move(id), std::move(current));
  };
  auto jobsRevision =
      impl.store.scanPrefix(std::string(kJobsPrefix), [&](const store::KeyValue& kv) {
        if (loadError) return;
        if (kv.key.find("/t/") == std::string::npos) {
          flush();
          auto job = jobFromStored(kv.value, kv.modRevision);
          if (!job) {
            loadError = job.error().wrap("loading " + kv.key);
            return;
          }
          current = std::make_unique<JobActor>();
          current->view.job = std::move(*job);
          return;
        }
        auto task = taskFromStored(kv.value, kv.modRevision);
        if (!task) {
          loadError = task.error().wrap("loading " + kv.key);
          return;
        }
        if (current) tasks.push_back(std::move(*task));
      });
  if (!jobsRevision) return std::unexpected(jobsRevision.error().wrap("loading jobs"));
  if (loadError) return std::unexpected(*loadError);
  flush();

  // Idempotency keys carry the request hash; read them back for the keys the jobs name.
  auto keysRevision =
      impl.store.scanPrefix(std::string(kIdempotencyPrefix), [&](const store::KeyValue& kv) {
        json value = json::parse(kv.value, nullptr, false);
        if (!value.is_object()) return;
        std::string key = kv.key.substr(kIdempotencyPrefix.size());
        if (!value["jobId"].is_string() || !value["requestHash"].is_string()) {
          log::error("skipping corrupt idempotency record", {{"key", kv.key}});
          return;
        }
        impl.idempotency[key] = {value["jobId"].get<std::string>(),
                                 value["requestHash"].get<std::string>()};
      });
  if (!keysRevision) return std::unexpected(keysRevision.error().wrap("loading idempotency keys"));

  auto groupsRevision =
      impl.store.scanPrefix(std::string(kCapacityGroupsPrefix), [&](const store::KeyValue& kv) {
        auto group = capacityGroupFromStored(kv.value, kv.modRevision);
        if (!group) {
          log::error("skipping corrupt capacity group",
                     {{"key", kv.key}, {"error", group.error().message()}});
          return;
        }
        impl.scheduler->upsertCapacityGroup(group->spec);
        std::string name = group->spec.name;
        impl.capacityGroups.emplace(std::move(name), std::move(*group));
      });
  if (!groupsRevision)
    return std::unexpected(groupsRevision.error().wrap("loading capacity groups"));

  for (auto& [id, node] : impl.nodes) impl.scheduler->upsertNode(nodeSpec(node));
  for (auto& [id, actor] : impl.jobs) {
    actor->shape = scheduler::JobShape::of(id, actor->view.job.descriptor);
    for (const TaskRecord& task : actor->view.tasks) {
      if (task.finished() || task.nodeId.empty()) continue;
      auto node = impl.nodes.find(task.nodeId);
      if (node == impl.nodes.end()) continue;
      node->second.tasks.emplace(task.id, impl.store.currentRevision());
      impl.scheduler->addTask(actor->shape, task.id, task.nodeId);
    }
  }
  impl.revisionBase = impl.store.currentRevision();
  // Nothing before the restart is remembered: older polls get the full list.
  for (auto& [id, node] : impl.nodes) node.revision = node.deltaFloor = impl.revisionBase;
  for (auto& [id, actor] : impl.jobs) {
    actor->timer = impl.timers.make(impl.strand);
    if (actor->view.job.state != api::JobState::kFinished) {
      actor->wake = true;
      impl.ensureLoop(actor.get());
    }
  }
  impl.startNodeChecks();
  impl.startScheduler();
  log::info("state recovered", {{"jobs", impl.jobs.size()},
                                {"tasks", impl.taskCount},
                                {"nodes", impl.nodes.size()},
                                {"revision", impl.revisionBase}});
  return {};
}

void JobManager::stop() {
  if (!impl_) return;
  asio::post(impl_->strand, [impl = impl_] {
    if (impl->stopped) return;
    impl->stopped = true;
    if (impl->nodeTimer) impl->nodeTimer->cancel();
    if (impl->schedulerTimer) impl->schedulerTimer->cancel();
    for (auto& [id, actor] : impl->jobs) {
      if (actor->timer) actor->timer->cancel();
    }
    for (auto& [id, node] : impl->nodes) {
      for (auto& waiter : node.waiters) waiter->cancel();
    }
  });
}

asio::awaitable<Result<CreateJobResult>> JobManager::createJob(api::JobDescriptor descriptor,
                                                               std::string key) {
  std::string hash = sha256Hex(api::toJson(descriptor).dump());
  auto impl = impl_;
  auto body = [impl, descriptor = std::move(descriptor), key = std::move(key),
               hash = std::move(hash)]() mutable -> asio::awaitable<Result<CreateJobResult>> {
    co_return co_await impl->create(std::move(descriptor), std::move(key), std::move(hash));
  };
  co_return co_await impl->onStrand<Result<CreateJobResult>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::getJob(std::string jobId) {
  auto impl = impl_;
  auto body = [impl, jobId]() -> asio::awaitable<Result<json>> {
    JobActor* actor = impl->findJob(jobId);
    if (actor == nullptr) co_return fail(ErrorCode::kNotFound, "job " + jobId + " not found");
    co_return jobToWire(actor->view);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<Page>> JobManager::listJobs(JobFilter filter, std::string cursor,
                                                   size_t limit) {
  auto impl = impl_;
  auto body = [impl, filter = std::move(filter), cursor, limit]() -> asio::awaitable<Result<Page>> {
    Page page;
    auto it = cursor.empty() ? impl->jobs.begin() : impl->jobs.upper_bound(cursor);
    for (; it != impl->jobs.end(); ++it) {
      if (!matchesFilter(it->second->view.job, filter)) continue;
      if (page.items.size() >= limit && !page.items.empty()) {
        page.nextCursor = page.items.back()["id"].get<std::string>();
        break;
      }
      page.items.push_back(jobToWire(it->second->view));
    }
    co_return page;
  };
  co_return co_await impl->onStrand<Result<Page>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::killJob(std::string jobId) {
  auto apply = [](JobEdit& edit, int64_t now) { return controlplane::killJob(edit, now); };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::updateCapacity(std::string jobId,
                                                         std::optional<int64_t> min,
                                                         std::optional<int64_t> desired,
                                                         std::optional<int64_t> max) {
  auto apply = [=](JobEdit& edit, int64_t) {
    return controlplane::updateCapacity(edit, min, desired, max);
  };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::setEnabled(std::string jobId, bool enabled) {
  auto apply = [enabled](JobEdit& edit, int64_t) {
    return controlplane::setEnabled(edit, enabled);
  };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::updateContainer(std::string jobId,
                                                          api::Container container) {
  auto apply = [container = std::move(container)](JobEdit& edit, int64_t now) {
    return controlplane::updateContainer(edit, container, now);
  };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::promote(std::string jobId) {
  auto apply = [](JobEdit& edit, int64_t) { return controlplane::promoteRollout(edit); };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::rollback(std::string jobId,
                                                   std::optional<int64_t> revision) {
  auto apply = [revision](JobEdit& edit, int64_t now) {
    return controlplane::rollbackTo(edit, revision, now);
  };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::pushMetrics(std::string jobId,
                                                      std::map<std::string, double> metrics) {
  auto apply = [metrics = std::move(metrics)](JobEdit& edit, int64_t now) {
    return controlplane::applyMetrics(edit, metrics, now);
  };
  co_return co_await impl_->jobCommand(std::move(jobId), std::move(apply));
}

asio::awaitable<Result<json>> JobManager::history(std::string jobId) {
  auto impl = impl_;
  auto body = [impl, jobId]() -> asio::awaitable<Result<json>> {
    JobActor* actor = impl->findJob(jobId);
    if (actor == nullptr) co_return fail(ErrorCode::kNotFound, "job " + jobId + " not found");
    if (actor->view.job.descriptor.isBatch()) {
      co_return fail(ErrorCode::kFailedPrecondition, "job " + jobId + " is a batch job");
    }
    co_return historyOf(actor->view);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::getTask(std::string taskId) {
  auto impl = impl_;
  auto body = [impl, taskId]() -> asio::awaitable<Result<json>> {
    auto jobId = jobIdOfTask(taskId);
    JobActor* actor = jobId ? impl->findJob(*jobId) : nullptr;
    if (actor != nullptr) {
      JobEdit lookup(actor->view);
      if (auto position = lookup.findTaskId(taskId)) {
        co_return toWire(actor->view.tasks[*position], *jobId);
      }
      // Earlier attempts live only in the store.
      auto stored = impl->store.get(taskKey(*jobId, taskId));
      if (stored && *stored) {
        auto task = taskFromStored((*stored)->value, (*stored)->modRevision);
        if (task) co_return toWire(*task, *jobId);
      }
    }
    co_return fail(ErrorCode::kNotFound, "task " + taskId + " not found");
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<Page>> JobManager::listTasks(std::string jobId,
                                                    std::optional<api::TaskState> state,
                                                    std::string cursor, size_t limit) {
  auto impl = impl_;
  auto body = [impl, jobId, state, cursor, limit]() -> asio::awaitable<Result<Page>> {
    Page page;
    auto addFrom = [&](const JobView& view, const std::string& after) -> bool {
      for (const TaskRecord& task : view.tasks) {
        if (!after.empty() && task.id <= after) continue;
        if (state && task.state != *state) continue;
        if (page.items.size() >= limit && !page.items.empty()) {
          page.nextCursor = page.items.back()["id"].get<std::string>();
          return false;
        }
        page.items.push_back(toWire(task, view.job.id));
      }
      return true;
    };
    // Within a job, tasks are listed by id so a cursor can resume.
    auto sortedView = [](const JobView& view) {
      JobView copy;
      copy.job.id = view.job.id;
      copy.tasks = view.tasks;
      std::sort(copy.tasks.begin(), copy.tasks.end(),
                [](const TaskRecord& a, const TaskRecord& b) { return a.id < b.id; });
      return copy;
    };
    std::string cursorJob = cursor.empty() ? "" : jobIdOfTask(cursor).value_or("");
    if (!jobId.empty()) {
      JobActor* actor = impl->findJob(jobId);
      if (actor == nullptr) co_return fail(ErrorCode::kNotFound, "job " + jobId + " not found");
      addFrom(sortedView(actor->view), cursor);
      co_return page;
    }
    auto it = cursorJob.empty() ? impl->jobs.begin() : impl->jobs.lower_bound(cursorJob);
    for (; it != impl->jobs.end(); ++it) {
      const std::string& after = it->first == cursorJob ? cursor : std::string();
      if (!addFrom(sortedView(it->second->view), after)) break;
    }
    co_return page;
  };
  co_return co_await impl->onStrand<Result<Page>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::killTask(std::string taskId, bool shrink) {
  auto jobId = jobIdOfTask(taskId);
  if (!jobId) co_return fail(ErrorCode::kNotFound, "task " + taskId + " not found");
  auto apply = [taskId, shrink](JobEdit& edit, int64_t now) {
    return controlplane::killTask(edit, taskId, shrink, now);
  };
  auto result = co_await impl_->jobCommand(*jobId, std::move(apply));
  if (!result) co_return std::unexpected(result.error());
  co_return co_await getTask(taskId);
}

asio::awaitable<Result<json>> JobManager::registerNode(NodeRegistration registration,
                                                       bool* created) {
  auto impl = impl_;
  auto body = [impl, registration = std::move(registration),
               created]() -> asio::awaitable<Result<json>> {
    int64_t now = impl->clock.nowMs();
    NodeRecord record;
    auto existing = impl->nodes.find(registration.id);
    if (existing != impl->nodes.end()) record = existing->second.record;
    if (created != nullptr) *created = existing == impl->nodes.end();
    record.id = registration.id;
    record.resources = registration.resources;
    record.attributes = registration.attributes;
    if (record.registeredAtMs == 0) record.registeredAtMs = now;
    auto taken = [&impl, &record](const std::string& block) {
      auto holder = impl->blockHolders.find(block);
      return holder != impl->blockHolders.end() && holder->second != record.id;
    };
    auto block = chooseAddressBlock(impl->config.addressPlan, record.addressBlock, taken,
                                    &impl->blockSearchFrom);
    if (!block) co_return std::unexpected(block.error());
    record.addressBlock = *block;
    bool reserved = impl->blockHolders.emplace(*block, record.id).second;
    // How many task addresses the node has (the scheduler's address cap): the block less its
    // network and broadcast addresses.
    record.attributes[std::string(scheduler::kAddressesAttribute)] =
        std::to_string((uint64_t{1} << (32 - impl->config.addressPlan.nodeBlockPrefix)) - 2);
    store::Txn txn;
    txn.onSuccess.push_back(store::Op::put(nodeKey(record.id), toStored(record)));
    auto result = co_await impl->commit(std::move(txn));
    if (!result) {
      if (reserved) impl->blockHolders.erase(record.addressBlock);
      co_return std::unexpected(result.error().wrap("saving node"));
    }
    record.modRevision = result->revision;
    NodeState& node = impl->nodes[record.id];
    if (node.revision == 0) node.revision = impl->revisionBase;
    if (auto old = impl->blockHolders.find(node.record.addressBlock);
        old != impl->blockHolders.end() && old->second == record.id &&
        node.record.addressBlock != record.addressBlock) {
      impl->blockHolders.erase(old);
    }
    node.record = std::move(record);
    node.lastHeartbeatMs = now;
    node.lost = false;
    log::info("node registered", {{"nodeId", node.record.id}});
    impl->scheduler->upsertNode(nodeSpec(node));
    impl->bumpNode(node.record.id);
    // An agent that registers again may have lost its containers: it gets the full list.
    node.deltaFloor = node.revision;
    impl->clusterChanged();
    co_return impl->wire(node);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::heartbeat(std::string nodeId,
                                                    std::map<std::string, TaskUsage> usage) {
  auto impl = impl_;
  auto body = [impl, nodeId, usage = std::move(usage)]() -> asio::awaitable<Result<json>> {
    auto it = impl->nodes.find(nodeId);
    if (it == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " is not registered");
    it->second.lastHeartbeatMs = impl->clock.nowMs();
    impl->takeUsage(it->second, usage);
    if (it->second.lost) {
      it->second.lost = false;
      log::info("node back", {{"nodeId", nodeId}});
      impl->scheduler->setSchedulable(nodeId, !it->second.record.draining);
      impl->clusterChanged();
    }
    co_return json{{"nodeId", nodeId}, {"draining", it->second.record.draining}};
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<SchedulingStats> JobManager::schedulingStats() {
  auto impl = impl_;
  auto body = [impl]() -> asio::awaitable<SchedulingStats> {
    SchedulingStats stats = impl->stats;
    stats.pendingJobs = static_cast<int64_t>(impl->pendingJobs.size());
    stats.parkedJobs = static_cast<int64_t>(impl->parkedJobs.size());
    co_return stats;
  };
  co_return co_await impl->onStrand<SchedulingStats>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::listNodes() {
  auto impl = impl_;
  auto body = [impl]() -> asio::awaitable<Result<json>> {
    json items = json::array();
    for (const auto& [id, node] : impl->nodes) items.push_back(impl->wire(node));
    co_return json{{"items", std::move(items)}};
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::getNode(std::string nodeId) {
  auto impl = impl_;
  auto body = [impl, nodeId]() -> asio::awaitable<Result<json>> {
    auto it = impl->nodes.find(nodeId);
    if (it == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " not found");
    co_return impl->wire(it->second);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::drainNode(std::string nodeId, int64_t deadlineMs) {
  auto impl = impl_;
  auto body = [impl, nodeId, deadlineMs]() -> asio::awaitable<Result<json>> {
    auto it = impl->nodes.find(nodeId);
    if (it == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " not found");
    NodeRecord record = it->second.record;
    record.draining = true;
    record.drainDeadlineMs = impl->clock.nowMs() + deadlineMs;
    int64_t deadlineAtMs = record.drainDeadlineMs;
    store::Txn txn;
    txn.onSuccess.push_back(store::Op::put(nodeKey(nodeId), toStored(record)));
    auto result = co_await impl->commit(std::move(txn));
    if (!result) co_return std::unexpected(result.error().wrap("saving node"));
    record.modRevision = result->revision;
    // Look the node up again: the map may have changed while the write was in flight.
    auto again = impl->nodes.find(nodeId);
    if (again == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " not found");
    again->second.record = std::move(record);
    log::info("node draining", {{"nodeId", nodeId}});
    impl->scheduler->setSchedulable(nodeId, false);
    impl->bumpNode(nodeId);
    // Service tasks move off the node within their jobs' disruption budgets, batch tasks at the
    // deadline (drainTasksOnNode).
    std::set<std::string> jobIds;
    for (const auto& [taskId, changedAt] : again->second.tasks) {
      if (auto jobId = jobIdOfTask(taskId)) jobIds.insert(*jobId);
    }
    for (const std::string& jobId : jobIds) {
      if (JobActor* actor = impl->findJob(jobId)) {
        impl->post(actor, {[nodeId, deadlineAtMs](JobEdit& edit, int64_t) -> Status {
                             drainTasksOnNode(edit, nodeId, deadlineAtMs);
                             return {};
                           },
                           nullptr});
      }
    }
    co_return impl->wire(again->second);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::labelNode(
    std::string nodeId, std::map<std::string, std::optional<std::string>> changes) {
  auto impl = impl_;
  auto body = [impl, nodeId, changes = std::move(changes)]() -> asio::awaitable<Result<json>> {
    auto it = impl->nodes.find(nodeId);
    if (it == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " not found");
    NodeRecord record = it->second.record;
    for (const auto& [key, value] : changes) {
      if (value) {
        record.labels[key] = *value;
      } else {
        record.labels.erase(key);
      }
    }
    store::Txn txn;
    txn.onSuccess.push_back(store::Op::put(nodeKey(nodeId), toStored(record)));
    auto result = co_await impl->commit(std::move(txn));
    if (!result) co_return std::unexpected(result.error().wrap("saving node"));
    auto again = impl->nodes.find(nodeId);
    if (again == impl->nodes.end())
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " not found");
    // Labels only: keep what a registration may have changed meanwhile.
    again->second.record.labels = std::move(record.labels);
    again->second.record.modRevision = result->revision;
    impl->scheduler->upsertNode(nodeSpec(again->second));
    impl->clusterChanged();
    log::info("node labels changed", {{"nodeId", nodeId}});
    co_return impl->wire(again->second);
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::whyTask(std::string taskId) {
  auto impl = impl_;
  auto body = [impl, taskId]() -> asio::awaitable<Result<json>> {
    auto jobId = jobIdOfTask(taskId);
    JobActor* actor = jobId ? impl->findJob(*jobId) : nullptr;
    std::optional<size_t> position;
    if (actor != nullptr) {
      JobEdit lookup(actor->view);
      position = lookup.findTaskId(taskId);
    }
    if (!position) {
      // Earlier attempts live only in the store.
      auto stored = jobId ? impl->store.get(taskKey(*jobId, taskId))
                          : Result<std::optional<store::KeyValue>>(std::nullopt);
      if (stored && *stored) {
        auto task = taskFromStored((*stored)->value, (*stored)->modRevision);
        if (task) {
          co_return json{{"taskId", taskId},
                         {"state", api::taskStateName(task->state)},
                         {"nodeId", task->nodeId},
                         {"summary", "the task finished (" +
                                         std::string(api::taskReasonName(task->reason)) + ")"}};
        }
      }
      co_return fail(ErrorCode::kNotFound, "task " + taskId + " not found");
    }
    const TaskRecord& task = actor->view.tasks[*position];
    int64_t now = impl->clock.nowMs();
    json out = {{"taskId", taskId}, {"state", api::taskStateName(task.state)}};
    if (task.finished()) {
      out["summary"] = "the task finished (" + std::string(api::taskReasonName(task.reason)) + ")";
    } else if (task.state != api::TaskState::kAccepted) {
      out["nodeId"] = task.nodeId;
      out["summary"] = "the task is placed on node " + task.nodeId;
    } else if (actor->view.job.state != api::JobState::kAccepted) {
      out["summary"] = "the job is being killed";
    } else if (task.notBeforeMs > now) {
      out["notBeforeMs"] = task.notBeforeMs;
      out["summary"] = "waiting for the retry delay to pass";
    } else if (impl->launching.contains(taskId)) {
      out["summary"] = "placed; the launch is being saved";
    } else {
      json explanation = impl->scheduler->explain(actor->shape, taskId);
      explanation["state"] = out["state"];
      out = std::move(explanation);
    }
    co_return out;
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::putCapacityGroup(scheduler::CapacityGroupSpec spec,
                                                           bool createOnly) {
  auto impl = impl_;
  auto body = [impl, spec = std::move(spec), createOnly]() -> asio::awaitable<Result<json>> {
    CapacityGroupRecord record;
    record.spec = spec;
    record.createdAtMs = impl->clock.nowMs();
    if (auto it = impl->capacityGroups.find(spec.name); it != impl->capacityGroups.end()) {
      if (createOnly) {
        co_return fail(ErrorCode::kAlreadyExists,
                       "capacity group " + spec.name + " already exists");
      }
      record.createdAtMs = it->second.createdAtMs;
    }
    store::Txn txn;
    if (createOnly) txn.compares.push_back(store::Compare::notExists(capacityGroupKey(spec.name)));
    txn.onSuccess.push_back(store::Op::put(capacityGroupKey(spec.name), toStored(record)));
    auto result = co_await impl->commit(std::move(txn));
    if (!result) co_return std::unexpected(result.error().wrap("saving capacity group"));
    if (!result->succeeded) {
      co_return fail(ErrorCode::kAlreadyExists, "capacity group " + spec.name + " already exists");
    }
    record.modRevision = result->revision;
    impl->scheduler->upsertCapacityGroup(record.spec);
    impl->clusterChanged();
    impl->capacityGroups[spec.name] = record;
    impl->wakeScheduler();
    log::info("capacity group saved", {{"name", spec.name}});
    co_return toWire(record, impl->scheduler->capacityUsage());
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::getCapacityGroup(std::string name) {
  auto impl = impl_;
  auto body = [impl, name]() -> asio::awaitable<Result<json>> {
    auto usage = impl->scheduler->capacityUsage();
    if (auto it = impl->capacityGroups.find(name); it != impl->capacityGroups.end()) {
      co_return toWire(it->second, usage);
    }
    for (const auto& u : usage) {
      if (u.group == name) co_return undefinedGroupToWire(name, usage);
    }
    co_return fail(ErrorCode::kNotFound, "capacity group " + name + " not found");
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::listCapacityGroups() {
  auto impl = impl_;
  auto body = [impl]() -> asio::awaitable<Result<json>> {
    auto usage = impl->scheduler->capacityUsage();
    std::map<std::string, json> byName;
    for (const auto& [name, record] : impl->capacityGroups) byName[name] = toWire(record, usage);
    // Groups that jobs name without a definition: usage only, nothing reserved.
    for (const auto& u : usage) {
      if (!byName.contains(u.group)) byName[u.group] = undefinedGroupToWire(u.group, usage);
    }
    json items = json::array();
    for (auto& [name, item] : byName) items.push_back(std::move(item));
    co_return json{{"items", std::move(items)}};
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<json>> JobManager::deleteCapacityGroup(std::string name) {
  auto impl = impl_;
  auto body = [impl, name]() -> asio::awaitable<Result<json>> {
    if (!impl->capacityGroups.contains(name)) {
      co_return fail(ErrorCode::kNotFound, "capacity group " + name + " not found");
    }
    store::Txn txn;
    txn.onSuccess.push_back(store::Op::del(capacityGroupKey(name)));
    auto result = co_await impl->commit(std::move(txn));
    if (!result) co_return std::unexpected(result.error().wrap("deleting capacity group"));
    impl->capacityGroups.erase(name);
    impl->scheduler->removeCapacityGroup(name);
    impl->clusterChanged();
    log::info("capacity group deleted", {{"name", name}});
    co_return json{{"name", name}, {"deleted", true}};
  };
  co_return co_await impl->onStrand<Result<json>>(std::move(body));
}

asio::awaitable<Result<Assignments>> JobManager::assignments(std::string nodeId,
                                                             int64_t afterRevision, int64_t waitMs,
                                                             AssignmentsForm form, bool delta) {
  auto impl = impl_;
  auto body = [impl, nodeId, afterRevision, waitMs, form,
               delta]() -> asio::awaitable<Result<Assignments>> {
    auto it = impl->nodes.find(nodeId);
    if (it == impl->nodes.end()) {
      co_return fail(ErrorCode::kNotFound, "node " + nodeId + " is not registered");
    }
    // A revision newer than the node's comes from before a restart onto an older state: it
    // tells nothing, so the full list goes out at once rather than after the wait.
    if (it->second.revision == afterRevision && waitMs > 0) {
      std::shared_ptr<Timer> waiter = impl->timers.make(impl->strand);
      waiter->expiresAfterMs(waitMs);
      it->second.waiters.push_back(waiter);
      co_await waiter->wait();
      it = impl->nodes.find(nodeId);
      if (it == impl->nodes.end())
        co_return fail(ErrorCode::kNotFound, "node " + nodeId + " is gone");
      auto& waiters = it->second.waiters;
      waiters.erase(std::remove(waiters.begin(), waiters.end(), waiter), waiters.end());
    }
    const NodeState& node = it->second;
    Assignments out;
    out.revision = node.revision;
    // Both the delta and the revision are read here, in one strand step, and every change to
    // the node's tasks moves the revision in the same step that stamps the tasks with it: a
    // change is either in this answer or after its revision.
    out.full = !delta || afterRevision <= 0 || afterRevision < node.deltaFloor ||
               afterRevision > node.revision;
    if (out.full) {
      out.assignmentsText = impl->assignmentsFor(node);
    } else {
      out.assignmentsText = impl->assignmentsFor(node, afterRevision);
      std::set<std::string> removed;
      for (auto entry = node.removedLog.rbegin();
           entry != node.removedLog.rend() && entry->first > afterRevision; ++entry) {
        if (!node.tasks.contains(entry->second)) removed.insert(entry->second);
      }
      out.removed.assign(removed.begin(), removed.end());
    }
    if (form == AssignmentsForm::kJson) {
      out.assignments = json::parse(out.assignmentsText);
      out.assignmentsText.clear();
    }
    co_return out;
  };
  co_return co_await impl->onStrand<Result<Assignments>>(std::move(body));
}

asio::awaitable<Result<int64_t>> JobManager::applyTaskStatus(
    std::string nodeId, std::vector<TaskStatusUpdate> updates) {
  std::map<std::string, std::vector<TaskStatusUpdate>> byJob;
  for (TaskStatusUpdate& update : updates) {
    if (auto jobId = jobIdOfTask(update.taskId)) byJob[*jobId].push_back(std::move(update));
  }
  int64_t applied = 0;
  for (auto& [jobId, jobUpdates] : byJob) {
    auto count = std::make_shared<int64_t>(0);
    auto apply = [nodeId, jobUpdates = std::move(jobUpdates), count](JobEdit& edit, int64_t now) {
      for (const TaskStatusUpdate& update : jobUpdates) {
        auto position = edit.findTaskId(update.taskId);
        if (!position || edit.task(*position).nodeId != nodeId) continue;
        if (applyStatus(edit, update, now)) ++*count;
      }
      return Status{};
    };
    auto result = co_await impl_->jobCommand(jobId, std::move(apply));
    if (!result && result.error().code() != ErrorCode::kNotFound) {
      co_return std::unexpected(result.error());
    }
    applied += *count;
  }
  co_return applied;
}

asio::awaitable<std::pair<size_t, size_t>> JobManager::counts() {
  auto impl = impl_;
  auto body = [impl]() -> asio::awaitable<std::pair<size_t, size_t>> {
    co_return std::make_pair(impl->jobs.size(), impl->taskCount);
  };
  co_return co_await impl->onStrand<std::pair<size_t, size_t>>(std::move(body));
}

}  // namespace skiff::controlplane
