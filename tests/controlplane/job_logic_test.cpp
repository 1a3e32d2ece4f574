// The lifecycle rules of job_logic.h, driven by a ManualClock: every test passes explicit `nowMs`
// values, so retries, timeouts and the runtime limit are checked to the millisecond without
// sleeping.

#include "controlplane/job_logic.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "api/job.h"
#include "api/states.h"
#include "common/clock.h"
#include "controlplane/records.h"

namespace skiff::controlplane {
namespace {

using api::JobState;
using api::TaskReason;
using api::TaskState;

constexpr int64_t kStartMs = 1'700'000'000'000;

// ---- Descriptors ----

std::string container() {
  return "applicationName: app\n"
         "owner:\n"
         "  teamEmail: team@example.com\n"
         "container:\n"
         "  image: busybox:1.36\n";
}

std::string batchYaml(int64_t size, const std::string& retryPolicy, int64_t runtimeLimitSec = 60,
                      bool retryOnRuntimeLimit = false) {
  return container() + "batch:\n  size: " + std::to_string(size) +
         "\n  runtimeLimitSec: " + std::to_string(runtimeLimitSec) +
         "\n  retryOnRuntimeLimit: " + (retryOnRuntimeLimit ? "true" : "false") +
         "\n  retryPolicy: " + retryPolicy + "\n";
}

std::string serviceYaml(int64_t min, int64_t desired, int64_t max) {
  return container() + "service:\n  capacity: {min: " + std::to_string(min) +
         ", desired: " + std::to_string(desired) + ", max: " + std::to_string(max) +
         "}\n  retryPolicy: {immediate: {retries: 0}}\n";
}

std::string immediate(int64_t retries) {
  return "{immediate: {retries: " + std::to_string(retries) + "}}";
}

// Builds the view of a newly accepted job from a YAML (or JSON) job file.
JobView makeJob(const std::string& text, int64_t nowMs = kStartMs) {
  auto document = api::parseJobFileText(text);
  EXPECT_TRUE(document.has_value()) << (document ? "" : document.error().message());
  if (!document) return {};
  auto descriptor = api::validateJobDescriptor(*document);
  if (!descriptor) {
    std::string errors;
    for (const auto& e : descriptor.error()) errors += e.toString() + "; ";
    ADD_FAILURE() << "invalid descriptor: " << errors;
    return {};
  }
  return newJob(newJobId(nowMs), std::move(*descriptor), "", nowMs);
}

// ---- The fixture: a job view, a clock, and an agent that reports with rising seq numbers ----

class JobLogicTest : public ::testing::Test {
 protected:
  ManualClock clock{kStartMs};
  LifecycleConfig config;
  store::Revision revision = 0;
  std::map<std::string, int64_t> seqs;  // Last seq sent per task id.

  int64_t now() const { return clock.nowMs(); }

  // Applies `edit` to `view` as if it had been made durable.
  void commit(JobView& view, JobEdit&& edit) { std::move(edit).applyTo(view, ++revision); }

  // Runs `fn` on a fresh edit of `view`, applies the edit and returns what `fn` returned.
  template <typename Fn>
  auto change(JobView& view, Fn&& fn) {
    JobEdit edit(view);
    if constexpr (std::is_void_v<decltype(fn(edit))>) {
      fn(edit);
      commit(view, std::move(edit));
    } else {
      auto result = fn(edit);
      commit(view, std::move(edit));
      return result;
    }
  }

  // One pass of the reconcile loop at the current time; returns the next deadline.
  int64_t reconcileNow(JobView& view) {
    return change(view, [&](JobEdit& edit) { return reconcile(edit, now(), config); });
  }

  void launch(JobView& view, size_t position, const std::string& nodeId = "node-1") {
    change(view, [&](JobEdit& edit) { launchTask(edit, position, nodeId, now()); });
  }

  // The agent reports `state` for the task at `position`, then the loop reconciles (as the job
  // manager does in one step). Returns whether the report changed something.
  bool report(JobView& view, size_t position, TaskState state,
              TaskReason reason = TaskReason::kNone, std::optional<int32_t> exitCode = {}) {
    TaskStatusUpdate update;
    update.taskId = view.tasks.at(position).id;
    update.seq = ++seqs[update.taskId];
    update.state = state;
    update.reason = reason;
    update.exitCode = exitCode;
    update.message = "from agent";
    JobEdit edit(view);
    bool applied = applyStatus(edit, update, now());
    reconcile(edit, now(), config);
    commit(view, std::move(edit));
    return applied;
  }

  // Places the task at `position` and has the agent start it.
  void run(JobView& view, size_t position) {
    launch(view, position);
    ASSERT_TRUE(report(view, position, TaskState::kStartInitiated));
    ASSERT_TRUE(report(view, position, TaskState::kStarted));
  }

  void finishWith(JobView& view, size_t position, int32_t exitCode) {
    ASSERT_TRUE(report(view, position, TaskState::kFinished, TaskReason::kNone, exitCode));
  }

  // Applies one raw update without reconciling.
  bool applyOnly(JobView& view, const TaskStatusUpdate& update) {
    return change(view, [&](JobEdit& edit) { return applyStatus(edit, update, now()); });
  }
};

// Suites by area; they share the fixture.
class NewJobTest : public JobLogicTest {};
class TaskStatusTest : public JobLogicTest {};
class RetryTest : public JobLogicTest {};
class SystemRetryTest : public JobLogicTest {};
class RuntimeLimitTest : public JobLogicTest {};
class StateTimeoutTest : public JobLogicTest {};
class KillTest : public JobLogicTest {};
class ServiceCapacityTest : public JobLogicTest {};
class BatchCompletionTest : public JobLogicTest {};
class ReconcileDeadlineTest : public JobLogicTest {};
class JobEditTest : public JobLogicTest {};

// ======================= The task state machine through applyStatus =======================

TEST_F(NewJobTest, NewBatchJobHasSizeAcceptedTasks) {
  JobView view = makeJob(batchYaml(3, immediate(0)));
  EXPECT_EQ(view.job.state, JobState::kAccepted);
  EXPECT_EQ(view.job.stateTimeMs, kStartMs);
  EXPECT_EQ(view.job.nextIndex, 3);
  ASSERT_EQ(view.tasks.size(), 3u);
  for (size_t i = 0; i < view.tasks.size(); ++i) {
    const TaskRecord& task = view.tasks[i];
    EXPECT_EQ(task.index, static_cast<int64_t>(i));
    EXPECT_EQ(task.id, taskId(view.job.id, task.index, 0));
    EXPECT_EQ(task.state, TaskState::kAccepted);
    EXPECT_EQ(task.stateTimeMs(TaskState::kAccepted), kStartMs);
    EXPECT_TRUE(wantsPlacement(task, now()));
  }
}

TEST_F(TaskStatusTest, AgentReportsMoveTaskThroughEveryState) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  clock.advanceMs(10);
  launch(view, 0, "node-7");
  EXPECT_EQ(view.tasks[0].state, TaskState::kLaunched);
  EXPECT_EQ(view.tasks[0].nodeId, "node-7");
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kLaunched), kStartMs + 10);
  EXPECT_FALSE(wantsPlacement(view.tasks[0], now()));

  clock.advanceMs(10);
  EXPECT_TRUE(report(view, 0, TaskState::kStartInitiated));
  EXPECT_EQ(view.tasks[0].state, TaskState::kStartInitiated);
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kStartInitiated), kStartMs + 20);

  clock.advanceMs(10);
  EXPECT_TRUE(report(view, 0, TaskState::kStarted));
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kStarted), kStartMs + 30);
  EXPECT_EQ(view.tasks[0].message, "from agent");
  EXPECT_EQ(view.tasks[0].lastSeq, 2);

  clock.advanceMs(10);
  EXPECT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kNormal);
  EXPECT_TRUE(view.tasks[0].hasExitCode);
  EXPECT_EQ(view.tasks[0].exitCode, 0);
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kFinished), kStartMs + 40);
}

TEST_F(TaskStatusTest, AgentMaySkipStatesGoingForward) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  EXPECT_TRUE(report(view, 0, TaskState::kStarted));
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
}

TEST_F(TaskStatusTest, NonZeroExitCodeFinishesFailed) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  finishWith(view, 0, 3);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kFailed);
  EXPECT_EQ(view.tasks[0].exitCode, 3);
}

TEST_F(TaskStatusTest, FinishedWithoutExitCodeOrReasonIsNormal) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  EXPECT_TRUE(report(view, 0, TaskState::kFinished));
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kNormal);
  EXPECT_FALSE(view.tasks[0].hasExitCode);
}

TEST_F(TaskStatusTest, StaleSeqIsIgnored) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  TaskStatusUpdate started{view.tasks[0].id, 5, TaskState::kStarted, TaskReason::kNone, {}, ""};
  ASSERT_TRUE(applyOnly(view, started));
  // An older report arrives late: it must not move the task back or forward.
  TaskStatusUpdate late{view.tasks[0].id, 4, TaskState::kFinished, TaskReason::kNone, 1, ""};
  JobEdit edit(view);
  EXPECT_FALSE(applyStatus(edit, late, now()));
  EXPECT_TRUE(edit.empty());
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
  EXPECT_EQ(view.tasks[0].lastSeq, 5);
}

TEST_F(TaskStatusTest, ResentReportIsAppliedOnce) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  TaskStatusUpdate started{view.tasks[0].id, 1, TaskState::kStarted, TaskReason::kNone, {}, ""};
  clock.advanceMs(100);
  ASSERT_TRUE(applyOnly(view, started));
  int64_t startedAt = view.tasks[0].stateTimeMs(TaskState::kStarted);
  clock.advanceMs(100);
  // The agent did not see the answer and sends the same report again.
  JobEdit edit(view);
  EXPECT_FALSE(applyStatus(edit, started, now()));
  EXPECT_TRUE(edit.empty());
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kStarted), startedAt);
}

