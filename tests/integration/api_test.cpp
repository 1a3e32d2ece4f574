// The real skiffd on loopback, driven over HTTP. A test acts as a node agent where a task must
// move past Accepted (the node agent itself is a separate program).

#include <sys/stat.h>

#include <chrono>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "skiffd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;

json batchJob(int size = 1, json retryPolicy = {{"immediate", {{"retries", 0}}}}) {
  return {{"applicationName", "it"},
          {"owner", {{"teamEmail", "team@example.com"}}},
          {"container",
           {{"image", "busybox:1.36"},
            {"command", {"true"}},
            {"resources", {{"cpu", 0.5}, {"memoryMB", 64}}}}},
          {"batch", {{"size", size}, {"retryPolicy", retryPolicy}}}};
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
    api_ = skiffd_.client();
  }

  json call(std::string_view method, std::string_view target, const json* body = nullptr,
            long expectStatus = 200, const client::Headers& headers = {}) {
    auto response = api_->call(method, target, body, headers);
    EXPECT_TRUE(response.has_value()) << (response ? "" : response.error().message());
    if (!response) return nullptr;
    EXPECT_EQ(response->status, expectStatus) << method << " " << target << ": " << response->body;
    return response->body;
  }

  std::string createJob(const json& job) {
    json created = call("POST", "/v1/jobs", &job, 201);
    return created.value("id", "");
  }

  void registerNode(const std::string& id, double cpu = 4) {
    auto agent = skiffd_.client(skiffd_.joinToken());
    json node = {{"id", id},
                 {"resources",
                  {{"cpu", cpu}, {"memoryMB", 8192}, {"diskMB", 100000}, {"networkMbps", 1000}}},
                 {"attributes", {{"zone", "z1"}}}};
    auto response = agent->call("POST", "/v1/nodes", &node);
    ASSERT_TRUE(response && response->status == 201) << (response ? response->body.dump() : "");
  }

  void report(const std::string& node, const std::string& taskId, int64_t seq,
              const std::string& state, std::optional<int> exitCode = std::nullopt) {
    auto agent = skiffd_.client(skiffd_.joinToken());
    json update = {{"taskId", taskId}, {"seq", seq}, {"state", state}};
    if (exitCode) update["exitCode"] = *exitCode;
    json body = {{"updates", json::array({update})}};
    auto response = agent->call("POST", "/v1/nodes/" + node + "/taskStatus", &body);
    ASSERT_TRUE(response && response->status == 200) << (response ? response->body.dump() : "");
  }

  // Polls until `predicate(job)` holds or 10 s pass.
  json waitForJob(const std::string& id, const std::function<bool(const json&)>& predicate) {
    json job;
    for (int i = 0; i < 500; ++i) {
      job = call("GET", "/v1/jobs/" + id);
      if (predicate(job)) return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "job never reached the expected state: " << job.dump();
    return job;
  }

  json tasksOf(const std::string& jobId) {
    return call("GET", "/v1/tasks?jobId=" + jobId)["items"];
  }

  SkiffdProcess skiffd_;
  std::unique_ptr<client::ApiClient> api_;
};

TEST_F(ApiTest, HealthAndVersionNeedNoToken) {
  auto anonymous = skiffd_.client("");
  auto health = anonymous->call("GET", "/healthz", nullptr);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto version = anonymous->call("GET", "/version", nullptr);
  ASSERT_TRUE(version);
  EXPECT_EQ(version->body["api"], "v1");
}

TEST_F(ApiTest, MissingOrWrongTokenGets401) {
  auto anonymous = skiffd_.client("");
  auto missing = anonymous->call("GET", "/v1/jobs", nullptr);
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  auto wrong = skiffd_.client("not-the-token-at-all")->call("GET", "/v1/jobs", nullptr);
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(wrong->body["error"]["code"], "Unauthenticated");
}

TEST_F(ApiTest, JoinTokenCannotManageJobs) {
  auto agent = skiffd_.client(skiffd_.joinToken());
  auto response = agent->call("GET", "/v1/jobs", nullptr);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 403);
}

