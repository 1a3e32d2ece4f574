#include "cli/watch.h"

#include <gtest/gtest.h>

namespace skiff::cli {
namespace {

using nlohmann::json;

json jobObject(const std::string& state, int64_t size = 2) {
  return {{"id", "job-1"},
          {"descriptor", {{"name", "j"}, {"batch", {{"size", size}}}}},
          {"status", {{"state", state}}},
          {"type", "batch"}};
}

json taskObject(const std::string& id, int64_t index, const std::string& state,
                const std::string& reason = "", int64_t revision = 1,
                const std::string& resubmitOf = "") {
  json task = {{"id", id},       {"jobId", "job-1"}, {"index", index},
               {"state", state}, {"reason", reason}, {"revision", revision}};
  if (!resubmitOf.empty()) task["resubmitOf"] = resubmitOf;
  return task;
}

json event(const std::string& type, const std::string& kind, json object, int64_t revision) {
  return {{"type", type}, {"kind", kind}, {"object", std::move(object)}, {"revision", revision}};
}

json snapshotEnd(int64_t revision) {
  return {{"type", "snapshotEnd"}, {"revision", revision}};
}

TEST(EventCursorTest, ResumesAfterSnapshotEndAndUpdates) {
  EventCursor cursor;
  EXPECT_EQ(cursor.resumeFrom(), std::nullopt);
  cursor.observe(event("snapshot", "job", jobObject("Accepted"), 7));
  EXPECT_EQ(cursor.resumeFrom(), std::nullopt);  // Mid-snapshot: must start over.
  cursor.observe(snapshotEnd(10));
  EXPECT_EQ(cursor.resumeFrom(), 11);
  cursor.observe(event("update", "task", taskObject("t", 0, "Started"), 12));
  EXPECT_EQ(cursor.resumeFrom(), 13);
  cursor.observe({{"type", "keepalive"}});
  EXPECT_EQ(cursor.resumeFrom(), 13);
  cursor.restart();
  EXPECT_EQ(cursor.resumeFrom(), std::nullopt);
}

TEST(EventCursorTest, StartsFromTheGivenRevision) {
  EventCursor cursor(5);
  EXPECT_EQ(cursor.resumeFrom(), 5);
  cursor.observe(event("update", "job", jobObject("Accepted"), 8));
  EXPECT_EQ(cursor.resumeFrom(), 9);
}

TEST(JobWatchTest, SucceedsWhenEveryIndexEndsNormal) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted"), 1));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Started"), 2));
  watch.apply(event("snapshot", "task", taskObject("t1", 1, "Accepted"), 2));
  watch.apply(snapshotEnd(2));
  EXPECT_FALSE(watch.done());
  EXPECT_EQ(watch.statusLine(), "job-1  Accepted  tasks: 1 accepted, 1 started");
  watch.apply(event("update", "task", taskObject("t0", 0, "Finished", "normal", 3), 3));
  watch.apply(event("update", "task", taskObject("t1", 1, "Finished", "normal", 4), 4));
  EXPECT_FALSE(watch.done());
  EXPECT_EQ(watch.statusLine(), "job-1  Accepted  tasks: 2 finished (2 normal)");
  watch.apply(event("update", "job", jobObject("Finished"), 5));
  EXPECT_TRUE(watch.done());
  EXPECT_TRUE(watch.outcome().succeeded);
}

TEST(JobWatchTest, StatusLineSaysWhyTheLatestRetryWasNeeded) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted", 1), 1));
  watch.apply(snapshotEnd(1));
  json failed = taskObject("t0-0", 0, "Finished", "transientSystemError", 2);
  failed["message"] = "image: pull r/x:1: connection refused";
  watch.apply(event("update", "task", failed, 2));
  watch.apply(event("update", "task", taskObject("t0-1", 0, "Accepted", "", 3, "t0-0"), 3));
  EXPECT_EQ(watch.statusLine(),
            "job-1  Accepted  tasks: 1 accepted; retrying task 0 after transientSystemError: "
            "image: pull r/x:1: connection refused");
}

TEST(JobWatchTest, AFinishedJobWhoseTasksAreStillArrivingIsSettling) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted", 1), 1));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Started"), 1));
  watch.apply(snapshotEnd(1));
  EXPECT_FALSE(watch.settling());
  // The job's change comes before its task's in the same commit: "Finished, 1 started" would be
  // a lie, so the line is not shown until the task's arrives.
  watch.apply(event("update", "job", jobObject("Finished", 1), 2));
  EXPECT_TRUE(watch.settling());
  watch.apply(event("update", "task", taskObject("t0", 0, "Finished", "normal", 2), 2));
  EXPECT_FALSE(watch.settling());
  EXPECT_TRUE(watch.done());
  EXPECT_EQ(watch.statusLine(), "job-1  Finished  tasks: 1 finished (1 normal)");
}

TEST(JobWatchTest, FinalAttemptDecides) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted"), 1));
  watch.apply(snapshotEnd(1));
  // Index 0 fails once, then its retry succeeds; index 1 fails for good.
  watch.apply(event("update", "task", taskObject("t0a", 0, "Finished", "failed", 2), 2));
  watch.apply(event("update", "task", taskObject("t0b", 0, "Finished", "normal", 3, "t0a"), 3));
  watch.apply(event("update", "task", taskObject("t1a", 1, "Finished", "failed", 4), 4));
  EXPECT_EQ(watch.statusLine(), "job-1  Accepted  tasks: 2 finished (1 normal, 1 failed)");
  watch.apply(event("update", "job", jobObject("Finished"), 5));
  ASSERT_TRUE(watch.done());
  JobWatch::Outcome outcome = watch.outcome();
  EXPECT_FALSE(outcome.succeeded);
  ASSERT_EQ(outcome.failures.size(), 1u);
  EXPECT_EQ(outcome.failures[0], "task 1 (t1a) finished failed");
}