TEST_F(TaskStatusTest, PinnedImageFromTheAgentIsRecordedAndKept) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  TaskStatusUpdate started{view.tasks[0].id, 1, TaskState::kStarted, TaskReason::kNone, {}, ""};
  started.image = "127.0.0.1:5000/skiff/busybox@sha256:" + std::string(64, 'a');
  ASSERT_TRUE(applyOnly(view, started));
  EXPECT_EQ(view.tasks[0].image, started.image);
  seqs[started.taskId] = started.seq;
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks[0].image, started.image);
  auto stored = taskFromStored(toStored(view.tasks[0]), 1);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->image, started.image);
}

TEST_F(TaskStatusTest, ImpossibleTransitionIsIgnored) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  ASSERT_EQ(view.tasks[0].state, TaskState::kStarted);
  for (TaskState backwards :
       {TaskState::kAccepted, TaskState::kLaunched, TaskState::kStartInitiated}) {
    TaskStatusUpdate update{view.tasks[0].id, 100, backwards, TaskReason::kNone, {}, ""};
    JobEdit edit(view);
    EXPECT_FALSE(applyStatus(edit, update, now())) << api::taskStateName(backwards);
    EXPECT_TRUE(edit.empty()) << "an ignored report must not change the task";
  }
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
  EXPECT_EQ(view.tasks[0].lastSeq, 2);
  // Later valid reports still apply.
  EXPECT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kNormal);
}

TEST_F(TaskStatusTest, KillInitiatedCannotGoBackToStarted) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kKillInitiated));
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kKilled);
  EXPECT_FALSE(report(view, 0, TaskState::kStarted));
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
}

TEST_F(TaskStatusTest, FinishedIsTerminal) {
  JobView view = makeJob(batchYaml(2, immediate(0)));
  run(view, 0);
  finishWith(view, 0, 0);
  ASSERT_EQ(view.tasks[0].state, TaskState::kFinished);
  for (TaskState state : {TaskState::kStarted, TaskState::kKillInitiated, TaskState::kFinished}) {
    TaskStatusUpdate update{view.tasks[0].id, 1000, state, TaskReason::kFailed, 9, "late"};
    JobEdit edit(view);
    EXPECT_FALSE(applyStatus(edit, update, now())) << api::taskStateName(state);
    EXPECT_TRUE(edit.empty());
  }
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kNormal);
  EXPECT_EQ(view.tasks[0].exitCode, 0);
}

TEST_F(TaskStatusTest, ReportForUnknownTaskIsIgnored) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  for (std::string id : {taskId(view.job.id, 0, 1), taskId(view.job.id, 5, 0), std::string("job-x"),
                         std::string("not-a-task"), std::string("")}) {
    TaskStatusUpdate update{id, 1, TaskState::kStarted, TaskReason::kNone, {}, ""};
    JobEdit edit(view);
    EXPECT_FALSE(applyStatus(edit, update, now())) << id;
    EXPECT_TRUE(edit.empty());
  }
}

// ============================== Retry policies ==============================

TEST_F(RetryTest, ImmediateRetryIsPlaceableAtOnce) {
  JobView view = makeJob(batchYaml(1, immediate(2)));
  run(view, 0);
  std::string firstId = view.tasks[0].id;
  clock.advanceMs(500);
  finishWith(view, 0, 1);

  ASSERT_EQ(view.tasks.size(), 1u);
  const TaskRecord& retry = view.tasks[0];
  EXPECT_EQ(retry.id, taskId(view.job.id, 0, 1));
  EXPECT_EQ(retry.index, 0);
  EXPECT_EQ(retry.state, TaskState::kAccepted);
  EXPECT_EQ(retry.resubmitOf, firstId);
  EXPECT_EQ(retry.resubmitNumber, 1);
  EXPECT_EQ(retry.userRetries(), 1);
  EXPECT_EQ(retry.notBeforeMs, 0);
  EXPECT_TRUE(wantsPlacement(retry, now()));
  EXPECT_EQ(view.job.state, JobState::kAccepted);
}

TEST_F(RetryTest, RetryEditWritesTheFinishedAttemptAndTheRetry) {
  JobView view = makeJob(batchYaml(1, immediate(1)));
  run(view, 0);
  TaskStatusUpdate update{view.tasks[0].id, 10, TaskState::kFinished, TaskReason::kNone, 1, ""};
  JobEdit edit(view);
  ASSERT_TRUE(applyStatus(edit, update, now()));
  reconcile(edit, now(), config);
  auto changed = edit.changedTasks();
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed[0]->id, taskId(view.job.id, 0, 0));
  EXPECT_EQ(changed[0]->state, TaskState::kFinished);
  EXPECT_EQ(changed[1]->id, taskId(view.job.id, 0, 1));
  EXPECT_EQ(changed[1]->state, TaskState::kAccepted);
  commit(view, std::move(edit));
  EXPECT_EQ(view.tasks[0].modRevision, revision);
}

TEST_F(RetryTest, DelayedRetryWaitsInitialDelayThenDelayMs) {
  JobView view =
      makeJob(batchYaml(1, "{delayed: {initialDelayMs: 5000, delayMs: 2000, retries: 3}}"));
  run(view, 0);
  finishWith(view, 0, 1);
  int64_t failedAt = now();

  TaskRecord retry = view.tasks[0];
  EXPECT_EQ(retry.resubmitNumber, 1);
  EXPECT_EQ(retry.notBeforeMs, failedAt + 5000);
  EXPECT_FALSE(wantsPlacement(retry, now()));
  EXPECT_EQ(reconcileNow(view), failedAt + 5000) << "the retry delay is the next deadline";
  clock.advanceMs(4999);
  EXPECT_FALSE(wantsPlacement(view.tasks[0], now()));
  clock.advanceMs(1);
  EXPECT_TRUE(wantsPlacement(view.tasks[0], now()));

  // The second retry waits delayMs, counted from when the first retry failed.
  run(view, 0);
  clock.advanceMs(300);
  finishWith(view, 0, 1);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 2);
  EXPECT_EQ(view.tasks[0].notBeforeMs, now() + 2000);
  EXPECT_FALSE(wantsPlacement(view.tasks[0], now()));
  clock.advanceMs(1999);
  EXPECT_FALSE(wantsPlacement(view.tasks[0], now()));
  clock.advanceMs(1);
  EXPECT_TRUE(wantsPlacement(view.tasks[0], now()));

  // And so does the third.
  run(view, 0);
  finishWith(view, 0, 1);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 3);
  EXPECT_EQ(view.tasks[0].notBeforeMs, now() + 2000);
}

TEST_F(RetryTest, DelayedRetryAlreadyDueWhenReconciledLate) {
  JobView view =
      makeJob(batchYaml(1, "{delayed: {initialDelayMs: 1000, delayMs: 1000, retries: 1}}"));
  run(view, 0);
  // The failure is applied now, but the loop only reconciles 5 s later.
  TaskStatusUpdate update{view.tasks[0].id, 10, TaskState::kFinished, TaskReason::kNone, 1, ""};
  ASSERT_TRUE(applyOnly(view, update));
  clock.advanceMs(5000);
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].notBeforeMs, 0) << "the delay counts from when the task finished";
  EXPECT_TRUE(wantsPlacement(view.tasks[0], now()));
}

TEST_F(RetryTest, ExponentialBackoffDoublesAndCapsAtMaxDelay) {
  JobView view = makeJob(batchYaml(
      1, "{exponentialBackOff: {initialDelayMs: 1000, maxDelayIntervalMs: 5000, retries: 6}}"));
  const std::vector<int64_t> expected = {1000, 2000, 4000, 5000, 5000, 5000};
  for (size_t attempt = 0; attempt < expected.size(); ++attempt) {
    run(view, 0);
    clock.advanceMs(100);
    finishWith(view, 0, 1);
    const TaskRecord& retry = view.tasks[0];
    EXPECT_EQ(retry.resubmitNumber, static_cast<int64_t>(attempt + 1));
    EXPECT_EQ(retry.notBeforeMs - now(), expected[attempt]) << "retry " << attempt + 1;
    EXPECT_FALSE(wantsPlacement(retry, now()));
    EXPECT_EQ(reconcileNow(view), retry.notBeforeMs);
    clock.setMs(view.tasks[0].notBeforeMs);
    EXPECT_TRUE(wantsPlacement(view.tasks[0], now()));
  }
  // The budget of 6 retries is spent: the 7th attempt's failure fails the job.
  run(view, 0);
  finishWith(view, 0, 1);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 6);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

TEST_F(RetryTest, RetriesStopAfterBudgetAndJobFinishesFailed) {
  JobView view = makeJob(batchYaml(1, immediate(2)));
  for (int64_t attempt = 0; attempt <= 2; ++attempt) {
    ASSERT_EQ(view.tasks[0].resubmitNumber, attempt);
    ASSERT_EQ(view.job.state, JobState::kAccepted);
    run(view, 0);
    finishWith(view, 0, 1);
  }
  ASSERT_EQ(view.tasks.size(), 1u);
  EXPECT_EQ(view.tasks[0].id, taskId(view.job.id, 0, 2));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kFailed);
  EXPECT_EQ(view.tasks[0].userRetries(), 2);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
  EXPECT_EQ(view.job.message, "1 of 1 tasks failed (task 0: failed: from agent)");
  EXPECT_EQ(view.job.stateTimeMs, now());
  EXPECT_EQ(reconcileNow(view), 0);
}

TEST_F(RetryTest, NoRetriesMeansFirstFailureIsFinal) {
  JobView view = makeJob(batchYaml(2, immediate(0)));
  run(view, 0);
  run(view, 1);
  finishWith(view, 0, 2);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0);
  EXPECT_EQ(view.job.state, JobState::kAccepted) << "task 1 still runs";
  finishWith(view, 1, 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
  EXPECT_EQ(view.job.message, "1 of 2 tasks failed (task 0: failed: from agent)");
}

