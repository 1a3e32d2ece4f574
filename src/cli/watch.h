#pragma once

// Following /v1/events: where to resume after a drop, and what a watched job's events add up to.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace skiff::cli {

// Tracks the `fromRevision` to reconnect with so no change is missed or repeated.
//
// A stream opened without `fromRevision` starts with a snapshot; objects in a snapshot are not in
// revision order, so a drop before `snapshotEnd` must start over with a new snapshot. After
// `snapshotEnd` (or from the start, when opened with `fromRevision`), the next revision to ask
// for is one past the highest revision seen.
class EventCursor {
 public:
  // `fromRevision`: the revision the stream was first opened with, if any.
  explicit EventCursor(std::optional<int64_t> fromRevision = std::nullopt);

  void observe(const nlohmann::json& event);
  // The `fromRevision` for the next connection; nullopt means "ask for a fresh snapshot".
  std::optional<int64_t> resumeFrom() const { return next_; }
  // Forgets the position (after `410 Compacted`), so the next connection takes a snapshot.
  void restart() { next_.reset(); }

 private:
  std::optional<int64_t> next_;
};

// Follows one job through its events and decides, once it is Finished, whether it succeeded.
//
// A job succeeded when the final attempt of every task finished `normal`; for a batch job each
// index 0..size-1 must have such an attempt. The final attempt of an index is the task no other
// task names in `resubmitOf` (ties, which a well-behaved server never sends, go to the higher
// revision).
class JobWatch {
 public:
  struct Outcome {
    bool succeeded = false;
    std::vector<std::string> failures;  // One line per failed index, for the user.
  };

  explicit JobWatch(std::string jobId);

  // Feeds one event; objects of other jobs and unknown event types are ignored.
  void apply(const nlohmann::json& event);

  // True once the job is Finished and every task's final state has arrived: all known tasks
  // are Finished, or a later revision, keepalive or snapshot end shows nothing more is coming.
  bool done() const;

  // True once the job is Finished while the final states of its tasks are still arriving: a
  // status line now would show a finished job with running tasks.
  bool settling() const { return jobFinished() && !done(); }

  // True between a snapshot's first object and its end, when counts are still incomplete.
  bool inSnapshot() const { return inSnapshot_; }

  // True once a snapshot ended without containing the job: it does not exist.
  bool missing() const { return missing_; }

  // The live status, e.g.
  // "job-1  Accepted  tasks: 1 accepted, 2 started, 3 finished (2 normal, 1 failed)", followed
  // by "; retrying task 0 after REASON: MESSAGE" when the latest retry replaced a failed attempt.
  std::string statusLine() const;

  // Meaningful once done().
  Outcome outcome() const;

  // The job as last seen; null before the first event about it.
  const nlohmann::json& job() const { return job_; }

 private:
  bool jobFinished() const;
  // The final attempt per task index, in index order (tasks without an index come last).
  std::vector<const nlohmann::json*> finalAttempts() const;

  std::string jobId_;
  nlohmann::json job_;
  std::map<std::string, nlohmann::json> tasks_;  // By task id.
  bool inSnapshot_ = false;
  bool settled_ = false;
  bool missing_ = false;
  std::optional<int64_t> finishedAtRevision_;
};

}  // namespace skiff::cli