TEST(JobWatchTest, IndexThatNeverRanIsAFailure) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Finished", 3), 1));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Finished", "normal"), 1));
  watch.apply(snapshotEnd(1));
  ASSERT_TRUE(watch.done());
  JobWatch::Outcome outcome = watch.outcome();
  EXPECT_FALSE(outcome.succeeded);
  EXPECT_EQ(outcome.failures, (std::vector<std::string>{"task 1 never ran", "task 2 never ran"}));
}

TEST(JobWatchTest, WaitsForTaskEventsOfTheSameRevision) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted", 1), 1));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Started"), 1));
  watch.apply(snapshotEnd(1));
  // The job's Finished update arrives before its task's, in the same revision.
  watch.apply(event("update", "job", jobObject("Finished", 1), 5));
  EXPECT_FALSE(watch.done());
  watch.apply(event("update", "task", taskObject("t0", 0, "Finished", "normal", 5), 5));
  EXPECT_TRUE(watch.done());
  EXPECT_TRUE(watch.outcome().succeeded);
}

TEST(JobWatchTest, LaterRevisionSettlesAStuckTask) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Accepted", 1), 1));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Started"), 1));
  watch.apply(snapshotEnd(1));
  watch.apply(event("update", "job", jobObject("Finished", 1), 5));
  EXPECT_FALSE(watch.done());
  watch.apply({{"type", "keepalive"}});
  EXPECT_TRUE(watch.done());
  EXPECT_FALSE(watch.outcome().succeeded);
  EXPECT_EQ(watch.outcome().failures[0], "task 0 (t0) did not finish (Started)");
}

TEST(JobWatchTest, NeverDecidesMidSnapshot) {
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", jobObject("Finished", 1), 9));
  EXPECT_FALSE(watch.done());  // Its tasks may still be on the way.
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Finished", "normal"), 9));
  watch.apply(snapshotEnd(9));
  EXPECT_TRUE(watch.done());
  EXPECT_TRUE(watch.outcome().succeeded);
}

TEST(JobWatchTest, IgnoresOtherJobsAndStaleCopies) {
  JobWatch watch("job-1");
  json other = taskObject("x", 0, "Started");
  other["jobId"] = "job-2";
  watch.apply(event("snapshot", "job", jobObject("Accepted", 1), 1));
  watch.apply(event("snapshot", "task", other, 1));
  watch.apply(snapshotEnd(1));
  watch.apply(event("update", "task", taskObject("t0", 0, "Finished", "normal", 8), 8));
  // A re-snapshot after a reconnect carrying an older copy must not go back in time.
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Started", "", 4), 8));
  watch.apply(snapshotEnd(8));
  EXPECT_EQ(watch.statusLine(), "job-1  Accepted  tasks: 1 finished (1 normal)");
}

TEST(JobWatchTest, StoredFormObjectsWithoutRevisions) {
  // skiffd's events carry objects as stored: no "revision", and "resubmitOf" always present.
  auto task = [](const std::string& id, int64_t index, const std::string& state,
                 const std::string& reason, const std::string& resubmitOf) {
    return json{{"id", id},       {"jobId", "job-1"}, {"index", index},
                {"state", state}, {"reason", reason}, {"resubmitOf", resubmitOf}};
  };
  json job = jobObject("Accepted", 1);
  JobWatch watch("job-1");
  watch.apply(event("snapshot", "job", job, 2));
  watch.apply(snapshotEnd(2));
  watch.apply(event("update", "task", task("t-0-0", 0, "Finished", "failed", ""), 3));
  watch.apply(event("update", "task", task("t-0-1", 0, "Accepted", "", "t-0-0"), 4));
  EXPECT_EQ(watch.statusLine(), "job-1  Accepted  tasks: 1 accepted; retrying task 0 after failed");
  watch.apply(event("update", "task", task("t-0-1", 0, "Finished", "normal", "t-0-0"), 7));
  job["status"]["state"] = "Finished";
  watch.apply(event("update", "job", job, 7));
  ASSERT_TRUE(watch.done());
  EXPECT_TRUE(watch.outcome().succeeded);
}

TEST(JobWatchTest, MissingJob) {
  JobWatch watch("job-1");
  EXPECT_EQ(watch.statusLine(), "job-1  Pending  tasks: none yet");
  watch.apply(snapshotEnd(3));
  EXPECT_TRUE(watch.missing());
  EXPECT_FALSE(watch.done());
}

TEST(JobWatchTest, ServiceJobKilledIsNotASuccess) {
  JobWatch watch("job-1");
  json service = {{"id", "job-1"},
                  {"descriptor", {{"service", {{"capacity", {{"desired", 1}}}}}}},
                  {"status", {{"state", "Finished"}}}};
  watch.apply(event("snapshot", "job", service, 3));
  watch.apply(event("snapshot", "task", taskObject("t0", 0, "Finished", "killed"), 3));
  watch.apply(snapshotEnd(3));
  ASSERT_TRUE(watch.done());
  EXPECT_FALSE(watch.outcome().succeeded);
}

}  // namespace
}  // namespace skiff::cli
