// The task state machine, finish reasons and state names.

#include "api/states.h"

#include <array>
#include <string>

#include <gtest/gtest.h>

namespace skiff::api {
namespace {

constexpr std::array<TaskState, kTaskStateCount> kTaskStates = {
    TaskState::kAccepted, TaskState::kLaunched,      TaskState::kStartInitiated,
    TaskState::kStarted,  TaskState::kKillInitiated, TaskState::kFinished,
};

constexpr std::array<JobState, 3> kJobStates = {JobState::kAccepted, JobState::kKillInitiated,
                                                JobState::kFinished};

constexpr std::array<TaskReason, 15> kReasons = {
    TaskReason::kNone,
    TaskReason::kNormal,
    TaskReason::kFailed,
    TaskReason::kKilled,
    TaskReason::kScaledDown,
    TaskReason::kEvicted,
    TaskReason::kLost,
    TaskReason::kRuntimeLimitExceeded,
    TaskReason::kInvalidRequest,
    TaskReason::kCrashed,
    TaskReason::kStuckInState,
    TaskReason::kTransientSystemError,
    TaskReason::kLocalSystemError,
    TaskReason::kImageNotFound,
    TaskReason::kImageDenied,
};

TEST(TaskStateMachineTest, FullTransitionMatrix) {
  // kAllowed[from][to], in the order Accepted, Launched, StartInitiated, Started, KillInitiated,
  // Finished. Moves go forward only (skipping states is allowed), any live state may be killed or
  // finish, KillInitiated only finishes, Finished is terminal, and staying put is not a move.
  constexpr bool kAllowed[kTaskStateCount][kTaskStateCount] = {
      //  Acc    Lau    StI    Sta    KiI    Fin
      {false, true, true, true, true, true},       // Accepted
      {false, false, true, true, true, true},      // Launched
      {false, false, false, true, true, true},     // StartInitiated
      {false, false, false, false, true, true},    // Started
      {false, false, false, false, false, true},   // KillInitiated
      {false, false, false, false, false, false},  // Finished
  };
  for (int from = 0; from < kTaskStateCount; ++from) {
    for (int to = 0; to < kTaskStateCount; ++to) {
      EXPECT_EQ(isValidTransition(kTaskStates[from], kTaskStates[to]), kAllowed[from][to])
          << taskStateName(kTaskStates[from]) << " -> " << taskStateName(kTaskStates[to]);
    }
  }
}

TEST(TaskStateMachineTest, FinishedIsTerminal) {
  for (TaskState to : kTaskStates) EXPECT_FALSE(isValidTransition(TaskState::kFinished, to));
}

TEST(TaskStateMachineTest, NoStateMovesBackToAccepted) {
  for (TaskState from : kTaskStates) EXPECT_FALSE(isValidTransition(from, TaskState::kAccepted));
}

TEST(TaskReasonTest, SystemErrorsAreThePlatformsFault) {
  for (TaskReason reason : kReasons) {
    bool expected = reason == TaskReason::kLost || reason == TaskReason::kCrashed ||
                    reason == TaskReason::kStuckInState ||
                    reason == TaskReason::kTransientSystemError ||
                    reason == TaskReason::kLocalSystemError;
    EXPECT_EQ(isSystemError(reason), expected) << "reason " << taskReasonName(reason);
  }
}

TEST(TaskReasonTest, FailuresAndSystemErrorsAreRetriedButExitsAndKillsAreNot) {
  struct Row {
    TaskReason reason;
    bool retryable;
  };
  constexpr Row kRows[] = {
      {TaskReason::kNone, false},
      {TaskReason::kNormal, false},
      {TaskReason::kFailed, true},
      {TaskReason::kKilled, false},
      {TaskReason::kScaledDown, false},
      {TaskReason::kEvicted, true},
      {TaskReason::kLost, true},
      {TaskReason::kInvalidRequest, false},
      {TaskReason::kCrashed, true},
      {TaskReason::kStuckInState, true},
      {TaskReason::kTransientSystemError, true},
      {TaskReason::kLocalSystemError, true},
      {TaskReason::kImageNotFound, false},
      {TaskReason::kImageDenied, false},
  };
  static_assert(std::size(kRows) == kReasons.size() - 1, "every reason but runtime limit");
  for (const Row& row : kRows) {
    for (bool retryOnRuntimeLimit : {false, true}) {
      EXPECT_EQ(isRetryable(row.reason, retryOnRuntimeLimit), row.retryable)
          << "reason '" << taskReasonName(row.reason) << "', retryOnRuntimeLimit "
          << retryOnRuntimeLimit;
    }
  }
}

TEST(TaskReasonTest, RuntimeLimitExceededIsRetriedOnlyWhenTheJobAsks) {
  EXPECT_FALSE(isRetryable(TaskReason::kRuntimeLimitExceeded, false));
  EXPECT_TRUE(isRetryable(TaskReason::kRuntimeLimitExceeded, true));
  EXPECT_FALSE(isSystemError(TaskReason::kRuntimeLimitExceeded));
}

TEST(StateNamesTest, TaskStateNamesRoundTrip) {
  constexpr std::array<std::string_view, kTaskStateCount> kNames = {
      "Accepted", "Launched", "StartInitiated", "Started", "KillInitiated", "Finished"};
  for (size_t i = 0; i < kTaskStates.size(); ++i) {
    EXPECT_EQ(taskStateName(kTaskStates[i]), kNames[i]);
    EXPECT_EQ(parseTaskState(kNames[i]), kTaskStates[i]) << kNames[i];
  }
}

TEST(StateNamesTest, JobStateNamesRoundTrip) {
  constexpr std::array<std::string_view, 3> kNames = {"Accepted", "KillInitiated", "Finished"};
  for (size_t i = 0; i < kJobStates.size(); ++i) {
    EXPECT_EQ(jobStateName(kJobStates[i]), kNames[i]);
    EXPECT_EQ(parseJobState(kNames[i]), kJobStates[i]) << kNames[i];
  }
}

TEST(StateNamesTest, TaskReasonNamesRoundTrip) {
  constexpr std::array<std::string_view, 15> kNames = {"",
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
  for (size_t i = 0; i < kReasons.size(); ++i) {
    EXPECT_EQ(taskReasonName(kReasons[i]), kNames[i]);
    if (kReasons[i] == TaskReason::kNone) continue;
    EXPECT_EQ(parseTaskReason(kNames[i]), kReasons[i]) << kNames[i];
  }
}

TEST(StateNamesTest, NoReasonHasAnEmptyNameThatDoesNotParse) {
  EXPECT_EQ(taskReasonName(TaskReason::kNone), "");
  EXPECT_EQ(parseTaskReason(""), std::nullopt);
}

TEST(StateNamesTest, UnknownAndMiscasedNamesDoNotParse) {
  EXPECT_EQ(parseTaskState("accepted"), std::nullopt);
  EXPECT_EQ(parseTaskState("Running"), std::nullopt);
  EXPECT_EQ(parseTaskState(""), std::nullopt);
  EXPECT_EQ(parseJobState("finished"), std::nullopt);
  EXPECT_EQ(parseJobState("Launched"), std::nullopt);
  EXPECT_EQ(parseJobState(""), std::nullopt);
  EXPECT_EQ(parseTaskReason("Failed"), std::nullopt);
  EXPECT_EQ(parseTaskReason("none"), std::nullopt);
  EXPECT_EQ(parseTaskReason("failed "), std::nullopt);
}

}  // namespace
}  // namespace skiff::api