TEST_F(ApiTest, TokensAreCreatedWithMode0600) {
  for (const char* name : {"/admin.token", "/join.token"}) {
    struct stat info {};
    ASSERT_EQ(::stat((skiffd_.stateDir() + name).c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600) << name;
  }
}

TEST_F(ApiTest, CreatedJobCanBeFetched) {
  std::string id = createJob(batchJob(3));
  ASSERT_FALSE(id.empty());
  json job = call("GET", "/v1/jobs/" + id);
  EXPECT_EQ(job["status"]["state"], "Accepted");
  EXPECT_EQ(job["descriptor"]["container"]["image"]["tag"], "1.36");
  EXPECT_EQ(job["taskCounts"]["Accepted"], 3);
  EXPECT_EQ(tasksOf(id).size(), 3u);
}

TEST_F(ApiTest, InvalidJobListsEveryFieldError) {
  json bad = batchJob();
  bad["container"]["resources"]["memoryMB"] = 0;
  bad["batch"]["size"] = 0;
  bad["colour"] = "blue";
  json error = call("POST", "/v1/jobs", &bad, 400);
  ASSERT_TRUE(error["error"].contains("details"));
  std::vector<std::string> lines;
  for (const auto& detail : error["error"]["details"]) {
    lines.push_back(detail["field"].get<std::string>() + ": " +
                    detail["message"].get<std::string>());
  }
  EXPECT_THAT(lines, ::testing::UnorderedElementsAre(
                         "colour: unknown field",
                         "container.resources.memoryMB: must be between 16 and 1048576 (got 0)",
                         "batch.size: must be between 1 and 10000 (got 0)"));
  EXPECT_EQ(call("GET", "/v1/jobs")["items"].size(), 0u);
}

TEST_F(ApiTest, MalformedJsonIsRefusedWithReason) {
  auto response = api_->call("POST", "/v1/jobs", nullptr);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_NE(response->body["error"]["message"].get<std::string>().find("malformed JSON"),
            std::string::npos);
}

TEST_F(ApiTest, BodyOverOneMebibyteGets413) {
  json big = batchJob();
  big["attributes"] = {{"padding", std::string(1100 * 1024, 'x')}};
  json error = call("POST", "/v1/jobs", &big, 413);
  EXPECT_EQ(error["error"]["code"], "TooLarge");
}

TEST_F(ApiTest, IdempotencyKeyMakesRetriesSafe) {
  json job = batchJob();
  client::Headers key = {{"Idempotency-Key", "retry-me"}};
  json first = call("POST", "/v1/jobs", &job, 201, key);
  json second = call("POST", "/v1/jobs", &job, 200, key);
  EXPECT_EQ(first["id"], second["id"]);
  json other = batchJob(2);
  json conflict = call("POST", "/v1/jobs", &other, 409, key);
  EXPECT_EQ(conflict["error"]["code"], "Conflict");
  EXPECT_EQ(call("GET", "/v1/jobs")["items"].size(), 1u);
}

TEST_F(ApiTest, ListFiltersAndPagesWithCursor) {
  for (int i = 0; i < 5; ++i) createJob(batchJob());
  json service = batchJob();
  service.erase("batch");
  service["service"] = {{"capacity", {{"min", 0}, {"desired", 1}, {"max", 3}}}};
  createJob(service);
  json page = call("GET", "/v1/jobs?limit=2");
  ASSERT_EQ(page["items"].size(), 2u);
  std::set<std::string> seen;
  std::string cursor = page["nextCursor"];
  for (const auto& job : page["items"]) seen.insert(job["id"]);
  while (!cursor.empty()) {
    json next = call("GET", "/v1/jobs?limit=2&cursor=" + cursor);
    for (const auto& job : next["items"]) seen.insert(job["id"]);
    cursor = next.value("nextCursor", "");
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(call("GET", "/v1/jobs?type=service")["items"].size(), 1u);
  EXPECT_EQ(call("GET", "/v1/jobs?type=batch&limit=1000")["items"].size(), 5u);
  call("GET", "/v1/jobs?state=Sleeping", nullptr, 400);
}

TEST_F(ApiTest, UnknownJobIs404) {
  json error = call("GET", "/v1/jobs/job-000000000000-00000000", nullptr, 404);
  EXPECT_EQ(error["error"]["code"], "NotFound");
}

TEST_F(ApiTest, BatchJobRunsToNormalCompletionThroughAnAgent) {
  std::string id = createJob(batchJob(2));
  registerNode("node-a");
  json job = waitForJob(id, [](const json& j) { return j["taskCounts"]["Launched"] == 2; });
  auto agent = skiffd_.client(skiffd_.joinToken());
  auto assignments = agent->call("GET", "/v1/nodes/node-a/assignments?waitMs=0", nullptr);
  ASSERT_TRUE(assignments);
  ASSERT_EQ(assignments->body["assignments"].size(), 2u);
  for (const auto& assignment : assignments->body["assignments"]) {
    std::string taskId = assignment["task"]["id"];
    report("node-a", taskId, 1, "StartInitiated");
    report("node-a", taskId, 2, "Started");
    report("node-a", taskId, 3, "Finished", 0);
    report("node-a", taskId, 3, "Finished", 0);  // A resent report is applied once.
  }
  job = waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  EXPECT_EQ(job["status"]["reason"], "normal");
  json node = call("GET", "/v1/nodes")["items"][0];
  EXPECT_EQ(node["taskCount"], 0);
  EXPECT_EQ(node["allocated"]["cpu"], 0.0);
}

TEST_F(ApiTest, AssignmentDeltasNameChangedAndRemovedTasks) {
  std::string id = createJob(batchJob(2));
  registerNode("node-a");
  waitForJob(id, [](const json& j) { return j["taskCounts"]["Launched"] == 2; });
  auto agent = skiffd_.client(skiffd_.joinToken());
  auto full = agent->call("GET", "/v1/nodes/node-a/assignments?delta=true&waitMs=0", nullptr);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->body["full"], true);
  ASSERT_EQ(full->body["assignments"].size(), 2u);
  EXPECT_FALSE(full->body.contains("removed"));
  int64_t revision = full->body["revision"];

  std::string t0 = id + "-0-0", t1 = id + "-1-0";
  report("node-a", t0, 1, "Started");
  report("node-a", t1, 1, "Finished", 0);
  auto delta = agent->call(
      "GET",
      "/v1/nodes/node-a/assignments?delta=true&waitMs=0&afterRevision=" + std::to_string(revision),
      nullptr);
  ASSERT_TRUE(delta);
  EXPECT_EQ(delta->body["full"], false);
  EXPECT_GT(delta->body["revision"].get<int64_t>(), revision);
  // The node's own Started report is not echoed; the finished task is removed.
  EXPECT_TRUE(delta->body["assignments"].empty());
  EXPECT_EQ(delta->body["removed"], json::array({t1}));

  // A poll that times out with nothing changed answers with an empty delta.
  auto idle = agent->call("GET",
                          "/v1/nodes/node-a/assignments?delta=true&waitMs=200&afterRevision=" +
                              std::to_string(delta->body["revision"].get<int64_t>()),
                          nullptr);
  ASSERT_TRUE(idle);
  EXPECT_EQ(idle->body["full"], false);
  EXPECT_TRUE(idle->body["assignments"].empty());
  EXPECT_TRUE(idle->body["removed"].empty());

  // Without delta=true the answer is the full list, as for agents that do not apply deltas.
  auto plain = agent->call(
      "GET", "/v1/nodes/node-a/assignments?waitMs=0&afterRevision=" + std::to_string(revision),
      nullptr);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->body["full"], true);
  ASSERT_EQ(plain->body["assignments"].size(), 1u);
  EXPECT_EQ(plain->body["assignments"][0]["task"]["id"], t0);
}

