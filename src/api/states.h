#pragma once

// Job and task states, the reasons a task finishes, and the task state machine.
//
// A task moves forward only: Accepted -> Launched -> StartInitiated -> Started -> KillInitiated
// -> Finished. Forward moves may skip states (an agent may report Started before anyone saw
// StartInitiated), any non-final state may go straight to KillInitiated or Finished, and
// KillInitiated leads only to Finished. Finished is terminal and always carries a reason.

#include <cstdint>
#include <optional>
#include <string_view>

namespace skiff::api {

enum class JobState : uint8_t { kAccepted, kKillInitiated, kFinished };

enum class TaskState : uint8_t {
  kAccepted,
  kLaunched,
  kStartInitiated,
  kStarted,
  kKillInitiated,
  kFinished,
};
inline constexpr int kTaskStateCount = 6;

enum class TaskReason : uint8_t {
  kNone,  // Only for tasks that are not Finished and not being killed.
  kNormal,
  kFailed,
  kKilled,
  kScaledDown,
  kEvicted,
  kLost,
  kRuntimeLimitExceeded,
  kInvalidRequest,
  kCrashed,
  kStuckInState,
  kTransientSystemError,
  kLocalSystemError,
  // The registry answered that the image does not exist (manifest or name unknown, name invalid,
  // HTTP 404 or 400): the user's to fix, so never retried.
  kImageNotFound,
  // The registry refused the image after authentication (HTTP 401, 403): never retried.
  kImageDenied,
};

std::string_view jobStateName(JobState state);
std::string_view taskStateName(TaskState state);
std::string_view taskReasonName(TaskReason reason);
std::optional<JobState> parseJobState(std::string_view name);
std::optional<TaskState> parseTaskState(std::string_view name);
std::optional<TaskReason> parseTaskReason(std::string_view name);

// True when the move from `from` to `to` is allowed. Staying in the same state is not a move.
bool isValidTransition(TaskState from, TaskState to);

// True for reasons caused by the platform rather than the user's program. Tasks that finish for a
// system reason are retried without using up the user's retries.
bool isSystemError(TaskReason reason);

// True when a task that finished with `reason` is retried under the job's retry policy (subject
// to the retry budget): failures and system errors are, a normal exit or a deliberate kill is not.
// `retryOnRuntimeLimit` decides for kRuntimeLimitExceeded.
bool isRetryable(TaskReason reason, bool retryOnRuntimeLimit);

}  // namespace skiff::api
