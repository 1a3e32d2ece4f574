// JobManager in process, over an in-memory store (kept across restarts, as a disk would keep
// it) and manual time. The io_context runs on the test thread, only while the test settles the
// manager or advances the clock, and a timer fires only when the clock reaches it: what the
// manager does follows from the test's steps alone, with no sleeping, polling or real time.

#include "controlplane/job_manager.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>  // Must precede asio/awaitable.hpp under GCC 12 with Boost 1.74.
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/job.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/timer.h"
#include "controlplane/records.h"
#include "controlplane/scheduler/scheduler.h"
#include "testing/memory_store.h"

namespace skiff::controlplane {
namespace {

using api::TaskReason;
using api::TaskState;
using nlohmann::json;

// ---- Descriptors ----

struct JobSpec {
  int64_t size = 2;
  std::string app = "app";
  std::string owner = "team@example.com";
  std::string capacityGroup = "DEFAULT";
  int64_t retries = 0;
  std::optional<int64_t> desired;  // Set: a service job with this capacity (min 0, max 10).
  std::string command = "true";
  std::string tier = "flex";
  double cpu = 1;
  json hardConstraints = json::object();
  bool gang = false;
};

api::JobDescriptor descriptor(const JobSpec& spec = {}) {
  json document = {
      {"applicationName", spec.app},
      {"owner", {{"teamEmail", spec.owner}}},
      {"capacityGroup", spec.capacityGroup},
      {"tier", spec.tier},
      {"container",
       {{"image", "busybox:1.36"},
        {"command", json::array({spec.command})},
        {"hardConstraints", spec.hardConstraints},
        {"resources",
         {{"cpu", spec.cpu}, {"memoryMB", 128}, {"diskMB", 128}, {"networkMbps", 10}}}}},
  };
  if (spec.desired) {
    document["service"] = {{"capacity", {{"min", 0}, {"desired", *spec.desired}, {"max", 10}}},
                           {"retryPolicy", {{"immediate", {{"retries", 0}}}}}};
  } else {
    document["batch"] = {{"size", spec.size},
                         {"gang", spec.gang},
                         {"retryPolicy", {{"immediate", {{"retries", spec.retries}}}}}};
  }
  auto validated = api::validateJobDescriptor(document);
  if (!validated) {
    ADD_FAILURE() << "invalid test descriptor: " << validated.error()[0].toString();
    return {};
  }
  return std::move(*validated);
}

NodeRegistration node(std::string id, double cpu = 16) {
  NodeRegistration registration;
  registration.id = std::move(id);
  registration.resources = {cpu, 65536, 100000, 10000, 0};
  registration.attributes = {{"zone", "z1"}};
  return registration;
}

TaskStatusUpdate update(const std::string& taskId, int64_t seq, TaskState state,
                        std::optional<int32_t> exitCode = {},
                        TaskReason reason = TaskReason::kNone) {
  TaskStatusUpdate u;
  u.taskId = taskId;
  u.seq = seq;
  u.state = state;
  u.reason = reason;
  u.exitCode = exitCode;
  return u;
}

// ---- The fixture ----

// A JobManager call started on the io_context, to be checked later (a long poll that waits).
template <typename T>
class Call {
 public:
  explicit Call(std::shared_ptr<std::optional<T>> result) : result_(std::move(result)) {}
  bool done() const { return result_->has_value(); }
  // The result; call once, when done().
  T take() {
    T value = std::move(**result_);
    result_->reset();
    return value;
  }

 private:
  std::shared_ptr<std::optional<T>> result_;
};

class JobManagerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Only errors: every job and node change logs at info. Once per process (the logger is named).
    static const bool initialized = (log::init("job_manager_test", log::Level::kError), true);
    (void)initialized;
  }

  void TearDown() override { shutdown(); }

  // Builds a manager over the store, recovers it and lets it settle.
  void start(ManagerConfig config = {}) {
    io_ = std::make_unique<asio::io_context>();
    manager_ = std::make_unique<JobManager>(*io_, store_, clock_, timers_,
                                            scheduler::makeScheduler(clock_), config);
    auto recovered = manager_->recover();
    ASSERT_TRUE(recovered.has_value()) << recovered.error().message();
    settle();
  }

  // Stops the manager and lets its loops end. The store stays, as it would on disk.
  void shutdown() {
    betweenHandlers_ = nullptr;
    if (manager_) {
      manager_->stop();
      settle();
    }
    manager_.reset();
    io_.reset();
  }

  void restart(ManagerConfig config = {}) {
    shutdown();
    start(config);
  }

  // Runs every handler that is ready, and those they make ready, until none is: everything the
  // manager does without time passing. With `betweenHandlers_` set, runs one handler at a time
  // and calls it after each (it returns true when it started something).
  void settle() {
    constexpr int kMaxRounds = 10'000'000;
    for (int round = 0; round < kMaxRounds; ++round) {
      size_t ran = betweenHandlers_ ? io_->poll_one() : io_->poll();
      io_->restart();
      bool started = betweenHandlers_ && betweenHandlers_();
      if (ran == 0 && !started) return;
    }
    throw std::runtime_error("the job manager never settled");
  }

  // Moves time forward by `ms`, fires the timers it reached, and settles.
  void advanceMs(int64_t ms) {
    timers_.advanceMs(ms);
    settle();
  }

  // Starts `awaitable` on the io_context; it runs once the test settles or advances time (so a
  // wait it starts counts from then).
  template <typename T>
  Call<T> spawn(asio::awaitable<T> awaitable) {
    auto result = std::make_shared<std::optional<T>>();
    asio::co_spawn(*io_, std::move(awaitable), [result](std::exception_ptr error, T value) {
      if (error) std::rethrow_exception(error);
      result->emplace(std::move(value));
    });
    return Call<T>(std::move(result));
  }

  // Runs `awaitable` until the manager settles and returns its result. A call still waiting
  // then waits for time to pass, which the test must do itself (`spawn`, then `advanceMs`).
  template <typename T>
  T await(asio::awaitable<T> awaitable) {
    Call<T> call = spawn(std::move(awaitable));
    settle();
    if (!call.done()) {
      throw std::runtime_error("an awaited JobManager call is waiting for time to pass");
    }
    return call.take();
  }

  std::string create(const JobSpec& spec = {}, std::string key = "") {
    auto created = await(manager_->createJob(descriptor(spec), std::move(key)));
    EXPECT_TRUE(created.has_value()) << created.error().message();
    if (!created) return "";
    return created->id;
  }

  json job(const std::string& id) {
    auto result = await(manager_->getJob(id));
    EXPECT_TRUE(result.has_value()) << result.error().message();
    return result ? *result : json();
  }

  std::string jobState(const std::string& id) { return job(id)["status"]["state"]; }

  std::vector<json> tasks(const std::string& jobId) {
    auto page = await(manager_->listTasks(jobId, std::nullopt, "", 1000));
    EXPECT_TRUE(page.has_value()) << page.error().message();
    return page ? page->items : std::vector<json>{};
  }

  json task(const std::string& taskId) {
    auto result = await(manager_->getTask(taskId));
    EXPECT_TRUE(result.has_value()) << result.error().message();
    return result ? *result : json();
  }

  void registerNode(const std::string& id) {
    auto registered = await(manager_->registerNode(node(id), nullptr));
    ASSERT_TRUE(registered.has_value()) << registered.error().message();
  }

  // Whether every task of the job is Launched on `nodeId` once the manager has settled.
  bool launchedOn(const std::string& jobId, const std::string& nodeId) {
    settle();
    auto list = tasks(jobId);
    if (list.empty()) return false;
    for (const json& t : list) {
      if (t["state"] != "Launched" || t["nodeId"] != nodeId) return false;
    }
    return true;
  }

  // Creates capacity group `name` reserving `count` critical tasks of 1 core and 128 MB.
  void reserveCritical(const std::string& name, int64_t count) {
    scheduler::CapacityGroupSpec group;
    group.name = name;
    group.critical = {{1, 128, 128, 10, 0}, count};
    auto put = await(manager_->putCapacityGroup(group, true));
    ASSERT_TRUE(put.has_value()) << put.error().message();
  }