TEST_F(RetryTest, NormalExitIsNeverRetried) {
  JobView view = makeJob(batchYaml(1, immediate(5)));
  run(view, 0);
  finishWith(view, 0, 0);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "normal");
}

TEST_F(RetryTest, EachSlotHasItsOwnRetryBudget) {
  JobView view = makeJob(batchYaml(2, immediate(1)));
  run(view, 0);
  run(view, 1);
  finishWith(view, 0, 1);
  finishWith(view, 1, 1);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 1);
  EXPECT_EQ(view.tasks[1].resubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[1].state, TaskState::kAccepted);
  run(view, 0);
  run(view, 1);
  finishWith(view, 0, 0);
  finishWith(view, 1, 1);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
  EXPECT_EQ(view.job.message, "1 of 2 tasks failed (task 1: failed: from agent)");
}

// ============================== System errors and evictions ==============================

class SystemErrorTest : public JobLogicTest, public ::testing::WithParamInterface<TaskReason> {};

TEST_P(SystemErrorTest, RetriedWithoutUsingUserRetries) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  clock.advanceMs(1000);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, GetParam(), 255));
  int64_t failedAt = now();

  ASSERT_EQ(view.tasks.size(), 1u);
  const TaskRecord& retry = view.tasks[0];
  EXPECT_EQ(retry.state, TaskState::kAccepted);
  EXPECT_EQ(retry.resubmitNumber, 1);
  EXPECT_EQ(retry.systemResubmitNumber, 1);
  EXPECT_EQ(retry.evictionResubmitNumber, 0);
  EXPECT_EQ(retry.userRetries(), 0);
  EXPECT_EQ(retry.notBeforeMs, failedAt + config.systemRetryDelayMs);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
  clock.advanceMs(config.systemRetryDelayMs);
  EXPECT_TRUE(wantsPlacement(view.tasks[0], now()));

  // The retry budget (0) is untouched: a user failure now is final.
  run(view, 0);
  finishWith(view, 0, 1);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 1);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

INSTANTIATE_TEST_SUITE_P(
    JobLogic, SystemErrorTest,
    ::testing::Values(TaskReason::kLost, TaskReason::kCrashed, TaskReason::kStuckInState,
                      TaskReason::kTransientSystemError, TaskReason::kLocalSystemError),
    [](const auto& info) { return std::string(api::taskReasonName(info.param)); });

TEST_F(SystemRetryTest, SystemRetryDelayDoublesAndCapsAtThirtySeconds) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  const std::vector<int64_t> expected = {1000, 2000, 4000, 8000, 16000, 30000, 30000};
  for (size_t i = 0; i < expected.size(); ++i) {
    run(view, 0);
    ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kCrashed));
    EXPECT_EQ(view.tasks[0].systemResubmitNumber, static_cast<int64_t>(i + 1));
    EXPECT_EQ(view.tasks[0].notBeforeMs - now(), expected[i]) << "system retry " << i + 1;
    clock.setMs(view.tasks[0].notBeforeMs);
  }
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
}

TEST_F(SystemRetryTest, LostNodeFinishesItsTasksLostAndTheyAreRetried) {
  JobView view = makeJob(batchYaml(3, immediate(0)));
  launch(view, 0, "node-a");
  launch(view, 1, "node-b");
  launch(view, 2, "node-a");
  ASSERT_TRUE(report(view, 2, TaskState::kStarted));
  change(view, [&](JobEdit& edit) {
    finishTasksOnNode(edit, "node-a", TaskReason::kLost, "node-a is gone", now());
  });
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kLost);
  EXPECT_EQ(view.tasks[0].message, "node-a is gone");
  EXPECT_EQ(view.tasks[1].state, TaskState::kLaunched);
  EXPECT_EQ(view.tasks[2].reason, TaskReason::kLost);

  reconcileNow(view);
  for (size_t i : {0u, 2u}) {
    EXPECT_EQ(view.tasks[i].state, TaskState::kAccepted);
    EXPECT_EQ(view.tasks[i].systemResubmitNumber, 1);
    EXPECT_EQ(view.tasks[i].userRetries(), 0);
    EXPECT_TRUE(view.tasks[i].nodeId.empty());
  }
  EXPECT_EQ(view.tasks[1].resubmitNumber, 0);
}

TEST_F(SystemRetryTest, FinishTasksOnNodeLeavesAcceptedAndFinishedTasksAlone) {
  JobView view = makeJob(batchYaml(2, immediate(0)));
  launch(view, 0, "node-a");
  finishWith(view, 0, 0);
  JobEdit edit(view);
  finishTasksOnNode(edit, "node-a", TaskReason::kLost, "gone", now());
  EXPECT_TRUE(edit.empty());
}

TEST_F(SystemRetryTest, EvictionDoesNotUseUserRetries) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kEvicted));
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].evictionResubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 0);
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
  EXPECT_EQ(view.tasks[0].notBeforeMs, now() + config.systemRetryDelayMs);

  // A second eviction is retried too.
  clock.setMs(view.tasks[0].notBeforeMs);
  run(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kEvicted));
  EXPECT_EQ(view.tasks[0].evictionResubmitNumber, 2);
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
}

TEST_F(SystemRetryTest, UserRetriesAfterSystemErrorsStillHaveTheFullBudget) {
  JobView view = makeJob(batchYaml(1, immediate(1)));
  run(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kLocalSystemError));
  clock.setMs(view.tasks[0].notBeforeMs);
  run(view, 0);
  finishWith(view, 0, 1);  // First user failure: one retry left.
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 2);
  EXPECT_EQ(view.tasks[0].userRetries(), 1);
  run(view, 0);
  finishWith(view, 0, 1);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

class ImageErrorTest : public JobLogicTest, public ::testing::WithParamInterface<TaskReason> {};

TEST_P(ImageErrorTest, ARegistrysDefinitiveAnswerEndsTheTaskWithoutRetries) {
  JobView view = makeJob(batchYaml(1, immediate(3)));
  launch(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kStartInitiated));
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, GetParam()));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, GetParam());
  EXPECT_EQ(view.tasks[0].message, "from agent");
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0) << "no retry, not even of the user's budget";
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
  EXPECT_NE(view.job.message.find(api::taskReasonName(GetParam())), std::string::npos)
      << view.job.message;
}

INSTANTIATE_TEST_SUITE_P(JobLogic, ImageErrorTest,
                         ::testing::Values(TaskReason::kImageNotFound, TaskReason::kImageDenied),
                         [](const auto& info) {
                           return std::string(api::taskReasonName(info.param));
                         });

TEST_F(SystemRetryTest, SystemErrorsBeforeTheStartAreRetriedABoundedNumberOfTimes) {
  config.maxSystemRetries = 3;
  JobView view = makeJob(batchYaml(1, immediate(5)));
  for (int64_t attempt = 0; attempt <= config.maxSystemRetries; ++attempt) {
    ASSERT_EQ(view.job.state, JobState::kAccepted) << "attempt " << attempt;
    EXPECT_EQ(view.tasks[0].systemErrorsInRow, attempt);
    clock.setMs(std::max(now(), view.tasks[0].notBeforeMs));
    launch(view, 0);
    ASSERT_TRUE(report(view, 0, TaskState::kStartInitiated));
    ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kTransientSystemError));
  }
  // The fourth failure in a row is final: the job ends with the last attempt's reason.
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kTransientSystemError);
  EXPECT_EQ(view.tasks[0].resubmitNumber, config.maxSystemRetries);
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

TEST_F(SystemRetryTest, AnAttemptThatStartedResetsTheSystemErrorBound) {
  config.maxSystemRetries = 1;
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kTransientSystemError));
  EXPECT_EQ(view.tasks[0].systemErrorsInRow, 1);
  clock.setMs(view.tasks[0].notBeforeMs);
  run(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kLost));
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted) << "a started task lost is retried";
  EXPECT_EQ(view.tasks[0].systemErrorsInRow, 0);
  clock.setMs(view.tasks[0].notBeforeMs);
  launch(view, 0);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kLocalSystemError));
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].systemErrorsInRow, 1);
}

// ============================== Draining nodes ==============================

TEST_F(SystemRetryTest, BatchTaskOnADrainingNodeRunsUntilTheDeadlineThenMovesWithoutUsingRetries) {
  JobView view = makeJob(batchYaml(2, immediate(0), /*runtimeLimitSec=*/3600));
  run(view, 0);
  launch(view, 1, "node-2");
  ASSERT_TRUE(report(view, 1, TaskState::kStarted));
  int64_t deadline = now() + 30'000;
  EXPECT_EQ(change(view, [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", deadline); }),
            1);
  EXPECT_TRUE(view.tasks[0].draining);
  EXPECT_FALSE(view.tasks[1].draining) << "node-2 is not draining";
  EXPECT_EQ(reconcileNow(view), deadline);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted) << "it may still finish on its own";

  clock.setMs(deadline);
  reconcileNow(view);
  ASSERT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kEvicted);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 137));
  // Placed again (elsewhere: the scheduler skips draining nodes), with the user's retries intact.
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].evictionResubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
  EXPECT_FALSE(view.tasks[0].draining);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
}

TEST_F(SystemRetryTest, BatchTaskThatFinishesBeforeTheDrainDeadlineIsNotMoved) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  change(view, [&](JobEdit& edit) { drainTasksOnNode(edit, "node-1", now() + 30'000); });
  clock.advanceMs(10'000);
  finishWith(view, 0, 0);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kNormal);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  // Draining again with an earlier deadline moves the date up; a finished task is left alone.
  EXPECT_EQ(change(view, [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now()); }),
            0);
}

// ============================== The runtime limit ==============================

TEST_F(RuntimeLimitTest, RuntimeLimitKillsStartedTaskAndIsNotRetriedByDefault) {
  JobView view = makeJob(batchYaml(1, immediate(3), /*runtimeLimitSec=*/60));
  run(view, 0);
  int64_t startedAt = now();
  EXPECT_EQ(reconcileNow(view), startedAt + 60'000);

  clock.advanceMs(59'999);
  EXPECT_EQ(reconcileNow(view), startedAt + 60'000);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);

  clock.advanceMs(1);
  EXPECT_EQ(reconcileNow(view), now() + config.killInitiatedTimeoutMs);
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kRuntimeLimitExceeded);

  // The agent stops it; the kill's reason wins over the exit code.
  clock.advanceMs(2000);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 137));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kRuntimeLimitExceeded);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0) << "retryOnRuntimeLimit is off";
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

