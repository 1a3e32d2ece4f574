#include "api/states.h"

#include <array>

namespace skiff::api {
namespace {

constexpr std::array<std::string_view, 3> kJobStateNames = {"Accepted", "KillInitiated",
                                                            "Finished"};
constexpr std::array<std::string_view, kTaskStateCount> kTaskStateNames = {
    "Accepted", "Launched", "StartInitiated", "Started", "KillInitiated", "Finished"};
constexpr std::array<std::string_view, 15> kReasonNames = {"",
                                                           "normal",
                                                           "failed",
                                                           "killed",
                                                           "scaledDown",
                                                           "evicted",
                                                           "lost",
                                                           "runtimeLimitExceeded",
                                                           "invalidRequest",
                                                           "crashed",
                                                           "stuckInState",
                                                           "transientSystemError",
                                                           "localSystemError",
                                                           "imageNotFound",
                                                           "imageDenied"};

template <typename Enum, size_t N>
std::optional<Enum> parseName(const std::array<std::string_view, N>& names, std::string_view name) {
  for (size_t i = 0; i < N; ++i) {
    if (!names[i].empty() && names[i] == name) {
      return static_cast<Enum>(i);
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view jobStateName(JobState state) {
  return kJobStateNames[static_cast<size_t>(state)];
}
std::string_view taskStateName(TaskState state) {
  return kTaskStateNames[static_cast<size_t>(state)];
}
std::string_view taskReasonName(TaskReason reason) {
  return kReasonNames[static_cast<size_t>(reason)];
}
std::optional<JobState> parseJobState(std::string_view name) {
  return parseName<JobState>(kJobStateNames, name);
}
std::optional<TaskState> parseTaskState(std::string_view name) {
  return parseName<TaskState>(kTaskStateNames, name);
}
std::optional<TaskReason> parseTaskReason(std::string_view name) {
  return parseName<TaskReason>(kReasonNames, name);
}

bool isValidTransition(TaskState from, TaskState to) {
  if (from == TaskState::kFinished || from == to) {
    return false;
  }
  if (to == TaskState::kFinished || to == TaskState::kKillInitiated) {
    return true;
  }
  // Forward moves only, and never out of KillInitiated except to Finished.
  return from != TaskState::kKillInitiated && static_cast<int>(to) > static_cast<int>(from);
}

bool isSystemError(TaskReason reason) {
  switch (reason) {
    case TaskReason::kLost:
    case TaskReason::kCrashed:
    case TaskReason::kStuckInState:
    case TaskReason::kTransientSystemError:
    case TaskReason::kLocalSystemError:
      return true;
    default:
      return false;
  }
}

bool isRetryable(TaskReason reason, bool retryOnRuntimeLimit) {
  switch (reason) {
    case TaskReason::kFailed:
    case TaskReason::kEvicted:
      return true;
    case TaskReason::kRuntimeLimitExceeded:
      return retryOnRuntimeLimit;
    default:
      return isSystemError(reason);
  }
}

}  // namespace skiff::api
