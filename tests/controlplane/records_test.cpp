// Stored and wire forms of job, task and node records, the key layout, and job and task ids.

#include "controlplane/records.h"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/job.h"
#include "api/states.h"
#include "controlplane/job_logic.h"

namespace skiff::controlplane {
namespace {

using api::JobState;
using api::TaskReason;
using api::TaskState;
using nlohmann::json;

constexpr int64_t kNowMs = 1'700'000'000'000;

api::JobDescriptor descriptor(bool service) {
  json document = {
      {"applicationName", "app"},
      {"name", "records"},
      {"owner", {{"teamEmail", "team@example.com"}}},
      {"tier", "critical"},
      {"attributes", {{"team", "data"}}},
      {"container",
       {{"image", "registry.example.com:5000/tools/busybox:1.36"},
        {"command", {"echo", "hi"}},
        {"env", {{"A", "1"}}},
        {"resources", {{"cpu", 0.5}, {"memoryMB", 64}}}}},
  };
  if (service) {
    document["service"] = {{"capacity", {{"min", 1}, {"desired", 2}, {"max", 5}}},
                           {"enabled", true}};
  } else {
    document["batch"] = {
        {"size", 3},
        {"runtimeLimitSec", 600},
        {"retryOnRuntimeLimit", true},
        {"retryPolicy",
         {{"exponentialBackOff",
           {{"initialDelayMs", 100}, {"maxDelayIntervalMs", 800}, {"retries", 4}}}}}};
  }
  auto validated = api::validateJobDescriptor(document);
  if (!validated) {
    ADD_FAILURE() << validated.error()[0].toString();
    return {};
  }
  return std::move(*validated);
}

JobRecord batchJob() {
  JobRecord job = newJob(newJobId(kNowMs), descriptor(false), "idem-1", kNowMs).job;
  job.requestHash = "0123abcd";
  job.state = JobState::kKillInitiated;
  job.reason = "killed";
  job.message = "killed by request";
  job.stateTimeMs = kNowMs + 5;
  job.nextIndex = 3;
  return job;
}

JobRecord serviceJob() {
  JobRecord job = newJob(newJobId(kNowMs), descriptor(true), "", kNowMs).job;
  job.capacity = {0, 4, 9};  // Changed since submission.
  job.enabled = false;
  job.nextIndex = 11;
  return job;
}

TaskRecord fullTask(const std::string& jobId) {
  TaskRecord task;
  task.id = taskId(jobId, 7, 3);
  task.index = 7;
  task.state = TaskState::kFinished;
  task.reason = TaskReason::kRuntimeLimitExceeded;
  task.killReason = TaskReason::kRuntimeLimitExceeded;
  task.exitCode = -9;
  task.hasExitCode = true;
  task.message = "stopped \"quoted\" \n ünïcode";
  task.nodeId = "node-1";
  task.resubmitNumber = 3;
  task.systemResubmitNumber = 1;
  task.evictionResubmitNumber = 1;
  task.resubmitOf = taskId(jobId, 7, 2);
  task.stateTimesMs = {kNowMs, kNowMs + 1, kNowMs + 2, kNowMs + 3, kNowMs + 4, kNowMs + 5};
  task.notBeforeMs = kNowMs + 1000;
  task.lastSeq = 12;
  return task;
}

void expectSameJob(const JobRecord& a, const JobRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.requestHash, b.requestHash);
  EXPECT_EQ(api::toJson(a.descriptor), api::toJson(b.descriptor));
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.stateTimeMs, b.stateTimeMs);
  EXPECT_EQ(a.createdAtMs, b.createdAtMs);
  EXPECT_EQ(a.idempotencyKey, b.idempotencyKey);
  EXPECT_EQ(a.capacity.min, b.capacity.min);
  EXPECT_EQ(a.capacity.desired, b.capacity.desired);
  EXPECT_EQ(a.capacity.max, b.capacity.max);
  EXPECT_EQ(a.enabled, b.enabled);
  EXPECT_EQ(a.nextIndex, b.nextIndex);
}

