#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

json JobManager::Impl::wire(const NodeState& node) const {
  return nodeToWire(node,
                    scheduler->allocated(node.record.id).value_or(api::Resources{0, 0, 0, 0, 0}));
}

void JobManager::Impl::startNodeChecks() {
  nodeTimer = timers.make(strand);
  asio::co_spawn(strand, checkNodes(shared_from_this()), asio::detached);
}

asio::awaitable<void> JobManager::Impl::checkNodes(std::shared_ptr<Impl> self) {
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
                                                 "node " + nodeId + " stopped heartbeating", nowMs);
                               return {};
                             },
                             nullptr});
        }
      }
    }
  }
}

std::string JobManager::Impl::assignmentsFor(const NodeState& node, std::optional<int64_t> after) {
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
    if (actor->descriptorRevision != actor->view.job.modRevision || actor->descriptorText.empty()) {
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

}  // namespace skiff::controlplane