TEST_F(RuntimeLimitTest, RuntimeLimitRetriedWithRetryOnRuntimeLimit) {
  JobView view = makeJob(batchYaml(1, immediate(1), 60, /*retryOnRuntimeLimit=*/true));
  run(view, 0);
  clock.advanceMs(60'000);
  reconcileNow(view);
  ASSERT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 137));
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].userRetries(), 1) << "a runtime-limit retry uses the user's budget";

  // The retry hits the limit again and the budget is spent.
  run(view, 0);
  clock.advanceMs(60'000);
  reconcileNow(view);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 137));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kRuntimeLimitExceeded);
  EXPECT_EQ(view.job.reason, "failed");
}

TEST_F(RuntimeLimitTest, RuntimeLimitDoesNotApplyToServiceTasks) {
  JobView view = makeJob(serviceYaml(0, 1, 1));
  run(view, 0);
  clock.advanceMs(int64_t{1000} * 1000 * 1000);
  EXPECT_EQ(reconcileNow(view), 0);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
}

// ============================== State timeouts ==============================

TEST_F(StateTimeoutTest, LaunchedTimeoutFinishesStuckInStateAndRetries) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  int64_t launchedAt = now();
  EXPECT_EQ(reconcileNow(view), launchedAt + config.launchedTimeoutMs);
  clock.advanceMs(config.launchedTimeoutMs - 1);
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].state, TaskState::kLaunched);

  clock.advanceMs(1);
  TaskRecord before = view.tasks[0];
  JobEdit edit(view);
  reconcile(edit, now(), config);
  auto changed = edit.changedTasks();
  ASSERT_EQ(changed.size(), 2u);
  EXPECT_EQ(changed[0]->id, before.id);
  EXPECT_EQ(changed[0]->state, TaskState::kFinished);
  EXPECT_EQ(changed[0]->reason, TaskReason::kStuckInState);
  EXPECT_NE(changed[0]->message.find("Launched"), std::string::npos) << changed[0]->message;
  commit(view, std::move(edit));
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 1);
  EXPECT_EQ(view.tasks[0].userRetries(), 0);
}

TEST_F(StateTimeoutTest, StartInitiatedTimeoutFinishesStuckInState) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  clock.advanceMs(1000);
  ASSERT_TRUE(report(view, 0, TaskState::kStartInitiated));
  int64_t since = now();
  // The Launched timeout no longer applies: image pulls get the longer StartInitiated timeout.
  EXPECT_EQ(reconcileNow(view), since + config.startInitiatedTimeoutMs);
  clock.advanceMs(config.launchedTimeoutMs);
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStartInitiated);

  clock.setMs(since + config.startInitiatedTimeoutMs);
  std::string stuckId = view.tasks[0].id;
  JobEdit edit(view);
  reconcile(edit, now(), config);
  ASSERT_FALSE(edit.changedTasks().empty());
  EXPECT_EQ(edit.changedTasks()[0]->id, stuckId);
  EXPECT_EQ(edit.changedTasks()[0]->reason, TaskReason::kStuckInState);
  EXPECT_NE(edit.changedTasks()[0]->message.find("StartInitiated"), std::string::npos);
  commit(view, std::move(edit));
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 1);
}

TEST_F(StateTimeoutTest, KillInitiatedTimeoutFinishesStuckInStateKeepingTheKill) {
  JobView view = makeJob(batchYaml(1, immediate(3)));
  run(view, 0);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  ASSERT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  int64_t killedAt = now();
  EXPECT_EQ(reconcileNow(view), killedAt + config.killInitiatedTimeoutMs);

  clock.advanceMs(config.killInitiatedTimeoutMs - 1);
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);

  clock.advanceMs(1);
  EXPECT_EQ(reconcileNow(view), 0);
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kStuckInState);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kKilled);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0) << "a killed task is not retried";
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "killed");
}

TEST_F(StateTimeoutTest, TimeoutsFollowTheConfig) {
  config.launchedTimeoutMs = 50;
  JobView view = makeJob(batchYaml(1, immediate(0)));
  launch(view, 0);
  EXPECT_EQ(reconcileNow(view), now() + 50);
  clock.advanceMs(50);
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 1);
}

// ============================== Kills ==============================

TEST_F(KillTest, KillJobFinishesAcceptedTasksAtOnce) {
  JobView view = makeJob(batchYaml(3, immediate(5)));
  clock.advanceMs(10);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);
  EXPECT_EQ(view.job.reason, "killed");
  for (const TaskRecord& task : view.tasks) {
    EXPECT_EQ(task.state, TaskState::kFinished);
    EXPECT_EQ(task.reason, TaskReason::kKilled);
    EXPECT_EQ(task.stateTimeMs(TaskState::kFinished), kStartMs + 10);
  }
  EXPECT_EQ(reconcileNow(view), 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "killed");
  for (const TaskRecord& task : view.tasks) EXPECT_EQ(task.resubmitNumber, 0);
}

TEST_F(KillTest, KillJobKillsRunningTasksAndFinishesWhenAllStop) {
  JobView view = makeJob(batchYaml(3, immediate(5)));
  run(view, 0);
  launch(view, 1);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kKilled);
  EXPECT_EQ(view.tasks[1].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[2].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[2].reason, TaskReason::kKilled);

  reconcileNow(view);
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);
  // No new placements while the job is being killed.
  EXPECT_FALSE(wantsPlacement(view.tasks[2], now()));

  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 143));
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kKilled);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0);
  EXPECT_EQ(view.job.state, JobState::kKillInitiated) << "task 1 is still stopping";

  ASSERT_TRUE(report(view, 1, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks[1].reason, TaskReason::kKilled);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "killed");
}

TEST_F(KillTest, KilledTaskThatIsLostIsNotRetried) {
  JobView view = makeJob(batchYaml(1, immediate(5)));
  run(view, 0);
  std::string id = view.tasks[0].id;
  ASSERT_TRUE(
      change(view, [&](JobEdit& edit) { return killTask(edit, id, false, now()).has_value(); }));
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kLost));
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kLost) << "a platform failure keeps its reason";
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0) << "but the deliberate kill decides about a retry";
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
}

TEST_F(KillTest, KillJobOnFinishedJobFails) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  finishWith(view, 0, 0);
  ASSERT_EQ(view.job.state, JobState::kFinished);
  JobEdit edit(view);
  auto status = killJob(edit, now());
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(edit.empty());
}

TEST_F(KillTest, KillJobTwiceKeepsTheFirstKill) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  run(view, 0);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  int64_t killedAt = view.job.stateTimeMs;
  clock.advanceMs(1000);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);
  EXPECT_EQ(view.job.stateTimeMs, killedAt);
  EXPECT_EQ(view.tasks[0].stateTimeMs(TaskState::kKillInitiated), killedAt);
}

TEST_F(KillTest, KillTaskInBatchJobIsNotRetried) {
  JobView view = makeJob(batchYaml(2, immediate(5)));
  run(view, 0);
  run(view, 1);
  std::string id = view.tasks[0].id;
  ASSERT_TRUE(
      change(view, [&](JobEdit& edit) { return killTask(edit, id, false, now()).has_value(); }));
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kKilled);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 143));
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kKilled);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 0);
  finishWith(view, 1, 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "failed");
  EXPECT_EQ(view.job.message, "1 of 2 tasks failed (task 0: killed: from agent)");
}

TEST_F(KillTest, KillTaskErrors) {
  JobView view = makeJob(batchYaml(2, immediate(0)));
  run(view, 0);
  finishWith(view, 0, 0);
  {
    JobEdit edit(view);
    auto status = killTask(edit, taskId(view.job.id, 7, 0), false, now());
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code(), ErrorCode::kNotFound);
  }
  {
    JobEdit edit(view);
    auto status = killTask(edit, view.tasks[0].id, false, now());
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
    EXPECT_TRUE(edit.empty());
  }
  {
    JobEdit edit(view);
    auto status = killTask(edit, view.tasks[1].id, /*shrink=*/true, now());
    ASSERT_FALSE(status.has_value()) << "shrink is for service jobs";
    EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
    EXPECT_TRUE(edit.empty());
  }
}

TEST_F(KillTest, KillServiceTaskWithoutShrinkReplacesIt) {
  JobView view = makeJob(serviceYaml(1, 2, 3));
  run(view, 0);
  run(view, 1);
  std::string id = view.tasks[1].id;
  JobEdit edit(view);
  ASSERT_TRUE(killTask(edit, id, false, now()).has_value());
  reconcile(edit, now(), config);
  commit(view, std::move(edit));
  EXPECT_EQ(view.job.capacity.desired, 2);
  EXPECT_EQ(view.tasks[1].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[1].killReason, TaskReason::kKilled);
  // A replacement is started at once, in a new slot.
  ASSERT_EQ(view.tasks.size(), 3u);
  EXPECT_EQ(view.tasks[2].index, 2);
  EXPECT_EQ(view.tasks[2].state, TaskState::kAccepted);
  EXPECT_EQ(view.job.nextIndex, 3);

  ASSERT_TRUE(report(view, 1, TaskState::kFinished, TaskReason::kNone, 143));
  EXPECT_EQ(view.tasks[1].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[1].reason, TaskReason::kKilled);
  EXPECT_EQ(view.tasks[1].resubmitNumber, 0) << "capacity is already met";
}