void expectSameTask(const TaskRecord& a, const TaskRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.killReason, b.killReason);
  EXPECT_EQ(a.exitCode, b.exitCode);
  EXPECT_EQ(a.hasExitCode, b.hasExitCode);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.nodeId, b.nodeId);
  EXPECT_EQ(a.resubmitNumber, b.resubmitNumber);
  EXPECT_EQ(a.systemResubmitNumber, b.systemResubmitNumber);
  EXPECT_EQ(a.evictionResubmitNumber, b.evictionResubmitNumber);
  EXPECT_EQ(a.resubmitOf, b.resubmitOf);
  EXPECT_EQ(a.stateTimesMs, b.stateTimesMs);
  EXPECT_EQ(a.notBeforeMs, b.notBeforeMs);
  EXPECT_EQ(a.lastSeq, b.lastSeq);
}

// ============================== Jobs ==============================

TEST(JobRecordTest, BatchJobSurvivesStoredRoundTrip) {
  JobRecord job = batchJob();
  auto back = jobFromStored(toStored(job), 42);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  expectSameJob(job, *back);
  EXPECT_EQ(back->modRevision, 42);
  ASSERT_TRUE(back->descriptor.isBatch());
  EXPECT_EQ(back->descriptor.batch->retryPolicy.kind, api::RetryPolicy::Kind::kExponentialBackOff);
  EXPECT_EQ(back->descriptor.batch->retryPolicy.maxDelayIntervalMs, 800);
  EXPECT_TRUE(back->descriptor.batch->retryOnRuntimeLimit);
  EXPECT_EQ(back->descriptor.tier, api::Tier::kCritical);
}

TEST(JobRecordTest, TextFormsWithAGivenDescriptorEqualTheBuiltForms) {
  for (const JobRecord& job : {batchJob(), serviceJob()}) {
    const std::string descriptorText = api::toJson(job.descriptor).dump();
    json stored = json::parse(toStoredText(job, descriptorText));
    EXPECT_EQ(stored["descriptor"], api::toJson(job.descriptor));
    EXPECT_EQ(stored, json::parse(toStored(job)));
    json expected = toWire(job);
    expected["taskCounts"] = {{"Accepted", 1}};
    EXPECT_EQ(json::parse(toWireText(job, descriptorText, {{"taskCounts", {{"Accepted", 1}}}})),
              expected);
  }
}

TEST(JobRecordTest, SecurityGroupsAreReadFromTheStoredJobAlone) {
  JobRecord job = batchJob();
  job.descriptor.container.securityProfile.securityGroups = {"web", "db"};
  auto groups = securityGroupsOfStoredJob(toStored(job));
  ASSERT_TRUE(groups.has_value()) << groups.error().message();
  EXPECT_EQ(*groups, (std::vector<std::string>{"web", "db"}));
}

TEST(JobRecordTest, SecurityGroupsIgnoreSameNamedFieldsElsewhere) {
  auto groups = securityGroupsOfStoredJob(
      R"({"securityGroups":["top"],"descriptor":{"securityProfile":{"securityGroups":["x"]},)"
      R"("container":{"env":{"securityGroups":"e"},"ports":[{"securityGroups":["p"]}],)"
      R"("securityProfile":{"iamRole":"r","securityGroups":["a","b"]}}}})");
  ASSERT_TRUE(groups.has_value());
  EXPECT_EQ(*groups, (std::vector<std::string>{"a", "b"}));
  auto none = securityGroupsOfStoredJob(R"({"descriptor":{"container":{}}})");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(securityGroupsOfStoredJob("{\"descriptor\":").has_value());
}

TEST(JobRecordTest, ServiceJobKeepsItsCurrentCapacityAndEnabledFlag) {
  JobRecord job = serviceJob();
  auto back = jobFromStored(toStored(job), 7);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  expectSameJob(job, *back);
  EXPECT_EQ(back->descriptor.service->capacity.desired, 2) << "the submitted capacity is kept";
  EXPECT_EQ(back->capacity.desired, 4);
  EXPECT_FALSE(back->enabled);
}

