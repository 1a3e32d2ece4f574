#pragma once

// What skiffd holds about jobs, tasks and nodes, and their stored and wire forms.
//
// Store layout (keys are ordered, so a job and its tasks are adjacent):
//   /j/<jobId>             a job
//   /j/<jobId>/t/<taskId>  a task of that job
//   /idem/<key>            an idempotency key: {"jobId", "requestHash"}, written by
//                          releases before the job record carried its key and hash; read only
//   /nodes/<nodeId>        a registered node
//   /capacity-groups/<name> a capacity group (see capacity_groups.h)
// Job ids have a fixed length, so the prefix "/j/<jobId>" covers exactly one job and its tasks.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"
#include "api/states.h"
#include "common/error.h"
#include "controlplane/store/store.h"

namespace skiff::controlplane {

// One version of a service's container spec. Revision numbers start at 1 and only grow; a
// rollback to an earlier spec reuses that revision's number.
struct SpecRevision {
  int64_t number = 1;
  api::Container container;
  int64_t createdAtMs = 0;
  // "current", "rolling", "paused", "superseded", "rolledBack" (its tasks failed before they
  // were healthy), "abandoned" (replaced by another update before it finished).
  std::string outcome = "current";
  std::string image;  // The pinned reference ("repo@sha256:...") its tasks ran, once known.
  std::string message;
};

// A rollout in progress: from `fromRevision` to the job's `specRevision`.
struct RolloutState {
  bool active = false;
  int64_t fromRevision = 0;
  bool promoted = false;     // The canary pause was lifted.
  bool rollingBack = false;  // This rollout undoes a failed one: it never rolls back itself.
  int64_t startedAtMs = 0;
  std::string message;  // The last step's reason.
};

// Autoscaling of a service: the latest pushed metric values and the last decisions.
struct AutoscaleState {
  std::map<std::string, double> metrics;
  int64_t metricsAtMs = 0;
  int64_t lastScaleOutMs = 0;
  int64_t lastScaleInMs = 0;
  // The last decision that changed the capacity or was held back, with the values behind it
  // (see service_logic.h, AutoscaleDecision::detail, plus "atMs").
  nlohmann::json lastDecision;
};

struct JobRecord {
  std::string id;
  api::JobDescriptor descriptor;
  api::JobState state = api::JobState::kAccepted;
  std::string reason;   // Why the job finished or is being killed ("normal", "failed", "killed").
  std::string message;  // Human-readable detail.
  int64_t stateTimeMs = 0;
  int64_t createdAtMs = 0;
  std::string idempotencyKey;
  // With an idempotency key: the SHA-256 (hex) of the descriptor's JSON text, so a repeat with
  // the same key and a different job is told apart (stored form only, not on the wire).
  std::string requestHash;
  store::Revision modRevision = 0;
  // Service jobs: the current capacity and whether autoscaling may change it. Batch jobs: unused.
  api::Capacity capacity;
  bool enabled = true;
  // Batch jobs: the next index to hand out (== size once all slots exist). Service jobs: the
  // next never-used index.
  int64_t nextIndex = 0;
  // Service jobs: the container spec new tasks run (`descriptor.container` is that revision's),
  // every revision so far, and the rollout in progress.
  int64_t specRevision = 1;
  std::vector<SpecRevision> revisions;
  RolloutState rollout;
  AutoscaleState autoscale;
  // Times of recent voluntary disruptions (drain moves), for the disruption budget's rate.
  std::vector<int64_t> disruptionsMs;

  // The revision numbered `number`, or null.
  const SpecRevision* findRevision(int64_t number) const;
};

struct TaskRecord {
  std::string id;
  int64_t index = 0;
  api::TaskState state = api::TaskState::kAccepted;
  api::TaskReason reason = api::TaskReason::kNone;
  // Set when a kill was decided: the reason the task will finish with once it stops.
  api::TaskReason killReason = api::TaskReason::kNone;
  int32_t exitCode = 0;
  bool hasExitCode = false;
  std::string message;
  std::string nodeId;
  // The image the agent ran, pinned to a digest ("repo@sha256:..."); empty until it started.
  std::string image;
  // The container's address, reported by the agent once it is known; empty before.
  std::string ip;
  // Its node is being drained: a replacement is started elsewhere and this task is stopped once
  // the job's disruption budget allows (service jobs).
  bool draining = false;
  // A batch task on a draining node may run until this time; then it is evicted and placed again
  // elsewhere (0: no deadline).
  int64_t drainDeadlineMs = 0;
  // The job spec revision the task runs (service jobs; 1 for batch jobs).
  int64_t specRevision = 1;
  // Ready for traffic: Started, not being killed, and passing its readiness check (or Started,
  // when the job has none). `readySinceMs` is when it last became ready.
  bool ready = false;
  int64_t readySinceMs = 0;
  int64_t resubmitNumber = 0;
  int64_t systemResubmitNumber = 0;
  int64_t evictionResubmitNumber = 0;
  // Earlier attempts of this slot that ended in a system error one after the other without
  // starting (a registry that cannot be reached); bounds system retries of batch tasks.
  int64_t systemErrorsInRow = 0;
  std::string resubmitOf;
  std::array<int64_t, api::kTaskStateCount> stateTimesMs{};
  // The task is not placed before this time (retry delays).
  int64_t notBeforeMs = 0;
  // The highest status sequence number applied from the agent.
  int64_t lastSeq = 0;
  store::Revision modRevision = 0;