TEST_F(KillTest, KillServiceTaskWithShrinkLowersDesiredAndIsNotReplaced) {
  JobView view = makeJob(serviceYaml(1, 2, 3));
  run(view, 0);
  run(view, 1);
  std::string id = view.tasks[0].id;
  JobEdit edit(view);
  ASSERT_TRUE(killTask(edit, id, true, now()).has_value());
  reconcile(edit, now(), config);
  commit(view, std::move(edit));
  EXPECT_EQ(view.job.capacity.desired, 1);
  EXPECT_EQ(view.tasks[0].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks.size(), 2u);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 143));
  EXPECT_EQ(view.tasks[0].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks.size(), 2u);
  EXPECT_EQ(view.tasks[1].state, TaskState::kStarted);

  // Shrinking below min is refused.
  JobEdit below(view);
  auto status = killTask(below, view.tasks[1].id, true, now());
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(below.empty());
}

TEST_F(KillTest, KillPendingServiceTaskWithShrinkFinishesItAtOnce) {
  JobView view = makeJob(serviceYaml(0, 2, 3));
  std::string id = view.tasks[1].id;
  JobEdit edit(view);
  ASSERT_TRUE(killTask(edit, id, true, now()).has_value());
  reconcile(edit, now(), config);
  commit(view, std::move(edit));
  EXPECT_EQ(view.job.capacity.desired, 1);
  EXPECT_EQ(view.tasks[1].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[1].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks.size(), 2u);
}

// ============================== Service capacity ==============================

TEST_F(ServiceCapacityTest, ServiceJobStartsDesiredTasks) {
  JobView view = makeJob(serviceYaml(1, 3, 5));
  EXPECT_EQ(view.job.capacity.min, 1);
  EXPECT_EQ(view.job.capacity.desired, 3);
  EXPECT_EQ(view.job.capacity.max, 5);
  EXPECT_EQ(view.tasks.size(), 3u);
  EXPECT_EQ(view.job.nextIndex, 3);
  JobEdit edit(view);
  EXPECT_EQ(reconcile(edit, now(), config), 0);
  EXPECT_TRUE(edit.empty()) << "capacity is met";
}

TEST_F(ServiceCapacityTest, ServiceScaleUpAddsTasksWithNewIndexes) {
  JobView view = makeJob(serviceYaml(0, 1, 5));
  run(view, 0);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateCapacity(edit, std::nullopt, 3, std::nullopt).has_value();
  }));
  EXPECT_EQ(view.job.capacity.desired, 3);
  EXPECT_EQ(view.tasks.size(), 1u) << "updateCapacity only records the new capacity";
  reconcileNow(view);
  ASSERT_EQ(view.tasks.size(), 3u);
  EXPECT_EQ(view.tasks[1].index, 1);
  EXPECT_EQ(view.tasks[2].index, 2);
  EXPECT_EQ(view.tasks[1].id, taskId(view.job.id, 1, 0));
  EXPECT_EQ(view.tasks[2].state, TaskState::kAccepted);
  EXPECT_TRUE(wantsPlacement(view.tasks[2], now()));
  EXPECT_EQ(view.job.nextIndex, 3);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
}

TEST_F(ServiceCapacityTest, ServiceScaleDownKillsPendingFirstThenNewest) {
  JobView view = makeJob(serviceYaml(0, 5, 5));
  // Tasks 0, 1 and 3 run; 2 and 4 are pending.
  run(view, 0);
  run(view, 1);
  run(view, 3);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateCapacity(edit, std::nullopt, 1, std::nullopt).has_value();
  }));
  reconcileNow(view);
  // Pending tasks go first (and finish at once), then the newest running ones.
  EXPECT_EQ(view.tasks[4].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[4].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[2].state, TaskState::kFinished);
  EXPECT_EQ(view.tasks[2].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[3].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[3].killReason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[1].state, TaskState::kKillInitiated);
  EXPECT_EQ(view.tasks[1].killReason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted) << "the oldest running task stays";

  // The scaled-down tasks stop and are not replaced.
  ASSERT_TRUE(report(view, 3, TaskState::kFinished, TaskReason::kNone, 143));
  ASSERT_TRUE(report(view, 1, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks[3].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[1].reason, TaskReason::kScaledDown);
  JobEdit edit(view);
  reconcile(edit, now(), config);
  EXPECT_TRUE(edit.empty());
}

TEST_F(ServiceCapacityTest, ServiceScaleDownPrefersNewestAmongPending) {
  JobView view = makeJob(serviceYaml(0, 4, 4));
  run(view, 0);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateCapacity(edit, std::nullopt, 2, std::nullopt).has_value();
  }));
  reconcileNow(view);
  EXPECT_EQ(view.tasks[0].state, TaskState::kStarted);
  EXPECT_EQ(view.tasks[1].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[2].reason, TaskReason::kScaledDown);
  EXPECT_EQ(view.tasks[3].reason, TaskReason::kScaledDown);
}

TEST_F(ServiceCapacityTest, ServiceTaskThatExitsIsReplacedInItsSlot) {
  JobView view = makeJob(serviceYaml(1, 1, 1));
  run(view, 0);
  finishWith(view, 0, 0);
  ASSERT_EQ(view.tasks.size(), 1u);
  EXPECT_EQ(view.tasks[0].state, TaskState::kAccepted);
  EXPECT_EQ(view.tasks[0].index, 0);
  EXPECT_EQ(view.tasks[0].resubmitNumber, 1);
  EXPECT_EQ(view.job.state, JobState::kAccepted) << "service jobs run until killed";
}

TEST_F(KillTest, KillServiceJobFinishesIt) {
  JobView view = makeJob(serviceYaml(1, 2, 2));
  run(view, 0);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  reconcileNow(view);
  EXPECT_EQ(view.tasks.size(), 2u) << "a killed service is not topped up";
  EXPECT_EQ(view.job.state, JobState::kKillInitiated);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 0));
  EXPECT_EQ(view.tasks.size(), 2u);
  EXPECT_EQ(view.tasks[0].reason, TaskReason::kKilled);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "killed");
}

TEST_F(ServiceCapacityTest, UpdateCapacityKeepsUnsetFields) {
  JobView view = makeJob(serviceYaml(1, 2, 3));
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateCapacity(edit, std::nullopt, std::nullopt, 10).has_value();
  }));
  EXPECT_EQ(view.job.capacity.min, 1);
  EXPECT_EQ(view.job.capacity.desired, 2);
  EXPECT_EQ(view.job.capacity.max, 10);
  ASSERT_TRUE(
      change(view, [&](JobEdit& edit) { return updateCapacity(edit, 0, 0, 0).has_value(); }));
  EXPECT_EQ(view.job.capacity.max, 0);
}