TEST(JobRecordTest, ServiceJobWithoutStoredCapacityFallsBackToTheDescriptor) {
  json stored = json::parse(toStored(serviceJob()));
  stored.erase("capacity");
  stored.erase("enabled");
  auto back = jobFromStored(stored.dump(), 1);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(back->capacity.min, 1);
  EXPECT_EQ(back->capacity.desired, 2);
  EXPECT_EQ(back->capacity.max, 5);
  EXPECT_TRUE(back->enabled);
}

TEST(JobRecordTest, WireFormHasRevisionAndStatusButNoInternals) {
  JobRecord job = batchJob();
  job.modRevision = 99;
  json wire = toWire(job);
  EXPECT_EQ(wire["id"], job.id);
  EXPECT_EQ(wire["revision"], 99);
  EXPECT_EQ(wire["type"], "batch");
  EXPECT_EQ(wire["status"]["state"], "KillInitiated");
  EXPECT_EQ(wire["status"]["reason"], "killed");
  EXPECT_EQ(wire["status"]["message"], "killed by request");
  EXPECT_EQ(wire["status"]["timestampMs"], kNowMs + 5);
  EXPECT_EQ(wire["createdAtMs"], kNowMs);
  EXPECT_EQ(wire["idempotencyKey"], "idem-1");
  EXPECT_EQ(wire["descriptor"], api::toJson(job.descriptor));
  EXPECT_FALSE(wire.contains("nextIndex"));
  EXPECT_FALSE(wire.contains("capacity")) << "batch jobs have no capacity";
  EXPECT_FALSE(wire.contains("enabled"));

  json service = toWire(serviceJob());
  EXPECT_EQ(service["type"], "service");
  EXPECT_EQ(service["capacity"], json({{"min", 0}, {"desired", 4}, {"max", 9}}));
  EXPECT_EQ(service["enabled"], false);
}

// ============================== Tasks ==============================

TEST(TaskRecordTest, EveryFieldSurvivesStoredRoundTrip) {
  TaskRecord task = fullTask(newJobId(kNowMs));
  auto back = taskFromStored(toStored(task), 17);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  expectSameTask(task, *back);
  EXPECT_EQ(back->modRevision, 17);
}

TEST(TaskRecordTest, FreshTaskSurvivesStoredRoundTrip) {
  std::string jobId = newJobId(kNowMs);
  JobView view = newJob(jobId, descriptor(false), "", kNowMs);
  for (const TaskRecord& task : view.tasks) {
    auto back = taskFromStored(toStored(task), 3);
    ASSERT_TRUE(back.has_value()) << back.error().message();
    expectSameTask(task, *back);
    EXPECT_EQ(back->reason, TaskReason::kNone);
    EXPECT_EQ(back->killReason, TaskReason::kNone);
    EXPECT_FALSE(back->hasExitCode);
  }
}

TEST(TaskRecordTest, EveryStateAndReasonSurvivesStoredRoundTrip) {
  std::string jobId = newJobId(kNowMs);
  for (int s = 0; s < api::kTaskStateCount; ++s) {
    for (int r = 0; r <= static_cast<int>(TaskReason::kImageDenied); ++r) {
      TaskRecord task;
      task.id = taskId(jobId, 0, 0);
      task.state = static_cast<TaskState>(s);
      task.reason = static_cast<TaskReason>(r);
      task.killReason = static_cast<TaskReason>(r);
      auto back = taskFromStored(toStored(task), 1);
      ASSERT_TRUE(back.has_value()) << back.error().message();
      EXPECT_EQ(back->state, task.state);
      EXPECT_EQ(back->reason, task.reason);
      EXPECT_EQ(back->killReason, task.killReason);
    }
  }
}