  int64_t report(const std::string& nodeId, std::vector<TaskStatusUpdate> updates) {
    auto applied = await(manager_->applyTaskStatus(nodeId, std::move(updates)));
    EXPECT_TRUE(applied.has_value()) << applied.error().message();
    return applied ? *applied : -1;
  }

  ManualClock clock_;
  ManualTimerSource timers_{clock_};
  skiff::testing::MemoryStore store_;
  std::unique_ptr<asio::io_context> io_;
  std::unique_ptr<JobManager> manager_;
  std::function<bool()> betweenHandlers_;
};

// ============================== Creating and listing jobs ==============================

TEST_F(JobManagerTest, CreateJobReturnsJobWithAcceptedTasks) {
  start();
  auto created = await(manager_->createJob(descriptor({.size = 3}), ""));
  ASSERT_TRUE(created.has_value()) << created.error().message();
  EXPECT_TRUE(created->created);
  const json j = json::parse(created->jobText);
  std::string id = j["id"];
  EXPECT_EQ(id.size(), 25u);
  EXPECT_EQ(j["type"], "batch");
  EXPECT_EQ(j["status"]["state"], "Accepted");
  EXPECT_EQ(j["taskCounts"]["Accepted"], 3);
  EXPECT_GT(j["revision"].get<int64_t>(), 0);
  EXPECT_EQ(created->id, id);
  // The answer is written from parts already serialized; it says what a later read says.
  auto read = await(manager_->getJob(id));
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(j, *read);

  auto list = tasks(id);
  ASSERT_EQ(list.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(list[static_cast<size_t>(i)]["id"], taskId(id, i, 0));
    EXPECT_EQ(list[static_cast<size_t>(i)]["state"], "Accepted");
    EXPECT_EQ(list[static_cast<size_t>(i)]["jobId"], id);
  }
  EXPECT_EQ(await(manager_->counts()), std::make_pair(size_t{1}, size_t{3}));

  // The job is durable: it is in the store.
  auto stored = store_.get(jobKey(id));
  ASSERT_TRUE(stored.has_value());
  EXPECT_TRUE(stored->has_value());
}

TEST_F(JobManagerTest, UnknownJobAndTaskAreNotFound) {
  start();
  auto missing = await(manager_->getJob("job-000000000000-00000000"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto missingTask = await(manager_->getTask("job-000000000000-00000000-0-0"));
  ASSERT_FALSE(missingTask.has_value());
  EXPECT_EQ(missingTask.error().code(), ErrorCode::kNotFound);
  auto killed = await(manager_->killJob("job-000000000000-00000000"));
  ASSERT_FALSE(killed.has_value());
  EXPECT_EQ(killed.error().code(), ErrorCode::kNotFound);
}

TEST_F(JobManagerTest, RepeatedIdempotencyKeyReturnsTheSameJob) {
  start();
  auto first = await(manager_->createJob(descriptor(), "key-1"));
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_TRUE(first->created);
  auto second = await(manager_->createJob(descriptor(), "key-1"));
  ASSERT_TRUE(second.has_value()) << second.error().message();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(json::parse(second->jobText)["idempotencyKey"], "key-1");
  EXPECT_EQ(await(manager_->counts()).first, 1u);

  // Another key makes another job.
  auto other = await(manager_->createJob(descriptor(), "key-2"));
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(other->created);
  EXPECT_NE(other->id, first->id);
}

TEST_F(JobManagerTest, SameKeyWithDifferentDescriptorConflicts) {
  start();
  std::string id = create({.size = 1}, "key-1");
  auto conflict = await(manager_->createJob(descriptor({.size = 2}), "key-1"));
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code(), ErrorCode::kConflict);
  EXPECT_NE(conflict.error().message().find(id), std::string::npos) << conflict.error().message();
  EXPECT_EQ(await(manager_->counts()).first, 1u);
}

TEST_F(JobManagerTest, ConcurrentCreatesWithOneKeyMakeOneJob) {
  start();
  std::vector<Call<Result<CreateJobResult>>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(spawn(manager_->createJob(descriptor(), "same-key")));
  settle();
  std::set<std::string> ids;
  int createdCount = 0;
  for (auto& call : calls) {
    ASSERT_TRUE(call.done());
    auto result = call.take();
    ASSERT_TRUE(result.has_value()) << result.error().message();
    ids.insert(result->id);
    createdCount += result->created ? 1 : 0;
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(createdCount, 1);
  EXPECT_EQ(await(manager_->counts()).first, 1u);
}

TEST_F(JobManagerTest, ListJobsFiltersAndPagesWithACursor) {
  start();
  std::vector<std::string> alpha, beta;
  for (int i = 0; i < 3; ++i) {
    alpha.push_back(
        create({.size = 1, .app = "alpha", .owner = "a@example.com", .capacityGroup = "group-a"}));
  }
  for (int i = 0; i < 2; ++i) {
    beta.push_back(create({.size = 1, .app = "beta", .owner = "b@example.com"}));
  }
  std::string service = create({.app = "web", .desired = 1});

  auto count = [&](JobFilter filter) {
    auto page = await(manager_->listJobs(std::move(filter), "", 100));
    EXPECT_TRUE(page.has_value());
    EXPECT_TRUE(page->nextCursor.empty());
    return page->items.size();
  };
  EXPECT_EQ(count({}), 6u);
  EXPECT_EQ(count({.applicationName = "alpha"}), 3u);
  EXPECT_EQ(count({.capacityGroup = "group-a"}), 3u);
  EXPECT_EQ(count({.owner = "b@example.com"}), 2u);
  EXPECT_EQ(count({.batch = false}), 1u);
  EXPECT_EQ(count({.batch = true}), 5u);
  EXPECT_EQ(count({.applicationName = "beta", .owner = "a@example.com"}), 0u);
  EXPECT_EQ(count({.state = api::JobState::kFinished}), 0u);

  // A killed job shows up under Finished.
  ASSERT_TRUE(await(manager_->killJob(beta[0])).has_value());
  ASSERT_EQ(jobState(beta[0]), "Finished");
  EXPECT_EQ(count({.state = api::JobState::kFinished}), 1u);
  EXPECT_EQ(count({.state = api::JobState::kAccepted}), 5u);

  // Pages of two, in id order, cover every job exactly once.
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = await(manager_->listJobs({}, cursor, 2));
    ASSERT_TRUE(page.has_value());
    EXPECT_LE(page->items.size(), 2u);
    for (const json& item : page->items) seen.push_back(item["id"]);
    cursor = page->nextCursor;
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  std::vector<std::string> all = alpha;
  all.insert(all.end(), beta.begin(), beta.end());
  all.push_back(service);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(seen, all);

  // Paging works with a filter too.
  auto first = await(manager_->listJobs({.applicationName = "alpha"}, "", 2));
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->items.size(), 2u);
  ASSERT_FALSE(first->nextCursor.empty());
  auto rest = await(manager_->listJobs({.applicationName = "alpha"}, first->nextCursor, 2));
  ASSERT_TRUE(rest.has_value());
  ASSERT_EQ(rest->items.size(), 1u);
  EXPECT_TRUE(rest->nextCursor.empty());
}

// ============================== Nodes and placement ==============================

TEST_F(JobManagerTest, ConcurrentRegistrationsGetDistinctAddressBlocks) {
  // Agents of a fresh cluster register at the same moment; each registration awaits its store
  // commit, and none may take a block another one is still saving.
  start();
  std::vector<Call<Result<json>>> calls;
  for (int i = 0; i < 4; ++i) {
    calls.push_back(spawn(manager_->registerNode(node("node-" + std::to_string(i)), nullptr)));
  }
  settle();
  std::set<std::string> blocks;
  for (auto& call : calls) {
    ASSERT_TRUE(call.done());
    auto result = call.take();
    ASSERT_TRUE(result.has_value()) << result.error().message();
    blocks.insert((*result)["network"]["block"].get<std::string>());
  }
  EXPECT_EQ(blocks.size(), 4u);
}

TEST_F(JobManagerTest, RegisteredNodeGetsTasksLaunched) {
  start();
  std::string id = create({.size = 2});
  advanceMs(ManagerConfig{}.schedulerRetryMs);  // The scheduler tries again: still no node.
  for (const json& t : tasks(id)) EXPECT_EQ(t["state"], "Accepted") << "no node yet";

  bool created = false;
  auto registered = await(manager_->registerNode(node("node-1"), &created));
  ASSERT_TRUE(registered.has_value());
  EXPECT_TRUE(created);
  EXPECT_EQ((*registered)["state"], "Ready");
  ASSERT_TRUE(launchedOn(id, "node-1"));

  auto info = await(manager_->getNode("node-1"));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ((*info)["taskCount"], 2);
  EXPECT_DOUBLE_EQ((*info)["allocated"]["cpu"].get<double>(), 2.0);
  EXPECT_EQ((*info)["allocated"]["memoryMB"], 256);

  auto assigned = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(assigned.has_value());
  ASSERT_EQ(assigned->assignments.size(), 2u);
  for (const json& a : assigned->assignments) {
    EXPECT_EQ(a["desiredState"], "Running");
    EXPECT_EQ(a["job"]["id"], id);
    EXPECT_EQ(a["task"]["state"], "Launched");
    EXPECT_EQ(a["job"]["descriptor"]["container"]["command"], json::array({"true"}));
  }

  // Re-registering keeps the node.
  ASSERT_TRUE(await(manager_->registerNode(node("node-1"), &created)).has_value());
  EXPECT_FALSE(created);
}

TEST_F(JobManagerTest, TasksWaitForANodeWithRoom) {
  start();
  auto small = await(manager_->registerNode(node("node-small", 1.5), nullptr));
  ASSERT_TRUE(small.has_value());
  std::string id = create({.size = 3});
  // One task (1 cpu) fits; the other two wait, also when the scheduler tries again.
  int launched = 0;
  for (const json& t : tasks(id)) launched += t["state"] == "Launched" ? 1 : 0;
  ASSERT_EQ(launched, 1);
  advanceMs(ManagerConfig{}.schedulerRetryMs);
  int accepted = 0;
  for (const json& t : tasks(id)) accepted += t["state"] == "Accepted" ? 1 : 0;
  EXPECT_EQ(accepted, 2);
  registerNode("node-z");
  int onZ = 0;
  for (const json& t : tasks(id)) onZ += t["nodeId"] == "node-z" ? 1 : 0;
  EXPECT_EQ(onZ, 2);
}

TEST_F(JobManagerTest, AgentReportsDriveTasksAndTheJobToFinished) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 2});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  std::string t0 = taskId(id, 0, 0), t1 = taskId(id, 1, 0);

  EXPECT_EQ(
      report("node-1", {update(t0, 1, TaskState::kStartInitiated),
                        update(t0, 2, TaskState::kStarted), update(t1, 1, TaskState::kStarted)}),
      3);
  EXPECT_EQ(task(t0)["state"], "Started");
  EXPECT_EQ(task(t1)["state"], "Started");
  EXPECT_EQ(task(t0)["lastSeq"], 2);

  // A resent report, a report from another node and one for an unknown job change nothing.
  EXPECT_EQ(report("node-1", {update(t0, 2, TaskState::kStarted)}), 0);
  EXPECT_EQ(report("node-2", {update(t0, 3, TaskState::kFinished, 0)}), 0);
  EXPECT_EQ(report("node-1", {update("job-000000000000-00000000-0-0", 1, TaskState::kStarted)}), 0);
  EXPECT_EQ(task(t0)["state"], "Started");

  EXPECT_EQ(report("node-1", {update(t0, 3, TaskState::kFinished, 0)}), 1);
  EXPECT_EQ(jobState(id), "Accepted");
  EXPECT_EQ(report("node-1", {update(t1, 2, TaskState::kFinished, 0)}), 1);
  // The job finishes in the same durable step as the last report.
  json finished = job(id);
  EXPECT_EQ(finished["status"]["state"], "Finished");
  EXPECT_EQ(finished["status"]["reason"], "normal");
  EXPECT_EQ(finished["taskCounts"]["Finished"], 2);
  EXPECT_EQ(task(t1)["reason"], "normal");
  EXPECT_EQ(task(t1)["exitCode"], 0);

  auto info = await(manager_->getNode("node-1"));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ((*info)["taskCount"], 0);
  EXPECT_DOUBLE_EQ((*info)["allocated"]["cpu"].get<double>(), 0.0);
  EXPECT_EQ((*info)["allocated"]["memoryMB"], 0);
}