TEST_F(ServiceCapacityTest, UpdateCapacityRejectsInvalidCapacity) {
  JobView view = makeJob(serviceYaml(1, 2, 3));
  struct Case {
    std::optional<int64_t> min, desired, max;
  };
  const std::vector<Case> cases = {
      {3, std::nullopt, std::nullopt},       // min above desired
      {std::nullopt, 4, std::nullopt},       // desired above max
      {std::nullopt, std::nullopt, 1},       // max below desired
      {-1, std::nullopt, std::nullopt},      // negative min
      {std::nullopt, 0, std::nullopt},       // desired below min
      {std::nullopt, std::nullopt, 10'001},  // above the service limit
      {0, 10'001, 10'001},
  };
  for (const Case& c : cases) {
    JobEdit edit(view);
    auto status = updateCapacity(edit, c.min, c.desired, c.max);
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(status.error().message().find("capacity"), std::string::npos);
    EXPECT_TRUE(edit.empty());
  }
  JobEdit edit(view);
  EXPECT_TRUE(updateCapacity(edit, 0, 10'000, 10'000).has_value()) << "the limit itself is fine";
}

TEST_F(ServiceCapacityTest, UpdateCapacityRefusesBatchAndInactiveJobs) {
  JobView batch = makeJob(batchYaml(1, immediate(0)));
  JobEdit batchEdit(batch);
  auto status = updateCapacity(batchEdit, 0, 1, 1);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);

  JobView service = makeJob(serviceYaml(0, 1, 1));
  ASSERT_TRUE(change(service, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  JobEdit serviceEdit(service);
  status = updateCapacity(serviceEdit, 0, 1, 2);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(ServiceCapacityTest, SetEnabledAppliesToServicesOnly) {
  JobView service = makeJob(serviceYaml(0, 1, 1));
  ASSERT_TRUE(change(service, [&](JobEdit& edit) { return setEnabled(edit, false).has_value(); }));
  EXPECT_FALSE(service.job.enabled);
  JobEdit same(service);
  EXPECT_TRUE(setEnabled(same, false).has_value());
  EXPECT_TRUE(same.empty());

  JobView batch = makeJob(batchYaml(1, immediate(0)));
  JobEdit edit(batch);
  auto status = setEnabled(edit, true);
  ASSERT_FALSE(status.has_value());
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
}

// ============================== Batch completion ==============================

TEST_F(BatchCompletionTest, BatchJobFinishesNormalWhenAllTasksFinishNormally) {
  JobView view = makeJob(batchYaml(3, immediate(1)));
  for (size_t i = 0; i < 3; ++i) run(view, i);
  finishWith(view, 0, 0);
  finishWith(view, 1, 0);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
  clock.advanceMs(42);
  finishWith(view, 2, 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "normal");
  EXPECT_EQ(view.job.stateTimeMs, now());
  EXPECT_EQ(reconcileNow(view), 0);
}

TEST_F(BatchCompletionTest, BatchJobWithARetriedSlotFinishesNormalWhenTheRetrySucceeds) {
  JobView view = makeJob(batchYaml(2, immediate(1)));
  run(view, 0);
  run(view, 1);
  finishWith(view, 0, 1);
  finishWith(view, 1, 0);
  EXPECT_EQ(view.job.state, JobState::kAccepted);
  run(view, 0);
  finishWith(view, 0, 0);
  EXPECT_EQ(view.job.state, JobState::kFinished);
  EXPECT_EQ(view.job.reason, "normal");
}

// ============================== Deadlines ==============================

TEST_F(ReconcileDeadlineTest, ReconcileReturnsNoDeadlineWhenNothingIsPending) {
  JobView view = makeJob(batchYaml(2, immediate(0)));
  EXPECT_EQ(reconcileNow(view), 0) << "Accepted tasks wait for placement, not for time";
}

TEST_F(ReconcileDeadlineTest, ReconcileReturnsTheEarliestDeadline) {
  JobView view = makeJob(batchYaml(3, "{delayed: {initialDelayMs: 400000, delayMs: 1, retries: 1}}",
                                   /*runtimeLimitSec=*/100));
  launch(view, 0);  // Launched: +120 s.
  run(view, 1);     // Started: +100 s.
  EXPECT_EQ(reconcileNow(view), now() + 100'000);
  clock.advanceMs(30'000);
  EXPECT_EQ(reconcileNow(view), now() + 70'000);
  ASSERT_TRUE(report(view, 1, TaskState::kFinished, TaskReason::kNone, 0));
  // Task 0 times out in 90 s.
  EXPECT_EQ(reconcileNow(view), now() + 90'000);
  run(view, 2);
  ASSERT_TRUE(report(view, 2, TaskState::kFinished, TaskReason::kNone, 1));
  // Task 2's retry is due in 400 s; task 0's timeout is still first.
  EXPECT_EQ(view.tasks[2].notBeforeMs, now() + 400'000);
  EXPECT_EQ(reconcileNow(view), now() + 90'000);
  clock.advanceMs(90'000);
  reconcileNow(view);  // Task 0 is stuck and retried after the system retry delay.
  EXPECT_EQ(view.tasks[0].systemResubmitNumber, 1);
  EXPECT_EQ(reconcileNow(view), now() + config.systemRetryDelayMs);
}

TEST_F(ReconcileDeadlineTest, ReconcileOfFinishedJobDoesNothing) {
  JobView view = makeJob(batchYaml(1, immediate(0)));
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()).has_value(); }));
  reconcileNow(view);
  ASSERT_EQ(view.job.state, JobState::kFinished);
  JobEdit edit(view);
  EXPECT_EQ(reconcile(edit, now() + 1'000'000, config), 0);
  EXPECT_TRUE(edit.empty());
}

// ============================== JobEdit ==============================

TEST_F(JobEditTest, EditIsInvisibleUntilApplied) {
  JobView view = makeJob(serviceYaml(0, 1, 3));
  JobEdit edit(view);
  ASSERT_TRUE(updateCapacity(edit, std::nullopt, 2, std::nullopt).has_value());
  reconcile(edit, now(), config);
  EXPECT_EQ(edit.taskCount(), 2u);
  EXPECT_EQ(edit.job().capacity.desired, 2);
  EXPECT_EQ(view.job.capacity.desired, 1);
  EXPECT_EQ(view.tasks.size(), 1u);
  EXPECT_TRUE(edit.jobChanged());
  ASSERT_EQ(edit.changedTasks().size(), 1u);
  EXPECT_EQ(edit.changedTasks()[0]->index, 1);
  std::move(edit).applyTo(view, 77);
  EXPECT_EQ(view.job.modRevision, 77);
  ASSERT_EQ(view.tasks.size(), 2u);
  EXPECT_EQ(view.tasks[1].modRevision, 77);
  EXPECT_EQ(view.tasks[0].modRevision, 0) << "unchanged tasks keep their revision";
  EXPECT_EQ(view.findIndex(1), std::optional<size_t>(1));
  EXPECT_EQ(view.findIndex(2), std::nullopt);
}

}  // namespace
}  // namespace skiff::controlplane

// ======================= Readiness and endpoints =======================

namespace skiff::controlplane {
namespace {

class ReadinessTest : public JobLogicTest {
 protected:
  std::string servedYaml(bool withReadiness) {
    std::string yaml = container() + "  ports: [8080]\n";
    if (withReadiness) yaml += "  readiness: {http: {port: 8080}, intervalMs: 200}\n";
    return yaml + "service:\n  capacity: {desired: 2, max: 4}\n";
  }

  bool reportReady(JobView& view, size_t position, bool ready) {
    TaskStatusUpdate update;
    update.taskId = view.tasks.at(position).id;
    update.seq = ++seqs[update.taskId];
    update.state = TaskState::kStarted;
    update.ready = ready;
    update.ip = "10.64.0." + std::to_string(position + 2);
    return applyOnly(view, update);
  }
};

TEST_F(ReadinessTest, WithoutReadinessCheckAStartedTaskIsReady) {
  JobView view = makeJob(servedYaml(false));
  run(view, 0);
  EXPECT_TRUE(view.tasks[0].ready);
  EXPECT_EQ(view.tasks[0].readySinceMs, now());
  EXPECT_FALSE(view.tasks[1].ready);
  auto endpoints = endpointsOf(view);
  ASSERT_EQ(endpoints.size(), 1u);
  EXPECT_EQ(endpoints[0].taskId, view.tasks[0].id);
  EXPECT_EQ(endpoints[0].ports, std::vector<int64_t>{8080});
  EXPECT_EQ(endpoints[0].nodeId, "node-1");
}

TEST_F(ReadinessTest, WithReadinessCheckATaskIsReadyOnlyAfterTheAgentSaysSo) {
  JobView view = makeJob(servedYaml(true));
  run(view, 0);
  EXPECT_FALSE(view.tasks[0].ready);
  EXPECT_TRUE(endpointsOf(view).empty());
  clock.advanceMs(500);
  ASSERT_TRUE(reportReady(view, 0, true));
  EXPECT_TRUE(view.tasks[0].ready);
  EXPECT_EQ(view.tasks[0].readySinceMs, now());
  ASSERT_EQ(endpointsOf(view).size(), 1u);
  EXPECT_EQ(endpointsOf(view)[0].ip, "10.64.0.2");
  // Still ready: the time it became ready stays.
  clock.advanceMs(500);
  ASSERT_TRUE(reportReady(view, 0, true));
  EXPECT_EQ(view.tasks[0].readySinceMs, now() - 500);
  ASSERT_TRUE(reportReady(view, 0, false));
  EXPECT_FALSE(view.tasks[0].ready);
  EXPECT_TRUE(endpointsOf(view).empty());
}

TEST_F(ReadinessTest, AStaleReadinessReportIsIgnored) {
  JobView view = makeJob(servedYaml(true));
  run(view, 0);
  ASSERT_TRUE(reportReady(view, 0, true));
  TaskStatusUpdate stale;
  stale.taskId = view.tasks[0].id;
  stale.seq = seqs[stale.taskId] - 1;
  stale.state = TaskState::kStarted;
  stale.ready = false;
  EXPECT_FALSE(applyOnly(view, stale));
  EXPECT_TRUE(view.tasks[0].ready);
}

TEST_F(ReadinessTest, AKillTakesTheTaskOutOfTheEndpointsAtOnce) {
  JobView view = makeJob(servedYaml(false));
  run(view, 0);
  run(view, 1);
  ASSERT_EQ(endpointsOf(view).size(), 2u);
  ASSERT_TRUE(
      change(view, [&](JobEdit& edit) { return killTask(edit, view.tasks[0].id, false, now()); }));
  EXPECT_FALSE(view.tasks[0].ready);
  ASSERT_EQ(endpointsOf(view).size(), 1u);
  EXPECT_EQ(endpointsOf(view)[0].taskId, view.tasks[1].id);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return killJob(edit, now()); }));
  EXPECT_TRUE(endpointsOf(view).empty());
}

TEST_F(ReadinessTest, AReadyReportCannotMakeANotStartedTaskReady) {
  JobView view = makeJob(servedYaml(true));
  launch(view, 0);
  TaskStatusUpdate update;
  update.taskId = view.tasks[0].id;
  update.seq = ++seqs[update.taskId];
  update.state = TaskState::kLaunched;
  update.ready = true;
  applyOnly(view, update);
  EXPECT_FALSE(view.tasks[0].ready);
}

TEST_F(ReadinessTest, ReadyIsKeptInTheStoredAndWireForms) {
  JobView view = makeJob(servedYaml(false));
  run(view, 0);
  auto stored = taskFromStored(toStored(view.tasks[0]), 1);
  ASSERT_TRUE(stored.has_value());
  EXPECT_TRUE(stored->ready);
  EXPECT_EQ(stored->readySinceMs, view.tasks[0].readySinceMs);
  EXPECT_EQ(toWire(view.tasks[0], view.job.id)["ready"], true);
}

}  // namespace
}  // namespace skiff::controlplane

// ======================= Rolling updates =======================

namespace skiff::controlplane {
namespace {

class RolloutTest : public JobLogicTest {
 protected:
  std::string serviceWithRollout(int64_t desired, const std::string& rollout) {
    return container() +
           "  ports: [8080]\nservice:\n  capacity: {desired: " + std::to_string(desired) +
           ", max: 10}\n  rollout: " + rollout + "\n";
  }

  api::Container withImage(const JobView& view, const std::string& tag) {
    api::Container next = view.job.descriptor.container;
    next.image.tag = tag;
    return next;
  }

  // Plays the agent until nothing moves: places and starts Accepted tasks (or fails them when
  // their revision is `failingRevision`), stops tasks being killed. Returns the largest number of
  // tasks neither finished nor being killed and the smallest number of ready ones seen.
  std::pair<int64_t, int64_t> settle(JobView& view, int64_t failingRevision = 0) {
    int64_t maxUnfinished = 0;
    int64_t minReady = INT64_MAX;
    for (int round = 0; round < 100; ++round) {
      reconcileNow(view);
      bool moved = false;
      for (size_t i = 0; i < view.tasks.size(); ++i) {
        const TaskRecord& task = view.tasks[i];
        if (task.state == TaskState::kAccepted) {
          bool fails = task.specRevision == failingRevision;
          launch(view, i);
          report(view, i, TaskState::kStartInitiated);
          if (fails) {
            report(view, i, TaskState::kFinished, TaskReason::kNone, 1);
          } else {
            report(view, i, TaskState::kStarted);
          }
          moved = true;
          break;
        }
        if (task.state == TaskState::kKillInitiated) {
          report(view, i, TaskState::kFinished, TaskReason::kNone, 0);
          moved = true;
          break;
        }
      }
      int64_t unfinished = 0;
      int64_t ready = 0;
      for (const auto& task : view.tasks) {
        // Tasks being killed do not count against the surge (as in Kubernetes).
        unfinished += task.finished() || task.state == TaskState::kKillInitiated ? 0 : 1;
        ready += task.ready ? 1 : 0;
      }
      maxUnfinished = std::max(maxUnfinished, unfinished);
      minReady = std::min(minReady, ready);
      clock.advanceMs(100);
      if (!moved && !view.job.rollout.active) break;
      if (!moved && view.job.descriptor.service->rollout.canaryTasks > 0 &&
          !view.job.rollout.promoted &&
          view.job.findRevision(view.job.specRevision)->outcome == "paused") {
        break;
      }
    }
    return {maxUnfinished, minReady};
  }

  std::vector<int64_t> liveRevisions(const JobView& view) {
    std::vector<int64_t> out;
    for (const auto& task : view.tasks) {
      if (!task.finished()) out.push_back(task.specRevision);
    }
    return out;
  }
};

TEST_F(RolloutTest, UpdateRollsEveryTaskWithinSurgeWithoutLosingAvailability) {
  JobView view = makeJob(serviceWithRollout(3, "{maxSurge: 1, maxUnavailable: 0}"));
  settle(view);
  ASSERT_EQ(liveRevisions(view), (std::vector<int64_t>{1, 1, 1}));
  ASSERT_TRUE(change(
      view, [&](JobEdit& edit) { return updateContainer(edit, withImage(view, "1.37"), now()); }));
  EXPECT_EQ(view.job.specRevision, 2);
  EXPECT_TRUE(view.job.rollout.active);
  EXPECT_EQ(view.job.descriptor.container.image.tag, "1.37");
  auto [maxUnfinished, minReady] = settle(view);
  EXPECT_FALSE(view.job.rollout.active);
  EXPECT_EQ(liveRevisions(view), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_LE(maxUnfinished, 4);
  EXPECT_GE(minReady, 3);
  nlohmann::json history = historyOf(view);
  ASSERT_EQ(history["items"].size(), 2u);
  EXPECT_EQ(history["items"][0]["revision"], 2);
  EXPECT_EQ(history["items"][0]["outcome"], "current");
  EXPECT_EQ(history["items"][0]["image"], "busybox:1.37");
  EXPECT_EQ(history["items"][0]["tasks"], 3);
  EXPECT_EQ(history["items"][1]["outcome"], "superseded");
}

TEST_F(RolloutTest, ANewTaskFailingBeforeItIsHealthyRollsBackOnItsOwn) {
  JobView view = makeJob(serviceWithRollout(3, "{maxSurge: 1, maxUnavailable: 0}"));
  settle(view);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateContainer(edit, withImage(view, "broken"), now());
  }));
  auto [maxUnfinished, minReady] = settle(view, /*failingRevision=*/2);
  EXPECT_FALSE(view.job.rollout.active);
  EXPECT_EQ(view.job.specRevision, 1);
  EXPECT_EQ(view.job.descriptor.container.image.tag, "1.36");
  EXPECT_EQ(liveRevisions(view), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_GE(minReady, 3);
  const SpecRevision* failed = view.job.findRevision(2);
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->outcome, "rolledBack");
  EXPECT_NE(failed->message.find("ended before it was healthy"), std::string::npos)
      << failed->message;
  EXPECT_EQ(view.job.findRevision(1)->outcome, "current");
}

TEST_F(RolloutTest, CanaryPausesUntilPromoted) {
  JobView view = makeJob(serviceWithRollout(3, "{maxSurge: 1, canary: {tasks: 1}}"));
  settle(view);
  ASSERT_TRUE(change(
      view, [&](JobEdit& edit) { return updateContainer(edit, withImage(view, "1.37"), now()); }));
  settle(view);
  ASSERT_TRUE(view.job.rollout.active);
  EXPECT_EQ(view.job.findRevision(2)->outcome, "paused");
  auto revisions = liveRevisions(view);
  EXPECT_EQ(std::count(revisions.begin(), revisions.end(), 2), 1);
  EXPECT_EQ(revisions.size(), 3u);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return promoteRollout(edit); }));
  EXPECT_FALSE(change(view, [&](JobEdit& edit) { return promoteRollout(edit); }));
  settle(view);
  EXPECT_FALSE(view.job.rollout.active);
  EXPECT_EQ(liveRevisions(view), (std::vector<int64_t>{2, 2, 2}));
}