TEST(TaskRecordTest, WireFormNamesStatesAndOmitsUnsetFields) {
  std::string jobId = newJobId(kNowMs);
  TaskRecord task = fullTask(jobId);
  task.modRevision = 5;
  json wire = toWire(task, jobId);
  EXPECT_EQ(wire["id"], task.id);
  EXPECT_EQ(wire["jobId"], jobId);
  EXPECT_EQ(wire["index"], 7);
  EXPECT_EQ(wire["state"], "Finished");
  EXPECT_EQ(wire["reason"], "runtimeLimitExceeded");
  EXPECT_EQ(wire["killReason"], "runtimeLimitExceeded");
  EXPECT_EQ(wire["exitCode"], -9);
  EXPECT_EQ(wire["nodeId"], "node-1");
  EXPECT_EQ(wire["resubmitNumber"], 3);
  EXPECT_EQ(wire["systemResubmitNumber"], 1);
  EXPECT_EQ(wire["evictionResubmitNumber"], 1);
  EXPECT_EQ(wire["resubmitOf"], task.resubmitOf);
  EXPECT_EQ(wire["stateTimesMs"]["Accepted"], kNowMs);
  EXPECT_EQ(wire["stateTimesMs"]["Finished"], kNowMs + 5);
  EXPECT_EQ(wire["notBeforeMs"], kNowMs + 1000);
  EXPECT_EQ(wire["revision"], 5);

  TaskRecord fresh;
  fresh.id = taskId(jobId, 0, 0);
  fresh.stateTimesMs[0] = kNowMs;
  json plain = toWire(fresh, jobId);
  EXPECT_EQ(plain["state"], "Accepted");
  EXPECT_EQ(plain["reason"], "");
  EXPECT_FALSE(plain.contains("exitCode"));
  EXPECT_FALSE(plain.contains("killReason"));
  EXPECT_FALSE(plain.contains("notBeforeMs"));
  EXPECT_FALSE(plain.contains("lastSeq"));
  EXPECT_EQ(plain["stateTimesMs"], json({{"Accepted", kNowMs}}))
      << "unset state times are left out";
}

TEST(TaskRecordTest, ZeroExitCodeIsKept) {
  TaskRecord task = fullTask(newJobId(kNowMs));
  task.exitCode = 0;
  auto back = taskFromStored(toStored(task), 1);
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->hasExitCode);
  EXPECT_EQ(back->exitCode, 0);
  EXPECT_EQ(toWire(task, "")["exitCode"], 0);
}

// ============================== Nodes ==============================

TEST(NodeRecordTest, SurvivesStoredRoundTrip) {
  NodeRecord node;
  node.id = "node-7";
  node.resources = {7.5, 4096, 20000, 1000, 2};
  node.attributes = {{"zone", "z1"}, {"machineType", "m5"}, {"rack", 4}};
  node.draining = true;
  node.registeredAtMs = kNowMs;
  auto back = nodeFromStored(toStored(node), 8);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(back->id, "node-7");
  EXPECT_DOUBLE_EQ(back->resources.cpu, 7.5);
  EXPECT_EQ(back->resources.memoryMB, 4096);
  EXPECT_EQ(back->resources.diskMB, 20000);
  EXPECT_EQ(back->resources.networkMbps, 1000);
  EXPECT_EQ(back->resources.gpu, 2);
  EXPECT_EQ(back->attributes, node.attributes);
  EXPECT_TRUE(back->draining);
  EXPECT_EQ(back->registeredAtMs, kNowMs);
  EXPECT_EQ(back->modRevision, 8);
}

TEST(NodeRecordTest, ResourcesToJsonNamesEveryField) {
  json r = resourcesToJson({1.25, 2, 3, 4, 5});
  EXPECT_EQ(r,
            json({{"cpu", 1.25}, {"memoryMB", 2}, {"diskMB", 3}, {"networkMbps", 4}, {"gpu", 5}}));
}

// ============================== Keys and ids ==============================

