#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "controlplane/job_logic.h"
#include "controlplane/job_logic_internal.h"
#include "controlplane/service_logic.h"

namespace skiff::controlplane {

using nlohmann::json;

namespace job_logic_detail {

SpecRevision* mutableRevision(JobEdit& edit, int64_t number) {
  for (SpecRevision& revision : edit.mutableJob().revisions) {
    if (revision.number == number) return &revision;
  }
  return nullptr;
}

void retarget(JobEdit& edit, int64_t number) {
  JobRecord& job = edit.mutableJob();
  job.specRevision = number;
  job.descriptor.container = job.findRevision(number)->container;
}

}  // namespace job_logic_detail

namespace {

using api::TaskReason;
using api::TaskState;
using job_logic_detail::mutableRevision;
using job_logic_detail::retarget;

}  // namespace

Status updateCapacity(JobEdit& edit, std::optional<int64_t> min, std::optional<int64_t> desired,
                      std::optional<int64_t> max) {
  if (edit.job().descriptor.isBatch()) {
    return fail(ErrorCode::kFailedPrecondition, "capacity applies to service jobs only");
  }
  if (edit.job().state != api::JobState::kAccepted) {
    return fail(ErrorCode::kFailedPrecondition, "job " + edit.job().id + " is not active");
  }
  api::Capacity next = edit.job().capacity;
  if (min) next.min = *min;
  if (desired) next.desired = *desired;
  if (max) next.max = *max;
  if (next.min < 0 || next.max > api::Limits::kMaxServiceCapacity ||
      !(next.min <= next.desired && next.desired <= next.max)) {
    return fail(ErrorCode::kInvalidArgument,
                "capacity: must satisfy 0 <= min <= desired <= max <= " +
                    std::to_string(api::Limits::kMaxServiceCapacity) + " (got min " +
                    std::to_string(next.min) + ", desired " + std::to_string(next.desired) +
                    ", max " + std::to_string(next.max) + ")");
  }
  edit.mutableJob().capacity = next;
  return {};
}

Status setEnabled(JobEdit& edit, bool enabled) {
  if (edit.job().descriptor.isBatch()) {
    return fail(ErrorCode::kFailedPrecondition, "enable and disable apply to service jobs only");
  }
  if (edit.job().enabled != enabled) edit.mutableJob().enabled = enabled;
  return {};
}

Status updateContainer(JobEdit& edit, const api::Container& container, int64_t nowMs) {
  const JobRecord& job = edit.job();
  if (job.descriptor.isBatch()) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " is a batch job");
  }
  if (job.state != api::JobState::kAccepted) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " is being killed or finished");
  }
  api::JobDescriptor current;
  current.container = job.descriptor.container;
  api::JobDescriptor next;
  next.container = container;
  json currentJson = api::toJson(current)["container"];
  json nextJson = api::toJson(next)["container"];
  for (const char* fixed : {"resources", "securityProfile", "hardConstraints", "softConstraints"}) {
    if (currentJson[fixed] != nextJson[fixed]) {
      return fail(ErrorCode::kFailedPrecondition,
                  std::string("container.") + fixed +
                      " cannot change in an update (placement is per job): submit a new job");
    }
  }
  if (currentJson == nextJson) return {};
  int64_t number = 0;
  for (const SpecRevision& revision : job.revisions) number = std::max(number, revision.number);
  ++number;
  JobRecord& mutableJob = edit.mutableJob();
  int64_t from = mutableJob.rollout.active ? mutableJob.rollout.fromRevision : job.specRevision;
  if (mutableJob.rollout.active) {
    mutableRevision(edit, job.specRevision)->outcome = "abandoned";
  }
  mutableJob.revisions.push_back({number, container, nowMs, "rolling", "", ""});
  retarget(edit, number);
  mutableJob.rollout = RolloutState{true, from, false, false, nowMs, "started"};
  return {};
}

Status promoteRollout(JobEdit& edit) {
  const JobRecord& job = edit.job();
  if (!job.rollout.active || job.rollout.promoted ||
      job.descriptor.service->rollout.canaryTasks == 0) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " has no canary to promote");
  }
  edit.mutableJob().rollout.promoted = true;
  if (SpecRevision* revision = mutableRevision(edit, job.specRevision)) {
    revision->outcome = "rolling";
  }
  return {};
}