TEST_F(RolloutTest, RollbackAfterARolloutReturnsToThePreviousRevision) {
  JobView view = makeJob(serviceWithRollout(2, "{maxSurge: 1}"));
  settle(view);
  ASSERT_TRUE(change(
      view, [&](JobEdit& edit) { return updateContainer(edit, withImage(view, "1.37"), now()); }));
  settle(view);
  ASSERT_EQ(view.job.specRevision, 2);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) { return rollbackTo(edit, std::nullopt, now()); }));
  settle(view);
  EXPECT_EQ(view.job.specRevision, 1);
  EXPECT_EQ(liveRevisions(view), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(view.job.findRevision(1)->outcome, "current");
  EXPECT_EQ(view.job.findRevision(2)->outcome, "superseded");
  auto missing = change(view, [&](JobEdit& edit) { return rollbackTo(edit, 9, now()); });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST_F(RolloutTest, UpdatesThatChangePlacementOrNothingOrABatchJobAreRefusedOrIgnored) {
  JobView view = makeJob(serviceWithRollout(2, "{maxSurge: 1}"));
  settle(view);
  api::Container bigger = view.job.descriptor.container;
  bigger.resources.cpu = 4;
  auto refused = change(view, [&](JobEdit& edit) { return updateContainer(edit, bigger, now()); });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(refused.error().message().find("container.resources"), std::string::npos);
  ASSERT_TRUE(change(view, [&](JobEdit& edit) {
    return updateContainer(edit, view.job.descriptor.container, now());
  }));
  EXPECT_FALSE(view.job.rollout.active);
  EXPECT_EQ(view.job.revisions.size(), 1u);

  JobView batch = makeJob(batchYaml(1, immediate(0)));
  auto batchRefused = change(
      batch, [&](JobEdit& edit) { return updateContainer(edit, withImage(batch, "x"), now()); });
  EXPECT_FALSE(batchRefused);
}

TEST_F(RolloutTest, RevisionsAndTheRolloutSurviveTheStoredForm) {
  JobView view = makeJob(serviceWithRollout(2, "{maxSurge: 1}"));
  settle(view);
  ASSERT_TRUE(change(
      view, [&](JobEdit& edit) { return updateContainer(edit, withImage(view, "1.37"), now()); }));
  reconcileNow(view);
  auto stored = jobFromStored(toStored(view.job), 5);
  ASSERT_TRUE(stored.has_value()) << stored.error().message();
  EXPECT_EQ(stored->specRevision, 2);
  ASSERT_EQ(stored->revisions.size(), 2u);
  EXPECT_EQ(stored->revisions[1].container.image.tag, "1.37");
  EXPECT_EQ(stored->revisions[0].container.image.tag, "1.36");
  EXPECT_TRUE(stored->rollout.active);
  EXPECT_EQ(stored->rollout.fromRevision, 1);
  const TaskRecord& newest = view.tasks.back();
  EXPECT_EQ(newest.specRevision, 2);
  auto task = taskFromStored(toStored(newest), 6);
  ASSERT_TRUE(task.has_value());
  EXPECT_EQ(task->specRevision, 2);
}

}  // namespace
}  // namespace skiff::controlplane

// ======================= Autoscaling =======================