TEST(RecordKeysTest, JobPrefixCoversExactlyTheJobAndItsTasks) {
  std::string a = newJobId(kNowMs), b = newJobId(kNowMs + 1);
  EXPECT_EQ(jobKey(a), "/j/" + a);
  EXPECT_EQ(taskKey(a, taskId(a, 0, 0)), "/j/" + a + "/t/" + a + "-0-0");
  EXPECT_EQ(nodeKey("n1"), "/nodes/n1");
  EXPECT_EQ(idempotencyKey("k"), "/idem/k");
  EXPECT_TRUE(jobKey(a).starts_with(jobPrefix(a)));
  EXPECT_TRUE(taskKey(a, taskId(a, 12, 3)).starts_with(jobPrefix(a)));
  EXPECT_FALSE(jobKey(b).starts_with(jobPrefix(a)));
  EXPECT_FALSE(taskKey(b, taskId(b, 0, 0)).starts_with(jobPrefix(a)));
  EXPECT_TRUE(jobKey(a).starts_with(kJobsPrefix));
  // A job sorts right before its tasks, and all of them before the next job.
  EXPECT_LT(jobKey(a), taskKey(a, taskId(a, 0, 0)));
  EXPECT_LT(taskKey(a, taskId(a, 999, 9)), jobKey(b));
}

TEST(RecordIdsTest, NewJobIdHasFixedLengthAndHexParts) {
  std::string id = newJobId(kNowMs);
  ASSERT_EQ(id.size(), 25u);
  EXPECT_TRUE(id.starts_with("job-"));
  EXPECT_EQ(id[16], '-');
  EXPECT_EQ(id.substr(4, 12), "018bcfe56800");  // 1'700'000'000'000 in hex.
  for (size_t i : {4u, 5u, 15u, 17u, 24u}) {
    EXPECT_NE(std::string("0123456789abcdef").find(id[i]), std::string::npos) << id;
  }
  EXPECT_EQ(newJobId(0).substr(0, 17), "job-000000000000-");
}

TEST(RecordIdsTest, NewJobIdsAreTimeOrderedAndDistinct) {
  std::vector<int64_t> times = {0, 1, 15, 16, 255, 4096, kNowMs, kNowMs + 1, kNowMs + 86'400'000};
  for (size_t i = 1; i < times.size(); ++i) {
    EXPECT_LT(newJobId(times[i - 1]), newJobId(times[i])) << times[i - 1] << " vs " << times[i];
  }
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(newJobId(kNowMs));
  EXPECT_GT(ids.size(), 990u) << "ids made in the same millisecond differ by their random part";
}

TEST(RecordIdsTest, TaskIdNamesJobIndexAndAttempt) {
  std::string job = newJobId(kNowMs);
  EXPECT_EQ(taskId(job, 4, 2), job + "-4-2");
  EXPECT_EQ(jobIdOfTask(taskId(job, 4, 2)), job);
  EXPECT_EQ(jobIdOfTask(taskId(job, 123456, 78)), job);
}

TEST(RecordIdsTest, JobIdOfTaskRejectsForeignIds) {
  std::string job = newJobId(kNowMs);
  EXPECT_EQ(jobIdOfTask(""), std::nullopt);
  EXPECT_EQ(jobIdOfTask(job), std::nullopt) << "a job id is not a task id";
  EXPECT_EQ(jobIdOfTask(job + "-"), std::nullopt);
  EXPECT_EQ(jobIdOfTask(job + "x0-0"), std::nullopt);
  EXPECT_EQ(jobIdOfTask("node-1"), std::nullopt);
  std::string wrongPrefix = taskId(job, 0, 0);
  wrongPrefix[0] = 'J';
  EXPECT_EQ(jobIdOfTask(wrongPrefix), std::nullopt);
}

// ============================== Corrupt stored values ==============================

void expectInternal(const auto& result, const std::string& what) {
  ASSERT_FALSE(result.has_value()) << what << " was accepted";
  EXPECT_EQ(result.error().code(), ErrorCode::kInternal)
      << what << ": " << result.error().message();
}