TEST_F(ApiTest, FailedTaskIsRetriedThenJobFails) {
  std::string id = createJob(batchJob(1, {{"immediate", {{"retries", 1}}}}));
  registerNode("node-a");
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string taskId = id + "-0-" + std::to_string(attempt);
    waitForJob(id, [](const json& j) { return j["taskCounts"]["Launched"] == 1; });
    report("node-a", taskId, 1, "Started");
    report("node-a", taskId, 2, "Finished", 7);
  }
  json job = waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  EXPECT_EQ(job["status"]["reason"], "failed");
  json retry = call("GET", "/v1/tasks/" + id + "-0-1");
  EXPECT_EQ(retry["resubmitOf"], id + "-0-0");
  EXPECT_EQ(retry["exitCode"], 7);
  json first = call("GET", "/v1/tasks/" + id + "-0-0");
  EXPECT_EQ(first["reason"], "failed");
}

TEST_F(ApiTest, KillFinishesUnplacedTasksAtOnce) {
  std::string id = createJob(batchJob(2));
  json killed = call("POST", "/v1/jobs/" + id + "/kill", nullptr, 202);
  json job = waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  EXPECT_EQ(job["status"]["reason"], "killed");
  for (const auto& task : tasksOf(id)) EXPECT_EQ(task["reason"], "killed");
  call("POST", "/v1/jobs/" + id + "/kill", nullptr, 412);
}