namespace skiff::controlplane {
namespace {

class AutoscaleTest : public JobLogicTest {
 protected:
  JobView autoscaled() {
    JobView view = makeJob(container() +
                           "service:\n  capacity: {min: 1, desired: 2, max: 6}\n"
                           "  autoscaling:\n    scaleOutCooldownMs: 10000\n"
                           "    scaleInCooldownMs: 30000\n"
                           "    policies: [{targetTracking: {metric: cpu, target: 50}}]\n");
    run(view, 0);
    run(view, 1);
    return view;
  }
  Status push(JobView& view, double cpu) {
    return change(view, [&](JobEdit& edit) { return applyMetrics(edit, {{"cpu", cpu}}, now()); });
  }
};

TEST_F(AutoscaleTest, CpuAboveTargetScalesOutAndRecordsTheDecisionWithItsValues) {
  JobView view = autoscaled();
  ASSERT_TRUE(push(view, 100));
  EXPECT_EQ(view.job.capacity.desired, 4);
  EXPECT_EQ(view.job.autoscale.lastScaleOutMs, now());
  const auto& decision = view.job.autoscale.lastDecision;
  EXPECT_EQ(decision["decision"], "scale out");
  EXPECT_EQ(decision["proposals"][0]["value"], 100.0);
  EXPECT_EQ(decision["from"], 2);
  EXPECT_EQ(decision["to"], 4);
  reconcileNow(view);
  EXPECT_EQ(view.tasks.size(), 4u);
}

TEST_F(AutoscaleTest, CooldownsHoldFurtherChangesAndTheHoldIsRecorded) {
  JobView view = autoscaled();
  ASSERT_TRUE(push(view, 100));
  clock.advanceMs(1000);
  ASSERT_TRUE(push(view, 200));
  EXPECT_EQ(view.job.capacity.desired, 4);
  EXPECT_EQ(view.job.autoscale.lastDecision["decision"], "scale-out cooldown");
  clock.advanceMs(30'000);
  ASSERT_TRUE(push(view, 5));  // Two ready tasks at 5% of a 50% target: down to min.
  EXPECT_EQ(view.job.capacity.desired, 1);
  EXPECT_EQ(view.job.autoscale.lastDecision["decision"], "scale in");
}

TEST_F(AutoscaleTest, MetricsNeedAutoscalingPoliciesAndSurviveTheStoredForm) {
  JobView plain = makeJob(serviceYaml(0, 1, 2));
  EXPECT_FALSE(push(plain, 90));
  JobView view = autoscaled();
  ASSERT_TRUE(push(view, 100));
  auto stored = jobFromStored(toStored(view.job), 3);
  ASSERT_TRUE(stored.has_value()) << stored.error().message();
  EXPECT_EQ(stored->autoscale.metrics.at("cpu"), 100.0);
  EXPECT_EQ(stored->autoscale.lastScaleOutMs, view.job.autoscale.lastScaleOutMs);
  EXPECT_EQ(stored->autoscale.lastDecision, view.job.autoscale.lastDecision);
}

}  // namespace
}  // namespace skiff::controlplane

// ======================= Drain under a disruption budget =======================

namespace skiff::controlplane {
namespace {

class DrainTest : public JobLogicTest {
 protected:
  JobView service(const std::string& budget) {
    std::string yaml = container() + "service:\n  capacity: {desired: 3, max: 6}\n";
    if (!budget.empty()) yaml += "  disruptionBudget: " + budget + "\n";
    JobView view = makeJob(yaml);
    for (size_t i = 0; i < 3; ++i) run(view, i);  // All on node-1.
    return view;
  }

  // Places and starts every Accepted task on node-2; returns how many.
  int startReplacements(JobView& view) {
    int started = 0;
    for (size_t i = 0; i < view.tasks.size(); ++i) {
      if (view.tasks[i].state != TaskState::kAccepted) continue;
      launch(view, i, "node-2");
      report(view, i, TaskState::kStarted);
      ++started;
    }
    return started;
  }

  int64_t countOn(const JobView& view, const std::string& node, bool killing) {
    int64_t n = 0;
    for (const auto& task : view.tasks) {
      if (task.nodeId == node && !task.finished() &&
          (task.state == TaskState::kKillInitiated) == killing) {
        ++n;
      }
    }
    return n;
  }

  int64_t readyCount(const JobView& view) {
    int64_t n = 0;
    for (const auto& task : view.tasks) n += task.ready ? 1 : 0;
    return n;
  }

  // The agent reports every task being killed as stopped (the loop then reconciles).
  void stopKilled(JobView& view) {
    for (size_t i = 0; i < view.tasks.size(); ++i) {
      if (view.tasks[i].state == TaskState::kKillInitiated) {
        report(view, i, TaskState::kFinished, TaskReason::kNone, 143);
      }
    }
  }
};

TEST_F(DrainTest, WithoutABudgetOneTaskMovesAtATimeAndItsReplacementIsReadyFirst) {
  JobView view = service("");
  EXPECT_EQ(
      change(view,
             [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now() + 3'600'000); }),
      3);
  for (int moved = 0; moved < 3; ++moved) {
    reconcileNow(view);
    // One replacement waits for a node; nothing was stopped, the others keep serving.
    EXPECT_EQ(countOn(view, "node-1", /*killing=*/true), 0);
    EXPECT_EQ(countOn(view, "node-1", false), 3 - moved);
    EXPECT_EQ(startReplacements(view), 1) << "move " << moved;
    reconcileNow(view);
    EXPECT_EQ(countOn(view, "node-1", true), 1);
    EXPECT_EQ(readyCount(view), 3) << "maxUnhealthy 0: the replacement was ready first";
    stopKilled(view);
  }
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", false), 0);
  EXPECT_EQ(countOn(view, "node-2", false), 3);
  EXPECT_EQ(startReplacements(view), 0);
}

TEST_F(DrainTest, BudgetOfOneUnhealthyMovesOneTaskAtATimeAndTheRateSpacesThem) {
  JobView view = service("{maxUnhealthy: 1, rate: {tasks: 1, intervalMs: 10000}}");
  change(view, [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now() + 3'600'000); });
  reconcileNow(view);
  // Replacement first: no task is stopped before one is ready.
  EXPECT_EQ(countOn(view, "node-1", true), 0);
  EXPECT_EQ(startReplacements(view), 1);
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 1);
  stopKilled(view);
  EXPECT_EQ(startReplacements(view), 1);
  // The rate allows one disruption per 10 s.
  int64_t deadline = reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 0);
  EXPECT_EQ(deadline, now() + 10'000);
  clock.advanceMs(10'000);
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 1);
  stopKilled(view);
  EXPECT_EQ(startReplacements(view), 1);
  clock.advanceMs(10'000);
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 1);
  stopKilled(view);
  EXPECT_EQ(countOn(view, "node-2", false), 3);
  EXPECT_EQ(readyCount(view), 3);
}

TEST_F(DrainTest, BudgetOfTwoUnhealthyMovesTwoTasksAtATime) {
  JobView view = service("{maxUnhealthy: 2}");
  change(view, [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now() + 3'600'000); });
  reconcileNow(view);
  EXPECT_EQ(startReplacements(view), 2);
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 2);
  stopKilled(view);
  EXPECT_EQ(startReplacements(view), 1);
}

TEST_F(DrainTest, AvailabilityPercentageKeepsEnoughTasksReady) {
  JobView view = service("{availabilityPercentage: 100}");
  change(view, [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now() + 3'600'000); });
  reconcileNow(view);
  EXPECT_EQ(countOn(view, "node-1", true), 0);
  EXPECT_EQ(
      change(view,
             [&](JobEdit& edit) { return drainTasksOnNode(edit, "node-1", now() + 3'600'000); }),
      0)
      << "already draining";
  for (int moved = 0; moved < 3; ++moved) {
    EXPECT_EQ(startReplacements(view), 1);
    reconcileNow(view);
    EXPECT_EQ(countOn(view, "node-1", true), 1);
    EXPECT_EQ(readyCount(view), 3);
    stopKilled(view);
  }
  EXPECT_EQ(countOn(view, "node-2", false), 3);
}

}  // namespace
}  // namespace skiff::controlplane

// ======================= Evictions under a disruption budget =======================

namespace skiff::controlplane {
namespace {

class EvictionBudgetTest : public DrainTest {
 protected:
  bool evict(JobView& view, size_t position) {
    std::string id = view.tasks.at(position).id;
    return change(view, [&](JobEdit& edit) { return evictTask(edit, id, now()); });
  }
};

TEST_F(EvictionBudgetTest, EvictionsCountAgainstTheBudgetAndLeaveTheEndpointsAtOnce) {
  JobView view = service("{maxUnhealthy: 1, rate: {tasks: 2, intervalMs: 10000}}");
  EXPECT_EQ(evictionAllowance(view, {}, now()), 1);
  EXPECT_EQ(evictionAllowance(view, {view.tasks[0].id}, now()), 0)
      << "an eviction decided but not yet applied counts";

  ASSERT_TRUE(evict(view, 0));
  EXPECT_EQ(view.tasks[0].killReason, TaskReason::kEvicted);
  EXPECT_FALSE(view.tasks[0].ready);
  EXPECT_EQ(endpointsOf(view).size(), 2u);
  EXPECT_EQ(view.job.disruptionsMs, std::vector<int64_t>{now()});
  EXPECT_EQ(evictionAllowance(view, {}, now()), 0) << "one task is unhealthy";

  // The victim stops and its replacement is ready: the rate (2 per 10 s) allows one more.
  clock.advanceMs(1'000);
  ASSERT_TRUE(report(view, 0, TaskState::kFinished, TaskReason::kNone, 137));
  EXPECT_EQ(startReplacements(view), 1);
  EXPECT_EQ(evictionAllowance(view, {}, now()), 1);
  ASSERT_TRUE(evict(view, 1));
  EXPECT_EQ(view.job.disruptionsMs.size(), 2u);
  clock.advanceMs(1'000);
  ASSERT_TRUE(report(view, 1, TaskState::kFinished, TaskReason::kNone, 137));
  EXPECT_EQ(startReplacements(view), 1);
  EXPECT_EQ(readyCount(view), 3);
  EXPECT_EQ(evictionAllowance(view, {}, now()), 0) << "2 disruptions within 10 s";

  // Once the first disruption is 10 s old, one more may go; the record keeps what the rate needs.
  clock.advanceMs(8'000);
  EXPECT_EQ(evictionAllowance(view, {}, now()), 1);
  int64_t second = view.job.disruptionsMs[1];
  ASSERT_TRUE(evict(view, 2));
  EXPECT_EQ(view.job.disruptionsMs, (std::vector<int64_t>{second, now()}));
}

TEST_F(EvictionBudgetTest, BatchJobsAndServicesWithoutABudgetHaveNoLimit) {
  JobView batch = makeJob(batchYaml(2, immediate(0)));
  EXPECT_EQ(evictionAllowance(batch, {}, now()), std::nullopt);
  JobView view = service("");
  EXPECT_EQ(evictionAllowance(view, {}, now()), std::nullopt);
  ASSERT_TRUE(evict(view, 0));
  EXPECT_TRUE(view.job.disruptionsMs.empty()) << "no rate to count against";
  EXPECT_FALSE(evict(view, 0)) << "already being killed";
}

}  // namespace
}  // namespace skiff::controlplane