TEST(CorruptRecordTest, JobsFailWithInternal) {
  json good = json::parse(toStored(batchJob()));
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},           {"not json", "{\"id\": "}, {"an array", "[1, 2]"},
      {"a string", "\"job\""}, {"null", "null"},
  };
  auto mutated = [&](const std::string& name, auto change) {
    json copy = good;
    change(copy);
    cases.emplace_back(name, copy.dump());
  };
  mutated("no id", [](json& j) { j.erase("id"); });
  mutated("numeric id", [](json& j) { j["id"] = 5; });
  mutated("no descriptor", [](json& j) { j.erase("descriptor"); });
  mutated("invalid descriptor",
          [](json& j) { j["descriptor"]["container"]["resources"]["memoryMB"] = 1; });
  mutated("descriptor not an object", [](json& j) { j["descriptor"] = "x"; });
  mutated("no status", [](json& j) { j.erase("status"); });
  mutated("status not an object", [](json& j) { j["status"] = 1; });
  mutated("unknown state", [](json& j) { j["status"]["state"] = "Running"; });
  mutated("numeric state", [](json& j) { j["status"]["state"] = 1; });
  mutated("text timestamp", [](json& j) { j["status"]["timestampMs"] = "soon"; });
  mutated("text nextIndex", [](json& j) { j["nextIndex"] = "3"; });
  mutated("capacity not an object", [](json& j) { j["capacity"] = 3; });
  mutated("text enabled", [](json& j) { j["enabled"] = "yes"; });
  for (const auto& [name, value] : cases) expectInternal(jobFromStored(value, 1), name);
}

TEST(CorruptRecordTest, TasksFailWithInternal) {
  json good = json::parse(toStored(fullTask(newJobId(kNowMs))));
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""}, {"not json", "{"}, {"an array", "[]"}, {"a number", "7"}};
  auto mutated = [&](const std::string& name, auto change) {
    json copy = good;
    change(copy);
    cases.emplace_back(name, copy.dump());
  };
  mutated("no id", [](json& j) { j.erase("id"); });
  mutated("no index", [](json& j) { j.erase("index"); });
  mutated("text index", [](json& j) { j["index"] = "7"; });
  mutated("no state", [](json& j) { j.erase("state"); });
  mutated("unknown state", [](json& j) { j["state"] = "Exploded"; });
  mutated("no reason", [](json& j) { j.erase("reason"); });
  mutated("numeric reason", [](json& j) { j["reason"] = 3; });
  mutated("numeric killReason", [](json& j) { j["killReason"] = 3; });
  mutated("text exitCode", [](json& j) { j["exitCode"] = "1"; });
  mutated("text state time", [](json& j) { j["stateTimesMs"]["Started"] = "now"; });
  mutated("numeric message", [](json& j) { j["message"] = 1; });
  mutated("text resubmitNumber", [](json& j) { j["resubmitNumber"] = "1"; });
  mutated("text draining", [](json& j) { j["draining"] = "no"; });
  mutated("numeric ready", [](json& j) { j["ready"] = 1; });
  mutated("array state times", [](json& j) { j["stateTimesMs"] = json::array({1}); });
  mutated("null nodeId", [](json& j) { j["nodeId"] = nullptr; });
  cases.emplace_back("trailing text", good.dump() + " x");
  for (const auto& [name, value] : cases) expectInternal(taskFromStored(value, 1), name);
}

TEST(CorruptRecordTest, NodesFailWithInternal) {
  NodeRecord node;
  node.id = "n";
  json good = json::parse(toStored(node));
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""}, {"not json", "nope"}, {"an array", "[{}]"}};
  auto mutated = [&](const std::string& name, auto change) {
    json copy = good;
    change(copy);
    cases.emplace_back(name, copy.dump());
  };
  mutated("no id", [](json& j) { j.erase("id"); });
  mutated("no resources", [](json& j) { j.erase("resources"); });
  mutated("resources not an object", [](json& j) { j["resources"] = 4; });
  mutated("text cpu", [](json& j) { j["resources"]["cpu"] = "4"; });
  mutated("text draining", [](json& j) { j["draining"] = "yes"; });
  for (const auto& [name, value] : cases) expectInternal(nodeFromStored(value, 1), name);
}

}  // namespace
}  // namespace skiff::controlplane