Status rollbackTo(JobEdit& edit, std::optional<int64_t> revision, int64_t nowMs) {
  const JobRecord& job = edit.job();
  if (job.descriptor.isBatch()) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " is a batch job");
  }
  if (job.state != api::JobState::kAccepted) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " is being killed or finished");
  }
  int64_t target = 0;
  if (revision) {
    target = *revision;
  } else if (job.rollout.active) {
    target = job.rollout.fromRevision;
  } else {
    for (const SpecRevision& r : job.revisions) {
      if (r.number != job.specRevision && r.outcome != "rolledBack" && r.number > target) {
        target = r.number;
      }
    }
  }
  if (job.findRevision(target) == nullptr) {
    return fail(ErrorCode::kNotFound,
                target == 0 ? "job " + job.id + " has no earlier revision"
                            : "job " + job.id + " has no revision " + std::to_string(target));
  }
  if (target == job.specRevision) {
    return fail(ErrorCode::kFailedPrecondition,
                "revision " + std::to_string(target) + " is already the job's revision");
  }
  int64_t from = job.specRevision;
  SpecRevision* leaving = mutableRevision(edit, from);
  leaving->outcome = edit.job().rollout.active ? "abandoned" : "superseded";
  mutableRevision(edit, target)->outcome = "rolling";
  retarget(edit, target);
  edit.mutableJob().rollout =
      RolloutState{true, from, true, true, nowMs, "rollback to revision " + std::to_string(target)};
  return {};
}

Status applyMetrics(JobEdit& edit, const std::map<std::string, double>& metrics, int64_t nowMs) {
  const JobRecord& job = edit.job();
  if (job.descriptor.isBatch() || !job.descriptor.service->autoscaling) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " has no autoscaling policies");
  }
  if (job.state != api::JobState::kAccepted) {
    return fail(ErrorCode::kFailedPrecondition, "job " + job.id + " is being killed or finished");
  }
  JobRecord& mutableJob = edit.mutableJob();
  for (const auto& [name, value] : metrics) mutableJob.autoscale.metrics[name] = value;
  mutableJob.autoscale.metricsAtMs = nowMs;
  AutoscaleInput input;
  input.capacity = mutableJob.capacity;
  for (size_t i = 0; i < edit.taskCount(); ++i) input.readyTasks += edit.task(i).ready ? 1 : 0;
  input.metrics = mutableJob.autoscale.metrics;
  input.lastScaleOutMs = mutableJob.autoscale.lastScaleOutMs;
  input.lastScaleInMs = mutableJob.autoscale.lastScaleInMs;
  AutoscaleDecision decision =
      decideAutoscale(*mutableJob.descriptor.service->autoscaling, input, nowMs);
  decision.detail["atMs"] = nowMs;
  if (decision.changed) {
    mutableJob.capacity.desired = decision.desired;
    (decision.scaleOut ? mutableJob.autoscale.lastScaleOutMs : mutableJob.autoscale.lastScaleInMs) =
        nowMs;
    mutableJob.autoscale.lastDecision = std::move(decision.detail);
  } else if (decision.blockedUntilMs != 0) {
    decision.detail["blockedUntilMs"] = decision.blockedUntilMs;
    mutableJob.autoscale.lastDecision = std::move(decision.detail);
  }
  return {};
}

json historyOf(const JobView& view) {
  json items = json::array();
  for (auto it = view.job.revisions.rbegin(); it != view.job.revisions.rend(); ++it) {
    int64_t tasks = 0;
    for (const TaskRecord& task : view.tasks) {
      if (!task.finished() && task.specRevision == it->number) ++tasks;
    }
    items.push_back({{"revision", it->number},
                     {"image", it->container.image.reference()},
                     {"pinnedImage", it->image},
                     {"createdAtMs", it->createdAtMs},
                     {"outcome", it->outcome},
                     {"message", it->message},
                     {"tasks", tasks}});
  }
  json out = {{"jobId", view.job.id}, {"specRevision", view.job.specRevision}, {"items", items}};
  if (view.job.rollout.active) {
    out["rollout"] = {{"fromRevision", view.job.rollout.fromRevision},
                      {"promoted", view.job.rollout.promoted},
                      {"rollingBack", view.job.rollout.rollingBack},
                      {"message", view.job.rollout.message}};
  }
  return out;
}

}  // namespace skiff::controlplane