TEST_F(ApiTest, KillOfRunningTaskWaitsForTheAgent) {
  std::string id = createJob(batchJob(1));
  registerNode("node-a");
  waitForJob(id, [](const json& j) { return j["taskCounts"]["Launched"] == 1; });
  std::string taskId = id + "-0-0";
  report("node-a", taskId, 1, "Started");
  json task = call("POST", "/v1/tasks/" + taskId + "/kill", nullptr, 202);
  EXPECT_EQ(task["state"], "KillInitiated");
  auto agent = skiffd_.client(skiffd_.joinToken());
  auto assignments = agent->call("GET", "/v1/nodes/node-a/assignments?waitMs=0", nullptr);
  ASSERT_TRUE(assignments);
  EXPECT_EQ(assignments->body["assignments"][0]["desiredState"], "Killed");
  report("node-a", taskId, 2, "Finished", 143);
  json job = waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  EXPECT_EQ(call("GET", "/v1/tasks/" + taskId)["reason"], "killed");
}

TEST_F(ApiTest, ServiceCapacityUpdatesAndBatchRefusesThem) {
  json service = batchJob();
  service.erase("batch");
  service["service"] = {{"capacity", {{"min", 1}, {"desired", 2}, {"max", 5}}}};
  std::string id = createJob(service);
  json capacity = {{"desired", 4}};
  json updated = call("PUT", "/v1/jobs/" + id + "/capacity", &capacity);
  EXPECT_EQ(updated["capacity"]["desired"], 4);
  waitForJob(id, [](const json& j) { return j["taskCounts"]["Accepted"] == 4; });
  json bad = {{"desired", 9}};
  call("PUT", "/v1/jobs/" + id + "/capacity", &bad, 400);
  EXPECT_EQ(call("POST", "/v1/jobs/" + id + "/disable")["enabled"], false);
  EXPECT_EQ(call("POST", "/v1/jobs/" + id + "/enable")["enabled"], true);
  std::string batchId = createJob(batchJob());
  call("PUT", "/v1/jobs/" + batchId + "/capacity", &capacity, 412);
}

TEST_F(ApiTest, DrainedNodeGetsNoNewTasks) {
  registerNode("node-a");
  call("POST", "/v1/nodes/node-a/drain");
  std::string id = createJob(batchJob());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(call("GET", "/v1/jobs/" + id)["taskCounts"]["Accepted"], 1);
  EXPECT_EQ(call("GET", "/v1/nodes")["items"][0]["state"], "Draining");
}

TEST_F(ApiTest, EventStreamSendsSnapshotMarkerThenUpdates) {
  std::string id = createJob(batchJob());
  std::vector<json> events;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto other = skiffd_.client();
    other->call("POST", "/v1/jobs/" + id + "/kill", nullptr);
  });
  auto streamed = api_->stream("/v1/events?jobId=" + id, [&](std::string_view line) {
    events.push_back(json::parse(line));
    const json& last = events.back();
    return !(last["type"] == "update" && last["kind"] == "job" &&
             last["object"]["status"]["state"] == "Finished");
  });
  killer.join();
  ASSERT_TRUE(streamed) << streamed.error().message();
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events[0]["type"], "snapshot");
  EXPECT_EQ(events[1]["type"], "snapshot");
  EXPECT_EQ(events[2]["type"], "snapshotEnd");
  EXPECT_EQ(events.back()["object"]["status"]["reason"], "killed");
  int64_t marker = events[2]["revision"];
  for (size_t i = 3; i < events.size(); ++i) {
    if (events[i]["type"] == "update") {
      EXPECT_GT(events[i]["revision"].get<int64_t>(), marker);
    }
  }
}

TEST_F(ApiTest, EventStreamReplaysFromRevision) {
  std::string id = createJob(batchJob());
  json job = call("GET", "/v1/jobs/" + id);
  int64_t created = job["revision"];
  call("POST", "/v1/jobs/" + id + "/kill", nullptr, 202);
  waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  std::vector<json> updates;
  auto streamed = api_->stream(
      "/v1/events?fromRevision=" + std::to_string(created + 1), [&](std::string_view line) {
        json event = json::parse(line);
        if (event["type"] == "update") updates.push_back(event);
        return !(event["kind"] == "job" && event["object"]["status"]["state"] == "Finished");
      });
  ASSERT_TRUE(streamed);
  ASSERT_FALSE(updates.empty());
  EXPECT_GT(updates.front()["revision"].get<int64_t>(), created);
}

TEST_F(ApiTest, JobsSurviveRestart) {
  std::string id = createJob(batchJob(3));
  skiffd_.stop();
  ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
  api_ = skiffd_.client();
  json job = call("GET", "/v1/jobs/" + id);
  EXPECT_EQ(job["taskCounts"]["Accepted"], 3);
}

}  // namespace
}  // namespace skiff::testing