TEST_F(JobManagerTest, FailedTaskIsRetriedOnTheNode) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 1, .retries = 1});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  std::string first = taskId(id, 0, 0);
  EXPECT_EQ(report("node-1", {update(first, 1, TaskState::kFinished, 1)}), 1);
  std::string retry = taskId(id, 0, 1);
  ASSERT_EQ(task(retry)["state"], "Launched");
  EXPECT_EQ(task(retry)["resubmitOf"], first);
  // The first attempt stays readable from the store.
  json old = task(first);
  EXPECT_EQ(old["state"], "Finished");
  EXPECT_EQ(old["reason"], "failed");
  EXPECT_EQ(old["exitCode"], 1);
  EXPECT_EQ(report("node-1", {update(retry, 1, TaskState::kFinished, 1)}), 1);
  EXPECT_EQ(job(id)["status"]["reason"], "failed");
}

// ============================== Assignments long poll ==============================

TEST_F(JobManagerTest, AssignmentsAnswerAtOnceWhenTheRevisionIsNewer) {
  start();
  registerNode("node-1");
  // `await` returns only what answers without time passing.
  auto first = await(manager_->assignments("node-1", 0, 5000));
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_GT(first->revision, 0);
  EXPECT_TRUE(first->assignments.empty());
}

TEST_F(JobManagerTest, AssignmentsWaitWhenNothingChanged) {
  start();
  registerNode("node-1");
  auto first = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(first.has_value());
  auto poll = spawn(manager_->assignments("node-1", first->revision, 300));
  settle();  // The poll starts waiting now.
  advanceMs(299);
  EXPECT_FALSE(poll.done()) << "answered before its wait was over";
  advanceMs(1);
  ASSERT_TRUE(poll.done()) << "still waiting after its wait was over";
  auto second = poll.take();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->revision, first->revision);
}

TEST_F(JobManagerTest, WaitingAssignmentsAnswerWhenATaskIsPlaced) {
  start();
  registerNode("node-1");
  auto first = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(first.has_value());
  auto poll = spawn(manager_->assignments("node-1", first->revision, 8000));
  settle();
  advanceMs(50);
  ASSERT_FALSE(poll.done());
  std::string id = create({.size = 1});
  ASSERT_TRUE(poll.done()) << "the placement did not end the wait";
  auto changed = poll.take();
  ASSERT_TRUE(changed.has_value());
  EXPECT_GT(changed->revision, first->revision);
  ASSERT_EQ(changed->assignments.size(), 1u);
  EXPECT_EQ(changed->assignments[0]["task"]["id"], taskId(id, 0, 0));
}

TEST_F(JobManagerTest, AssignmentRevisionDoesNotGoBackAfterRestart) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 3});  // Three tasks placed on the node in one step.
  ASSERT_TRUE(launchedOn(id, "node-1"));
  auto seen = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(seen.has_value());

  restart();
  // One change after the restart: the agent, polling with the revision it saw before, must
  // hear of it at once rather than after its whole wait.
  ASSERT_TRUE(await(manager_->killTask(taskId(id, 0, 0), false)).has_value());
  auto changed = await(manager_->assignments("node-1", seen->revision, 5000));
  ASSERT_TRUE(changed.has_value());
  EXPECT_GT(changed->revision, seen->revision);
  ASSERT_EQ(changed->assignments.size(), 3u);
  EXPECT_EQ(changed->assignments[0]["task"]["id"], taskId(id, 0, 0));
  EXPECT_EQ(changed->assignments[0]["desiredState"], "Killed");
}

// The ids an assignment list names.
std::set<std::string> idsOf(const json& assignments) {
  std::set<std::string> ids;
  for (const json& a : assignments) ids.insert(a["task"]["id"].get<std::string>());
  return ids;
}