  bool finished() const { return state == api::TaskState::kFinished; }
  int64_t stateTimeMs(api::TaskState s) const { return stateTimesMs[static_cast<size_t>(s)]; }
  // Retries that count against the user's retry budget.
  int64_t userRetries() const {
    return resubmitNumber - systemResubmitNumber - evictionResubmitNumber;
  }
};

struct NodeRecord {
  std::string id;
  api::Resources resources;
  nlohmann::json attributes = nlohmann::json::object();  // Reported by the agent.
  // Set by operators (`skiff node label`); kept across re-registration and overriding attributes
  // of the same name for placement.
  std::map<std::string, std::string> labels;
  // The node's container address block inside the VPC range ("10.64.3.0/24"), given at its first
  // registration and kept across re-registrations.
  std::string addressBlock;
  bool draining = false;
  // While draining: when its batch tasks are moved if they have not finished.
  int64_t drainDeadlineMs = 0;
  int64_t registeredAtMs = 0;
  store::Revision modRevision = 0;
};

// Key helpers.
std::string jobKey(std::string_view jobId);
std::string taskKey(std::string_view jobId, std::string_view taskId);
std::string jobPrefix(std::string_view jobId);  // Covers the job and its tasks.
inline constexpr std::string_view kJobsPrefix = "/j/";
inline constexpr std::string_view kNodesPrefix = "/nodes/";
inline constexpr std::string_view kIdempotencyPrefix = "/idem/";
std::string nodeKey(std::string_view nodeId);
std::string idempotencyKey(std::string_view key);

// A new, time-ordered job id of fixed length: "job-" + 12 hex digits of milliseconds + "-" + 8
// random hex digits.
std::string newJobId(int64_t nowMs);
std::string taskId(std::string_view jobId, int64_t index, int64_t attempt);
// The job id inside a task id, or nullopt when `taskId` is not one of ours.
std::optional<std::string> jobIdOfTask(std::string_view taskId);

// Stored forms. `fromStored` checks shape and fails with kInternal on corrupt records.
std::string toStored(const JobRecord& job);
std::string toStored(const TaskRecord& task);
std::string toStored(const NodeRecord& node);
Result<JobRecord> jobFromStored(std::string_view value, store::Revision modRevision);
// `toStored(job)`, taking the descriptor's JSON text (`api::toJson(job.descriptor).dump()`)
// from a caller that already wrote it.
std::string toStoredText(const JobRecord& job, std::string_view descriptorText);
Result<TaskRecord> taskFromStored(std::string_view value, store::Revision modRevision);
Result<NodeRecord> nodeFromStored(std::string_view value, store::Revision modRevision);
// The security groups of a stored job (descriptor.container.securityProfile.securityGroups),
// read without building the job: watchers that need only this field stay cheap per submission.
// Fails with kInternal when the value is not JSON; a job without the field has none.
Result<std::vector<std::string>> securityGroupsOfStoredJob(std::string_view value);

// `base` with its container replaced by `container` (JSON, as in a job file), validated as a
// whole; errors name paths under "container.".
std::expected<api::JobDescriptor, api::FieldErrors> descriptorWithContainer(
    const api::JobDescriptor& base, const nlohmann::json& container);

// Wire forms (see docs/api.md).
nlohmann::json toWire(const JobRecord& job);
// `toWire(job)` as JSON text with the members of `more` (an object) added, taking the
// descriptor's JSON text from a caller that already wrote it. Invalid UTF-8 is replaced.
std::string toWireText(const JobRecord& job, std::string_view descriptorText, nlohmann::json more);
nlohmann::json toWire(const TaskRecord& task, std::string_view jobId);
nlohmann::json resourcesToJson(const api::Resources& resources);

}  // namespace skiff::controlplane
