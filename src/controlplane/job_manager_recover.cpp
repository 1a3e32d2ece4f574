#include "controlplane/job_manager_impl.h"

namespace skiff::controlplane {

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
          if (!job->idempotencyKey.empty()) {
            impl.idempotency[job->idempotencyKey] = {job->id, job->requestHash};
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

  // Stores written by earlier releases keep each key's hash in its own record.
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
  // Node revisions count changes in memory from a base taken at start; every base must be above
  // each revision an agent saw from an earlier process, or a stale poll gets an empty delta.
  // Each change comes with a store write, but a store may give one revision to many writes (etcd
  // batches share one): the base is the store's revision times 2^20, room for 2^20 node changes
  // per store revision.
  const int64_t revisionBase = impl.store.currentRevision() << 20;
  for (auto& [id, actor] : impl.jobs) {
    actor->shape = scheduler::JobShape::of(id, actor->view.job.descriptor);
    for (const TaskRecord& task : actor->view.tasks) {
      if (task.finished() || task.nodeId.empty()) continue;
      auto node = impl.nodes.find(task.nodeId);
      if (node == impl.nodes.end()) continue;
      node->second.tasks.emplace(task.id, revisionBase);
      impl.scheduler->addTask(actor->shape, task.id, task.nodeId);
    }
  }
  impl.revisionBase = revisionBase;
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

}  // namespace skiff::controlplane
