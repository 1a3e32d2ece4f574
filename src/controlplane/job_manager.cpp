#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

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

asio::awaitable<Result<store::TxnResult>> JobManager::Impl::commit(store::Txn txn) {
  Completion<Result<store::TxnResult>> done;
  store.commitAsync(std::move(txn),
                    [done](Result<store::TxnResult> result) { done.set(std::move(result)); });
  co_return co_await done.wait();
}

JobActor* JobManager::Impl::findJob(const std::string& id) {
  auto it = jobs.find(id);
  return it == jobs.end() ? nullptr : it->second.get();
}

asio::awaitable<Result<json>> JobManager::Impl::jobCommand(
    std::string jobId, std::function<Status(JobEdit&, int64_t)> apply) {
  Completion<Result<json>> done;
  asio::post(strand, [self = shared_from_this(), jobId, apply = std::move(apply), done]() mutable {
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

asio::awaitable<Result<CreateJobResult>> JobManager::Impl::create(api::JobDescriptor descriptor,
                                                                  std::string descriptorText,
                                                                  std::string key,
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
      co_return CreateJobResult{actor->view.job.id, dumpText(jobToWire(actor->view)), false};
    }
    inflightKeys[key];
  }

  int64_t now = clock.nowMs();
  std::string jobId = newJobId(now);
  while (jobs.contains(jobId)) jobId = newJobId(now);
  auto actor = std::make_unique<JobActor>();
  actor->view = newJob(jobId, std::move(descriptor), key, now);
  actor->shape = scheduler::JobShape::of(jobId, actor->view.job.descriptor);

  actor->view.job.requestHash = requestHash;
  // The key and the request's hash are part of the job record: the strand checked above that no
  // job holds the key, and only the job manager writes jobs.
  store::Txn txn;
  txn.onSuccess.push_back(
      store::Op::put(jobKey(jobId), toStoredText(actor->view.job, descriptorText)));
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
  actor->view.job.modRevision = result->revision;
  for (TaskRecord& task : actor->view.tasks) task.modRevision = result->revision;
  taskCount += actor->view.tasks.size();
  if (!key.empty()) idempotency[key] = {jobId, requestHash};
  JobActor* raw = actor.get();
  jobs.emplace(jobId, std::move(actor));
  if (log::enabled(log::Level::kDebug)) {
    log::debug("job accepted", {{"jobId", jobId},
                                {"applicationName", raw->view.job.descriptor.applicationName},
                                {"tasks", raw->view.tasks.size()}});
  }
  CreateJobResult created{jobId, jobToWireText(raw->view, descriptorText), true};
  wakeJob(raw);
  co_return created;
}

asio::awaitable<Result<CreateJobResult>> JobManager::createJob(api::JobDescriptor descriptor,
                                                               std::string key) {
  // Written here, off the job manager's strand.
  std::string descriptorText = api::toJsonText(descriptor);
  std::string hash = key.empty() ? std::string() : sha256Hex(descriptorText);
  auto impl = impl_;
  auto body = [impl, descriptor = std::move(descriptor), descriptorText = std::move(descriptorText),
               key = std::move(key),
               hash = std::move(hash)]() mutable -> asio::awaitable<Result<CreateJobResult>> {
    co_return co_await impl->create(std::move(descriptor), std::move(descriptorText),
                                    std::move(key), std::move(hash));
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

asio::awaitable<std::pair<size_t, size_t>> JobManager::counts() {
  auto impl = impl_;
  auto body = [impl]() -> asio::awaitable<std::pair<size_t, size_t>> {
    co_return std::make_pair(impl->jobs.size(), impl->taskCount);
  };
  co_return co_await impl->onStrand<std::pair<size_t, size_t>>(std::move(body));
}

}  // namespace skiff::controlplane