TEST_F(JobManagerTest, AssignmentDeltaListsOnlyTasksChangedSinceTheRevision) {
  start();
  registerNode("node-1");
  std::string first = create({.size = 2});
  ASSERT_TRUE(launchedOn(first, "node-1"));
  // Revision 0 always gets the full list.
  auto full = await(manager_->assignments("node-1", 0, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(full.has_value()) << full.error().message();
  EXPECT_TRUE(full->full);
  EXPECT_EQ(idsOf(full->assignments),
            (std::set<std::string>{taskId(first, 0, 0), taskId(first, 1, 0)}));

  std::string second = create({.size = 1});
  ASSERT_TRUE(launchedOn(second, "node-1"));
  auto delta =
      await(manager_->assignments("node-1", full->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(delta.has_value());
  EXPECT_FALSE(delta->full);
  EXPECT_GT(delta->revision, full->revision);
  EXPECT_EQ(idsOf(delta->assignments), (std::set<std::string>{taskId(second, 0, 0)}));
  EXPECT_TRUE(delta->removed.empty());
  ASSERT_EQ(delta->assignments.size(), 1u);
  EXPECT_EQ(delta->assignments[0]["job"]["id"], second);
  EXPECT_EQ(delta->assignments[0]["job"]["descriptor"]["container"]["command"],
            json::array({"true"}));

  // The node's own status report moves the revision but changes no assignment: the agent
  // knows it already, so the delta is empty.
  EXPECT_EQ(report("node-1", {update(taskId(first, 0, 0), 1, TaskState::kStarted)}), 1);
  auto started =
      await(manager_->assignments("node-1", delta->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(started.has_value());
  EXPECT_FALSE(started->full);
  EXPECT_GT(started->revision, delta->revision);
  EXPECT_TRUE(started->assignments.empty());
  EXPECT_TRUE(started->removed.empty());

  // Without asking for deltas, every answer is the full list.
  auto plain = await(manager_->assignments("node-1", delta->revision, 0));
  ASSERT_TRUE(plain.has_value());
  EXPECT_TRUE(plain->full);
  EXPECT_EQ(plain->assignments.size(), 3u);
}

TEST_F(JobManagerTest, AssignmentDeltaNamesTasksThatLeftTheNode) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 2});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  auto full = await(manager_->assignments("node-1", 0, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(full.has_value());
  EXPECT_EQ(report("node-1", {update(taskId(id, 0, 0), 1, TaskState::kFinished, 0)}), 1);
  auto delta =
      await(manager_->assignments("node-1", full->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(delta.has_value());
  EXPECT_FALSE(delta->full);
  EXPECT_TRUE(delta->assignments.empty());
  EXPECT_EQ(delta->removed, std::vector<std::string>{taskId(id, 0, 0)});

  // A kill is a change (desired state Killed); the kill's end removes the task.
  ASSERT_TRUE(await(manager_->killTask(taskId(id, 1, 0), false)).has_value());
  auto killed =
      await(manager_->assignments("node-1", delta->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(killed.has_value());
  ASSERT_EQ(killed->assignments.size(), 1u);
  EXPECT_EQ(killed->assignments[0]["desiredState"], "Killed");
  EXPECT_TRUE(killed->removed.empty());
  EXPECT_EQ(report("node-1",
                   {update(taskId(id, 1, 0), 1, TaskState::kFinished, 137, TaskReason::kKilled)}),
            1);
  auto gone =
      await(manager_->assignments("node-1", killed->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->full);
  EXPECT_TRUE(gone->assignments.empty());
  EXPECT_EQ(gone->removed, std::vector<std::string>{taskId(id, 1, 0)});
  // From the older revision both removals are named.
  auto both =
      await(manager_->assignments("node-1", full->revision, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(both.has_value());
  EXPECT_FALSE(both->full);
  EXPECT_EQ(both->removed, (std::vector<std::string>{taskId(id, 0, 0), taskId(id, 1, 0)}));
}

TEST_F(JobManagerTest, AssignmentDeltaIsEmptyWhenThePollTimesOut) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 2});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  auto full = await(manager_->assignments("node-1", 0, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(full.has_value());
  auto poll =
      spawn(manager_->assignments("node-1", full->revision, 300, AssignmentsForm::kJson, true));
  settle();  // The poll starts waiting now.
  advanceMs(299);
  EXPECT_FALSE(poll.done()) << "answered before its wait was over";
  advanceMs(1);
  ASSERT_TRUE(poll.done());
  auto idle = poll.take();
  ASSERT_TRUE(idle.has_value());
  EXPECT_FALSE(idle->full);
  EXPECT_EQ(idle->revision, full->revision);
  EXPECT_TRUE(idle->assignments.empty());
  EXPECT_TRUE(idle->removed.empty());
  // Draining moves the revision without changing a task: an empty delta at once.
  ASSERT_TRUE(await(manager_->drainNode("node-1")).has_value());
  auto drained =
      await(manager_->assignments("node-1", full->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(drained.has_value());
  EXPECT_FALSE(drained->full);
  EXPECT_GT(drained->revision, full->revision);
  EXPECT_TRUE(drained->assignments.empty());
}

TEST_F(JobManagerTest, AssignmentDeltaFallsBackToFullWhenTheRevisionIsTooOld) {
  start();
  registerNode("node-1");
  std::string kept = create({.size = 1});
  ASSERT_TRUE(launchedOn(kept, "node-1"));
  auto old = await(manager_->assignments("node-1", 0, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(old.has_value());
  // More tasks leave the node than it remembers removals of (two jobs: a node takes at most
  // 254 tasks, one per address of its block).
  int64_t latest = old->revision;
  for (int round = 0; round < 2; ++round) {
    std::string id = create({.size = 150, .cpu = 0.01});
    ASSERT_TRUE(launchedOn(id, "node-1"));
    std::vector<TaskStatusUpdate> finished;
    for (int i = 0; i < 150; ++i)
      finished.push_back(update(taskId(id, i, 0), 1, TaskState::kFinished, 0));
    EXPECT_EQ(report("node-1", std::move(finished)), 150);
    auto seen = await(manager_->assignments("node-1", latest, 0, AssignmentsForm::kJson, true));
    ASSERT_TRUE(seen.has_value());
    latest = seen->revision;
  }
  auto tooOld =
      await(manager_->assignments("node-1", old->revision, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(tooOld.has_value());
  EXPECT_TRUE(tooOld->full);
  EXPECT_EQ(idsOf(tooOld->assignments), std::set<std::string>{taskId(kept, 0, 0)});
  EXPECT_TRUE(tooOld->removed.empty());
  // An agent that kept up still gets deltas.
  auto recent = await(manager_->assignments("node-1", latest, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(recent.has_value());
  EXPECT_FALSE(recent->full);
}

TEST_F(JobManagerTest, AssignmentDeltaIsFullAfterReRegistrationAndRestart) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 2});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  auto seen = await(manager_->assignments("node-1", 0, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(seen.has_value());
  registerNode("node-1");
  auto again =
      await(manager_->assignments("node-1", seen->revision, 0, AssignmentsForm::kJson, true));
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->full);
  EXPECT_EQ(again->assignments.size(), 2u);

  restart();
  ASSERT_TRUE(await(manager_->killTask(taskId(id, 0, 0), false)).has_value());
  auto restarted =
      await(manager_->assignments("node-1", again->revision, 5000, AssignmentsForm::kJson, true));
  ASSERT_TRUE(restarted.has_value());
  EXPECT_TRUE(restarted->full);
  EXPECT_EQ(restarted->assignments.size(), 2u);
  // A revision skiffd never handed out (its state is older than the agent's) gets the full
  // list at once.
  auto ahead = await(manager_->assignments("node-1", restarted->revision + 1000, 5000,
                                           AssignmentsForm::kJson, true));
  ASSERT_TRUE(ahead.has_value());
  EXPECT_TRUE(ahead->full);
}

// An agent applying deltas in turn, while tasks are placed, change state, are killed and finish
// (changes also land while a poll is being woken and answered), ends with the full list's tasks
// and desired states. The agent takes its turn between any two of the manager's handlers, so its
// polls interleave with the changes wherever the manager yields.
TEST_F(JobManagerTest, AssignmentDeltasAppliedInTurnMatchTheFullList) {
  start();
  registerNode("node-1");
  std::map<std::string, std::string> view;  // Task id -> desired state, as the agent sees it.
  int64_t revision = 0;
  int64_t deltas = 0;
  auto apply = [&](Result<Assignments> answer) {
    ASSERT_TRUE(answer.has_value());
    if (answer->full) {
      view.clear();
    } else {
      ++deltas;
    }
    for (const std::string& removed : answer->removed) view.erase(removed);
    for (const json& a : answer->assignments) {
      view[a["task"]["id"].get<std::string>()] = a["desiredState"].get<std::string>();
    }
    revision = answer->revision;
  };
  std::optional<Call<Result<Assignments>>> poll;
  auto startPoll = [&] {
    poll.emplace(
        spawn(manager_->assignments("node-1", revision, 20, AssignmentsForm::kJson, true)));
  };
  startPoll();
  // The agent's turn: an answered poll is applied and the next one starts at once.
  betweenHandlers_ = [&] {
    if (!poll->done()) return false;
    apply(poll->take());
    startPoll();
    return true;
  };
  std::vector<std::string> ids;
  for (int round = 0; round < 6; ++round) {
    std::string id = create({.size = 4, .cpu = 0.1});
    if (!launchedOn(id, "node-1")) {
      ADD_FAILURE() << "job " << id << " was not launched";
      break;
    }
    ids.push_back(id);
    report("node-1", {update(taskId(id, 0, 0), 1, TaskState::kStarted),
                      update(taskId(id, 1, 0), 1, TaskState::kFinished, 0)});
    (void)await(manager_->killTask(taskId(id, 2, 0), false));
    if (round > 0) {
      report("node-1", {update(taskId(ids[round - 1], 2, 0), 1, TaskState::kFinished, 137,
                               TaskReason::kKilled)});
    }
    advanceMs(20);  // A poll that saw nothing change times out with an empty delta.
  }
  betweenHandlers_ = nullptr;
  advanceMs(20);
  ASSERT_TRUE(poll->done());
  apply(poll->take());
  apply(await(manager_->assignments("node-1", revision, 0, AssignmentsForm::kJson, true)));
  EXPECT_GT(deltas, 0);
  auto full = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(full.has_value());
  std::map<std::string, std::string> expected;
  for (const json& a : full->assignments) {
    expected[a["task"]["id"].get<std::string>()] = a["desiredState"].get<std::string>();
  }
  EXPECT_EQ(view, expected);
  EXPECT_EQ(expected.size(), 6u * 3 - 5);  // Per job 3 unfinished; 5 kills finished.
}

TEST_F(JobManagerTest, AssignmentsForUnknownNodeAreNotFound) {
  start();
  auto missing = await(manager_->assignments("nope", 0, 0));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  auto heartbeat = await(manager_->heartbeat("nope"));
  ASSERT_FALSE(heartbeat.has_value());
  EXPECT_EQ(heartbeat.error().code(), ErrorCode::kNotFound);
}

// ============================== Kills ==============================

TEST_F(JobManagerTest, KillJobKillsRunningTasksAndFinishesTheJob) {
  start();
  registerNode("node-1");
  std::string id = create({.size = 2, .retries = 3});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  std::string t0 = taskId(id, 0, 0), t1 = taskId(id, 1, 0);
  ASSERT_EQ(
      report("node-1", {update(t0, 1, TaskState::kStarted), update(t1, 1, TaskState::kStarted)}),
      2);

  auto killed = await(manager_->killJob(id));
  ASSERT_TRUE(killed.has_value()) << killed.error().message();
  EXPECT_EQ((*killed)["status"]["state"], "KillInitiated");
  EXPECT_EQ((*killed)["status"]["reason"], "killed");
  EXPECT_EQ((*killed)["taskCounts"]["KillInitiated"], 2);

  auto assigned = await(manager_->assignments("node-1", 0, 0));
  ASSERT_TRUE(assigned.has_value());
  ASSERT_EQ(assigned->assignments.size(), 2u);
  for (const json& a : assigned->assignments) EXPECT_EQ(a["desiredState"], "Killed");

  EXPECT_EQ(report("node-1", {update(t0, 2, TaskState::kFinished, 143),
                              update(t1, 2, TaskState::kFinished, 0)}),
            2);
  json finished = job(id);
  EXPECT_EQ(finished["status"]["state"], "Finished");
  EXPECT_EQ(finished["status"]["reason"], "killed");
  EXPECT_EQ(task(t0)["reason"], "killed");
  EXPECT_EQ(task(t1)["reason"], "killed");
  EXPECT_EQ(tasks(id).size(), 2u);
  EXPECT_EQ(task(t0)["resubmitNumber"], 0) << "killed tasks are not retried";

  auto again = await(manager_->killJob(id));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kFailedPrecondition);
}

TEST_F(JobManagerTest, KillJobWithoutNodesFinishesAtOnce) {
  start();
  std::string id = create({.size = 3});
  auto killed = await(manager_->killJob(id));
  ASSERT_TRUE(killed.has_value());
  EXPECT_EQ((*killed)["status"]["state"], "Finished");
  EXPECT_EQ((*killed)["taskCounts"]["Finished"], 3);
}

TEST_F(JobManagerTest, KillTaskWithShrinkLowersServiceCapacity) {
  start();
  registerNode("node-1");
  std::string id = create({.desired = 2});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  auto killed = await(manager_->killTask(taskId(id, 1, 0), true));
  ASSERT_TRUE(killed.has_value()) << killed.error().message();
  EXPECT_EQ((*killed)["state"], "KillInitiated");
  EXPECT_EQ((*killed)["killReason"], "scaledDown");
  EXPECT_EQ(job(id)["capacity"]["desired"], 1);

  auto resized = await(manager_->updateCapacity(id, std::nullopt, 3, std::nullopt));
  ASSERT_TRUE(resized.has_value()) << resized.error().message();
  EXPECT_EQ((*resized)["capacity"]["desired"], 3);
  auto invalid = await(manager_->updateCapacity(id, 5, std::nullopt, std::nullopt));
  ASSERT_FALSE(invalid.has_value());
  EXPECT_EQ(invalid.error().code(), ErrorCode::kInvalidArgument);
}

// ============================== Usage and autoscaling ==============================

TEST_F(JobManagerTest, HeartbeatCpuUsageDrivesCpuAutoscalingAndForeignReportsAreIgnored) {
  ManagerConfig config;
  config.cpuMetricIntervalMs = 0;
  start(config);
  registerNode("node-a");
  api::JobDescriptor service = descriptor({.desired = 2});
  service.service->capacity = {1, 2, 6};
  service.service->autoscaling =
      api::Autoscaling{{api::ScalingPolicy{.metric = "cpu", .target = 50}}, 0, 0};
  auto created = await(manager_->createJob(service, ""));
  ASSERT_TRUE(created.has_value()) << created.error().message();
  std::string id = created->id;
  ASSERT_TRUE(launchedOn(id, "node-a"));
  std::string t0 = taskId(id, 0, 0), t1 = taskId(id, 1, 0);
  report("node-a", {update(t0, 1, TaskState::kStarted), update(t1, 1, TaskState::kStarted)});
  registerNode("node-b");

  // node-b does not run these tasks: its word about them counts for nothing.
  ASSERT_TRUE(await(manager_->heartbeat("node-b", {{t0, {5.0}}, {t1, {5.0}}})).has_value());
  EXPECT_FALSE(job(id)["autoscaling"]["metrics"].contains("cpu")) << job(id).dump();

  // 0.9 and 0.7 of the one core each asked for: 80 % on average, target 50 → ceil(2 × 80 / 50).
  ASSERT_TRUE(await(manager_->heartbeat("node-a", {{t0, {0.9}}, {t1, {0.7}}})).has_value());
  ASSERT_EQ(job(id)["capacity"]["desired"], 4) << job(id).dump();
  json scaled = job(id);
  EXPECT_DOUBLE_EQ(scaled["autoscaling"]["metrics"]["cpu"].get<double>(), 80.0);
  EXPECT_EQ(scaled["autoscaling"]["lastDecision"]["proposals"][0]["metric"], "cpu");
}

// ============================== Draining and lost nodes ==============================

TEST_F(JobManagerTest, DrainedNodeGetsNoNewTasks) {
  start();
  registerNode("node-a");
  auto drained = await(manager_->drainNode("node-a"));
  ASSERT_TRUE(drained.has_value()) << drained.error().message();
  EXPECT_EQ((*drained)["state"], "Draining");
  auto beat = await(manager_->heartbeat("node-a"));
  ASSERT_TRUE(beat.has_value());
  EXPECT_EQ((*beat)["draining"], true);

  std::string id = create({.size = 2});
  advanceMs(ManagerConfig{}.schedulerRetryMs);  // The scheduler tries again: still no room.
  for (const json& t : tasks(id)) EXPECT_EQ(t["state"], "Accepted");

  registerNode("node-b");
  ASSERT_TRUE(launchedOn(id, "node-b"));
  auto nodeA = await(manager_->getNode("node-a"));
  ASSERT_TRUE(nodeA.has_value());
  EXPECT_EQ((*nodeA)["state"], "Draining");
  EXPECT_EQ((*nodeA)["taskCount"], 0);
}

TEST_F(JobManagerTest, SilentNodeIsLostAndItsTasksAreRetriedElsewhere) {
  ManagerConfig config;
  config.nodeHeartbeatTimeoutMs = 300;
  config.nodeCheckIntervalMs = 50;
  config.lifecycle.systemRetryDelayMs = 50;
  start(config);
  registerNode("node-a");
  std::string id = create({.size = 2, .retries = 0});
  ASSERT_TRUE(launchedOn(id, "node-a"));
  registerNode("node-b");

  // node-b heartbeats every 50 ms; node-a stays silent past its timeout (300 ms), the check
  // after it (every 50 ms) and the retry delay (50 ms).
  for (int64_t elapsedMs = 0; elapsedMs < 500; elapsedMs += 50) {
    advanceMs(50);
    ASSERT_TRUE(await(manager_->heartbeat("node-b")).has_value());
  }
  for (const json& t : tasks(id)) {
    EXPECT_EQ(t["nodeId"], "node-b");
    EXPECT_EQ(t["state"], "Launched");
  }

  for (int i = 0; i < 2; ++i) {
    json old = task(taskId(id, i, 0));
    EXPECT_EQ(old["state"], "Finished");
    EXPECT_EQ(old["reason"], "lost");
    EXPECT_EQ(old["nodeId"], "node-a");
    json retry = task(taskId(id, i, 1));
    EXPECT_EQ(retry["resubmitNumber"], 1);
    EXPECT_EQ(retry["systemResubmitNumber"], 1) << "retries 0: a lost task still gets another try";
    EXPECT_EQ(retry["resubmitOf"], taskId(id, i, 0));
  }
  auto nodeA = await(manager_->getNode("node-a"));
  ASSERT_TRUE(nodeA.has_value());
  EXPECT_EQ((*nodeA)["state"], "Lost");
  EXPECT_EQ((*nodeA)["taskCount"], 0);
  EXPECT_EQ(jobState(id), "Accepted");

  // The lost node comes back: it is Ready again but keeps no tasks, so its agent kills the
  // stale containers (they are no longer assigned to it).
  ASSERT_TRUE(await(manager_->heartbeat("node-a")).has_value());
  nodeA = await(manager_->getNode("node-a"));
  EXPECT_EQ((*nodeA)["state"], "Ready");
  auto assigned = await(manager_->assignments("node-a", 0, 0));
  ASSERT_TRUE(assigned.has_value());
  EXPECT_TRUE(assigned->assignments.empty());
  // A late report from the lost node about an old attempt changes nothing.
  EXPECT_EQ(report("node-a", {update(taskId(id, 0, 0), 5, TaskState::kStarted)}), 0);
}

TEST_F(JobManagerTest, LaunchedTaskThatIsNeverReportedTimesOut) {
  ManagerConfig config;
  config.lifecycle.launchedTimeoutMs = 200;
  config.lifecycle.systemRetryDelayMs = 60'000;  // Keep the retry from being placed.
  start(config);
  registerNode("node-1");
  std::string id = create({.size = 1});
  ASSERT_TRUE(launchedOn(id, "node-1"));
  // Nothing else happens to the job: its loop must wake up for the Launched timeout by itself.
  advanceMs(199);
  EXPECT_EQ(task(taskId(id, 0, 0))["state"], "Launched") << "timed out early";
  advanceMs(1);
  ASSERT_EQ(task(taskId(id, 0, 0))["state"], "Finished");
  EXPECT_EQ(task(taskId(id, 0, 0))["reason"], "stuckInState");
  json retry = task(taskId(id, 0, 1));
  EXPECT_EQ(retry["state"], "Accepted");
  EXPECT_EQ(retry["systemResubmitNumber"], 1);
}

// ============================== Recovery ==============================

TEST_F(JobManagerTest, RecoverRestoresJobsTasksNodesAndIdempotencyKeys) {
  start();
  registerNode("node-1");
  std::string running = create({.size = 2}, "key-running");
  ASSERT_TRUE(launchedOn(running, "node-1"));
  ASSERT_EQ(report("node-1", {update(taskId(running, 0, 0), 1, TaskState::kStarted)}), 1);

  std::string done = create({.size = 1, .retries = 1, .command = "done"});
  ASSERT_TRUE(launchedOn(done, "node-1"));
  ASSERT_EQ(report("node-1", {update(taskId(done, 0, 0), 1, TaskState::kFinished, 2)}), 1);
  ASSERT_TRUE(launchedOn(done, "node-1"));  // The retry.
  ASSERT_EQ(report("node-1", {update(taskId(done, 0, 1), 1, TaskState::kFinished, 0)}), 1);
  ASSERT_EQ(jobState(done), "Finished");

  std::string service = create({.desired = 1, .command = "web"}, "key-service");
  ASSERT_TRUE(launchedOn(service, "node-1"));

  json runningBefore = job(running), doneBefore = job(done), serviceBefore = job(service);
  auto runningTasks = tasks(running), doneTasks = tasks(done), serviceTasks = tasks(service);
  auto countsBefore = await(manager_->counts());
  auto nodeBefore = await(manager_->getNode("node-1"));
  ASSERT_TRUE(nodeBefore.has_value());

  restart();

  EXPECT_EQ(await(manager_->counts()), countsBefore);
  EXPECT_EQ(job(running), runningBefore);
  EXPECT_EQ(job(done), doneBefore);
  EXPECT_EQ(job(service), serviceBefore);
  EXPECT_EQ(tasks(running), runningTasks);
  EXPECT_EQ(tasks(done), doneTasks);
  EXPECT_EQ(tasks(service), serviceTasks);
  EXPECT_EQ(task(taskId(done, 0, 0))["reason"], "failed") << "earlier attempts stay readable";
  auto page = await(manager_->listJobs({}, "", 100));
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->items.size(), 3u);

  auto nodeAfter = await(manager_->getNode("node-1"));
  ASSERT_TRUE(nodeAfter.has_value());
  EXPECT_EQ((*nodeAfter)["state"], "Ready");
  EXPECT_EQ((*nodeAfter)["taskCount"], (*nodeBefore)["taskCount"]);
  EXPECT_EQ((*nodeAfter)["allocated"], (*nodeBefore)["allocated"]);
  EXPECT_EQ((*nodeAfter)["registeredAtMs"], (*nodeBefore)["registeredAtMs"]);

  // Idempotency keys survive: a repeat returns the old job, a different body conflicts.
  auto repeat = await(manager_->createJob(descriptor({.size = 2}), "key-running"));
  ASSERT_TRUE(repeat.has_value()) << repeat.error().message();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->id, running);
  auto repeatService =
      await(manager_->createJob(descriptor({.desired = 1, .command = "web"}), "key-service"));
  ASSERT_TRUE(repeatService.has_value());
  EXPECT_FALSE(repeatService->created);
  EXPECT_EQ(repeatService->id, service);
  auto conflict = await(manager_->createJob(descriptor({.size = 3}), "key-running"));
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code(), ErrorCode::kConflict);
  EXPECT_EQ(await(manager_->counts()).first, 3u);

  // The recovered job keeps going: its tasks finish and the job with them.
  EXPECT_EQ(report("node-1", {update(taskId(running, 0, 0), 2, TaskState::kFinished, 0),
                              update(taskId(running, 1, 0), 1, TaskState::kFinished, 0)}),
            2);
  EXPECT_EQ(job(running)["status"]["reason"], "normal");
}

TEST_F(JobManagerTest, RecoverReadsIdempotencyKeysOfEarlierReleasesFromTheirOwnRecords) {
  start();
  std::string id = create({.size = 2}, "key-legacy");
  // Rewrite the job as earlier releases stored it: the hash in /idem/<key>, not in the job.
  auto stored = store_.get(jobKey(id));
  ASSERT_TRUE(stored.has_value() && stored->has_value());
  json record = json::parse((*stored)->value);
  ASSERT_TRUE(record["requestHash"].is_string());
  json idem = {{"jobId", id}, {"requestHash", record["requestHash"]}};
  record.erase("requestHash");
  store::Txn txn;
  txn.onSuccess.push_back(store::Op::put(jobKey(id), record.dump()));
  txn.onSuccess.push_back(store::Op::put(idempotencyKey("key-legacy"), idem.dump()));
  ASSERT_TRUE(store_.commit(std::move(txn)).has_value());

  restart();

  auto repeat = await(manager_->createJob(descriptor({.size = 2}), "key-legacy"));
  ASSERT_TRUE(repeat.has_value()) << repeat.error().message();
  EXPECT_FALSE(repeat->created);
  EXPECT_EQ(repeat->id, id);
  auto conflict = await(manager_->createJob(descriptor({.size = 3}), "key-legacy"));
  ASSERT_FALSE(conflict.has_value());
  EXPECT_EQ(conflict.error().code(), ErrorCode::kConflict);
}

TEST_F(JobManagerTest, RecoverPlacesTasksThatWereStillPending) {
  start();
  std::string id = create({.size = 2}, "key");
  restart();
  EXPECT_EQ(jobState(id), "Accepted");
  registerNode("node-1");
  ASSERT_TRUE(launchedOn(id, "node-1"));
  restart();
  // The node is known from the store, so nothing needs to re-register for the state to hold.
  for (const json& t : tasks(id)) {
    EXPECT_EQ(t["state"], "Launched");
    EXPECT_EQ(t["nodeId"], "node-1");
  }
  auto info = await(manager_->getNode("node-1"));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ((*info)["taskCount"], 2);
}

// ============================== Scheduling ==============================

TEST_F(JobManagerTest, ReservedCriticalWorkEvictsBorrowingFlexWorkWithoutUsingItsRetries) {
  ManagerConfig config;
  config.lifecycle.systemRetryDelayMs = 60'000;  // Keep the flex retry out of the way.
  start(config);
  auto registered = await(manager_->registerNode(node("node-1", 4), nullptr));
  ASSERT_TRUE(registered.has_value());
  scheduler::CapacityGroupSpec group;
  group.name = "payments";
  group.critical = {{1, 128, 128, 10, 0}, 2};
  ASSERT_TRUE(await(manager_->putCapacityGroup(group, true)).has_value());
  auto duplicate = await(manager_->putCapacityGroup(group, true));
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().code(), ErrorCode::kAlreadyExists);

  std::string flex = create({.size = 4, .retries = 0});
  ASSERT_TRUE(launchedOn(flex, "node-1"));
  std::string critical = create({.size = 2, .capacityGroup = "payments", .tier = "critical"});
  int killing = 0;
  for (const json& t : tasks(flex)) killing += t["state"] == "KillInitiated";
  ASSERT_EQ(killing, 2);
  json why = *await(manager_->whyTask(taskId(critical, 0, 0)));
  EXPECT_EQ(why["nomination"]["nodeId"], "node-1") << why.dump();

  // The agent reports the victims stopped; the critical tasks take their place.
  int64_t seq = 1;
  for (const json& t : tasks(flex)) {
    if (t["state"] == "KillInitiated") {
      report("node-1", {update(t["id"], seq++, TaskState::kFinished, 137)});
    }
  }
  ASSERT_TRUE(launchedOn(critical, "node-1"));
  int evicted = 0;
  for (int i = 0; i < 4; ++i) {
    json t = task(taskId(flex, i, 0));
    if (t["reason"] != "evicted") continue;
    ++evicted;
    json retry = task(taskId(flex, i, 1));
    EXPECT_EQ(retry["state"], "Accepted") << "retries 0, yet an evicted task is replaced";
    EXPECT_EQ(retry["evictionResubmitNumber"], 1);
  }
  EXPECT_EQ(evicted, 2);

  json groups = *await(manager_->listCapacityGroups());
  bool sawPayments = false;
  for (const json& g : groups["items"]) {
    if (g["name"] != "payments") continue;
    sawPayments = true;
    EXPECT_EQ(g["critical"]["used"]["cpu"], 2.0);
    EXPECT_EQ(g["critical"]["borrowed"]["cpu"], 0.0);
  }
  EXPECT_TRUE(sawPayments) << groups.dump();
  json defaults = *await(manager_->getCapacityGroup("DEFAULT"));
  EXPECT_FALSE(defaults["defined"]);
  EXPECT_EQ(defaults["flex"]["borrowed"]["cpu"], 2.0) << "DEFAULT reserves nothing";

  // Capacity groups survive a restart.
  restart(config);
  json reloaded = *await(manager_->getCapacityGroup("payments"));
  EXPECT_EQ(reloaded["critical"]["count"], 2);
  EXPECT_EQ(reloaded["critical"]["used"]["cpu"], 2.0);
  ASSERT_TRUE(await(manager_->deleteCapacityGroup("payments")).has_value());
  EXPECT_FALSE(await(manager_->deleteCapacityGroup("payments")).has_value());
}

TEST_F(JobManagerTest, GangThatDoesNotFitStaysPendingWhole) {
  start();
  auto registered = await(manager_->registerNode(node("node-1", 4), nullptr));
  ASSERT_TRUE(registered.has_value());
  std::string gang = create({.size = 5, .gang = true});
  std::string small = create({.size = 4});
  ASSERT_TRUE(launchedOn(small, "node-1")) << "the gang held nothing back";
  for (const json& t : tasks(gang)) EXPECT_EQ(t["state"], "Accepted");
  json why = *await(manager_->whyTask(taskId(gang, 0, 0)));
  EXPECT_TRUE(why["gang"]);
  EXPECT_EQ(why["groups"][0]["reasons"]["cpu"], 1) << why.dump();
}

TEST_F(JobManagerTest, PreemptionStaysWithinTheServiceDisruptionBudgetAndRecordsItsEvictions) {
  ManagerConfig config;
  config.lifecycle.systemRetryDelayMs = 0;    // An evicted service task is replaced at once.
  config.nodeHeartbeatTimeoutMs = 3'600'000;  // The clock jumps; the nodes stay Ready.
  config.schedulerRetryMs = 20;
  start(config);
  ASSERT_TRUE(await(manager_->registerNode(node("node-1", 4), nullptr)).has_value());
  ASSERT_NO_FATAL_FAILURE(reserveCritical("payments", 2));

  // A flex service fills node-1; at most 1 of its 4 tasks may be unhealthy, and at most 1 may
  // be disrupted per minute.
  api::JobDescriptor service = descriptor({.desired = 4});
  service.service->disruptionBudget =
      api::DisruptionBudget{.maxUnhealthy = 1, .rateTasks = 1, .rateIntervalMs = 60'000};
  auto created = await(manager_->createJob(service, ""));
  ASSERT_TRUE(created.has_value()) << created.error().message();
  std::string svc = created->id;
  ASSERT_TRUE(launchedOn(svc, "node-1"));
  int64_t seq = 1;
  for (int i = 0; i < 4; ++i) {
    report("node-1", {update(taskId(svc, i, 0), seq++, TaskState::kStarted)});
  }
  // Room for the replacements, but not for the reserved work, which must run in zone z1.
  NodeRegistration other = node("node-2", 4);
  other.attributes = {{"zone", "z2"}};
  ASSERT_TRUE(await(manager_->registerNode(other, nullptr)).has_value());

  // Every task seen being evicted so far (task listings show the latest attempt of each slot).
  std::map<std::string, json> seen;
  auto evicted = [&] {
    for (const json& t : tasks(svc)) {
      if (t.value("killReason", "") == "evicted") seen[t["id"]] = t;
    }
    return seen;
  };
  // Evictions stay as they are for a while: 300 ms, in which the scheduler tries again every
  // 20 ms.
  auto staysAt = [&](size_t count) {
    for (int i = 0; i < 15; ++i) {
      advanceMs(20);
      if (evicted().size() != count) return false;
    }
    return true;
  };
  std::string critical = create({.size = 2,
                                 .capacityGroup = "payments",
                                 .tier = "critical",
                                 .hardConstraints = {{"zone", "z1"}}});
  ASSERT_EQ(evicted().size(), 1u);
  const int64_t firstEvictionMs = clock_.nowMs();
  EXPECT_TRUE(staysAt(1)) << "maxUnhealthy 1: one victim although two reserved tasks wait";
  json victim = evicted().begin()->second;
  EXPECT_EQ(victim["state"], "KillInitiated");
  EXPECT_FALSE(victim["ready"]) << "an evicted task leaves the endpoints at once";
  EXPECT_EQ(job(svc)["disruptionsMs"], json::array({firstEvictionMs}));

  // The victim stops; its replacement starts on node-2 and the first reserved task on node-1.
  report("node-1", {update(victim["id"], seq++, TaskState::kFinished, 137)});
  std::string replacement;
  for (const json& t : tasks(svc)) {
    if (t["state"] == "Launched" && t["nodeId"] == "node-2") replacement = t["id"];
  }
  ASSERT_FALSE(replacement.empty());
  report("node-2", {update(replacement, 1, TaskState::kStarted)});
  ASSERT_EQ(task(taskId(critical, 0, 0))["state"], "Launched");
  // All 4 are ready again, yet the rate (1 per minute) holds the second reserved task back.
  EXPECT_TRUE(staysAt(1)) << "the rate allows no second disruption within the minute";
  EXPECT_EQ(task(taskId(critical, 1, 0))["state"], "Accepted");

  // A minute after the first, the second victim goes, and the record keeps only what the rate
  // needs.
  advanceMs(firstEvictionMs + 60'000 - clock_.nowMs());
  ASSERT_EQ(evicted().size(), 2u);
  const int64_t secondEvictionMs = clock_.nowMs();
  EXPECT_TRUE(staysAt(2));
  EXPECT_EQ(job(svc)["disruptionsMs"], json::array({secondEvictionMs}));
}

TEST_F(JobManagerTest, ReservedGangEvictsForAllItsTasksAndStartsWhole) {
  start();
  ASSERT_TRUE(await(manager_->registerNode(node("node-1", 4), nullptr)).has_value());
  ASSERT_NO_FATAL_FAILURE(reserveCritical("payments", 3));
  std::string flex = create({.size = 3});
  ASSERT_TRUE(launchedOn(flex, "node-1"));
  std::string gang =
      create({.size = 3, .capacityGroup = "payments", .tier = "critical", .gang = true});
  auto killing = [&] {
    std::vector<std::string> out;
    for (const json& t : tasks(flex)) {
      if (t["state"] == "KillInitiated") out.push_back(t["id"]);
    }
    return out;
  };
  std::vector<std::string> victims = killing();
  ASSERT_EQ(victims.size(), 2u);
  for (const json& t : tasks(gang))
    EXPECT_EQ(t["state"], "Accepted") << "not before the room is free";

  report("node-1", {update(victims[0], 1, TaskState::kFinished, 137)});
  advanceMs(ManagerConfig{}.schedulerRetryMs);  // The scheduler tries again: still not whole.
  for (const json& t : tasks(gang)) EXPECT_EQ(t["state"], "Accepted") << "the gang starts whole";
  report("node-1", {update(victims[1], 1, TaskState::kFinished, 137)});
  ASSERT_TRUE(launchedOn(gang, "node-1"));
}

TEST_F(JobManagerTest, NodeLabelsSteerPlacementAndSurviveReregistrationAndRestart) {
  start();
  registerNode("node-1");
  registerNode("node-2");
  std::string id = create({.size = 1, .hardConstraints = {{"attribute.pool", "gpu"}}});
  json why = *await(manager_->whyTask(taskId(id, 0, 0)));
  ASSERT_TRUE(why.contains("groups")) << why.dump();
  EXPECT_EQ(why["groups"][0]["reasons"]["attribute.pool"], 2) << why.dump();
  auto labelled = await(manager_->labelNode("node-2", {{"pool", "gpu"}}));
  ASSERT_TRUE(labelled.has_value());
  EXPECT_EQ((*labelled)["labels"]["pool"], "gpu");
  ASSERT_TRUE(launchedOn(id, "node-2"));
  why = *await(manager_->whyTask(taskId(id, 0, 0)));
  EXPECT_EQ(why["nodeId"], "node-2");

  registerNode("node-2");  // The agent re-registers: labels stay.
  EXPECT_EQ((*await(manager_->getNode("node-2")))["labels"]["pool"], "gpu");
  restart();
  EXPECT_EQ((*await(manager_->getNode("node-2")))["labels"]["pool"], "gpu");
  auto removed = await(manager_->labelNode("node-2", {{"pool", std::nullopt}}));
  ASSERT_TRUE(removed.has_value());
  EXPECT_TRUE((*removed)["labels"].empty());
  EXPECT_FALSE(await(manager_->labelNode("node-9", {{"a", "b"}})).has_value());
}

TEST_F(JobManagerTest, ManyJobsArePlacedInBatchedIterations) {
  ManagerConfig config;
  config.maxTasksPerIteration = 7;  // Several iterations, with the flex rotation.
  start(config);
  for (int i = 0; i < 4; ++i) registerNode("node-" + std::to_string(i));
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(create({.size = 5}));
  for (const std::string& id : ids) {
    for (const json& t : tasks(id)) EXPECT_EQ(t["state"], "Launched") << t.dump();
  }
  int64_t cpu = 0;
  json nodes = *await(manager_->listNodes());
  for (const json& n : nodes["items"]) {
    cpu += n["allocated"]["cpu"].get<int64_t>();
    EXPECT_LE(n["allocated"]["cpu"].get<double>(), 16.0);
  }
  EXPECT_EQ(cpu, 50);
}

}  // namespace
}  // namespace skiff::controlplane

namespace skiff::controlplane {
namespace {

// ============================== Scheduler work per submission ==============================

// Tasks that found no node wait aside until the cluster changes: a submission costs the
// scheduler work for its own tasks, not for everything already pending. Timers are manual, so
// no periodic retry runs during the test.
TEST_F(JobManagerTest, SubmissionCostsSchedulerWorkForItsOwnTasksOnlyWhateverIsPending) {
  start();
  auto settled = [&](int64_t parked) {
    SchedulingStats stats = await(manager_->schedulingStats());
    return stats.pendingJobs == 0 && stats.parkedJobs == parked;
  };
  constexpr int kJobs = 200;
  constexpr int kTasksPerJob = 5;
  for (int i = 0; i < kJobs; ++i) create({.size = kTasksPerJob});
  ASSERT_TRUE(settled(kJobs));
  SchedulingStats first = await(manager_->schedulingStats());
  EXPECT_LE(first.tasksTried, kJobs * kTasksPerJob);

  // As many again, with the first ones pending: the work grows by the new tasks only.
  for (int i = 0; i < kJobs; ++i) create({.size = kTasksPerJob});
  ASSERT_TRUE(settled(2 * kJobs));
  SchedulingStats second = await(manager_->schedulingStats());
  EXPECT_LE(second.tasksTried - first.tasksTried, kJobs * kTasksPerJob);
  EXPECT_LE(second.jobsScanned - first.jobsScanned, 2 * kJobs);

  // A node joining is a change that may let them fit: every parked job is tried again.
  registerNode("n1");
  EXPECT_GE(await(manager_->schedulingStats()).tasksTried - second.tasksTried,
            2 * kJobs * kTasksPerJob);
  auto nodes = await(manager_->listNodes());
  ASSERT_TRUE(nodes.has_value());
  // 16 cores of 1-core tasks.
  EXPECT_EQ((*nodes)["items"][0]["allocated"]["cpu"], 16) << nodes->dump();

  // Without a change, parked jobs are tried again once parkedRetryMs has passed.
  SchedulingStats placed = await(manager_->schedulingStats());
  advanceMs(ManagerConfig{}.parkedRetryMs - 1);
  EXPECT_EQ(await(manager_->schedulingStats()).tasksTried, placed.tasksTried)
      << "tried again before parkedRetryMs";
  advanceMs(1);
  EXPECT_GT(await(manager_->schedulingStats()).tasksTried, placed.tasksTried);
}

}  // namespace
}  // namespace skiff::controlplane
