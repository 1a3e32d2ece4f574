// Services against the real skiffd on loopback: readiness reports, the endpoints list and its
// watch. The test acts as the node agent.

#include <atomic>
#include <chrono>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "skiffd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;

json servedJob(int desired) {
  return {{"applicationName", "web"},
          {"owner", {{"teamEmail", "team@example.com"}}},
          {"container",
           {{"image", "busybox:1.36"},
            {"command", {"httpd", "-f", "-p", "8080"}},
            {"ports", {8080}},
            {"readiness", {{"http", {{"port", 8080}, {"path", "/"}}}, {"intervalMs", 200}}},
            {"resources", {{"cpu", 0.5}, {"memoryMB", 64}}}}},
          {"service", {{"capacity", {{"desired", desired}, {"max", desired + 2}}}}}};
}

class ServiceApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
    api_ = skiffd_.client();
    agent_ = skiffd_.client(skiffd_.joinToken());
    ASSERT_NO_FATAL_FAILURE(registerNode("node-a"));
  }

  // Registers a node with 8 cores and 8 GiB in zone z1, as its agent would.
  void registerNode(const std::string& id) {
    json node = {
        {"id", id},
        {"resources", {{"cpu", 8}, {"memoryMB", 8192}, {"diskMB", 100000}, {"networkMbps", 1000}}},
        {"attributes", {{"zone", "z1"}}}};
    auto response = agent_->call("POST", "/v1/nodes", &node);
    ASSERT_TRUE(response && response->status == 201) << (response ? response->body.dump() : "");
  }

  json call(std::string_view method, std::string_view target, const json* body = nullptr,
            long expectStatus = 200) {
    auto response = api_->call(method, target, body);
    EXPECT_TRUE(response.has_value()) << (response ? "" : response.error().message());
    if (!response) return nullptr;
    EXPECT_EQ(response->status, expectStatus) << method << " " << target << ": " << response->body;
    return response->body;
  }

  // The agent reports Started for `taskId`, with a readiness verdict when given.
  void report(const std::string& taskId, std::optional<bool> ready, const std::string& ip) {
    json update = {{"taskId", taskId}, {"seq", ++seqs_[taskId]}, {"state", "Started"}, {"ip", ip}};
    if (ready) update["ready"] = *ready;
    json body = {{"updates", json::array({update})}};
    auto response = agent_->call("POST", "/v1/nodes/node-a/taskStatus", &body);
    ASSERT_TRUE(response && response->status == 200) << (response ? response->body.dump() : "");
    EXPECT_EQ(response->body["applied"], 1);
  }

  // The job's task ids once all `count` are placed.
  std::vector<std::string> placedTasks(const std::string& jobId, size_t count) {
    for (int i = 0; i < 500; ++i) {
      json tasks = call("GET", "/v1/tasks?jobId=" + jobId)["items"];
      std::vector<std::string> ids;
      for (const json& task : tasks) {
        if (task["state"] == "Launched") ids.push_back(task["id"]);
      }
      if (ids.size() == count) return ids;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "tasks were never placed";
    return {};
  }

  SkiffdProcess skiffd_;
  std::unique_ptr<client::ApiClient> api_;
  std::unique_ptr<client::ApiClient> agent_;
  std::map<std::string, int64_t> seqs_;
};

TEST_F(ServiceApiTest, EndpointsListOnlyTasksThatReportedReady) {
  json job = servedJob(2);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  auto tasks = placedTasks(id, 2);
  ASSERT_EQ(tasks.size(), 2u);
  report(tasks[0], std::nullopt, "10.64.0.2");
  report(tasks[1], false, "10.64.0.3");
  EXPECT_EQ(call("GET", "/v1/jobs/" + id + "/endpoints")["items"], json::array());
  EXPECT_EQ(call("GET", "/v1/tasks/" + tasks[0])["ready"], false);

  report(tasks[1], true, "10.64.0.3");
  json endpoints = call("GET", "/v1/jobs/" + id + "/endpoints");
  ASSERT_EQ(endpoints["items"].size(), 1u);
  EXPECT_EQ(endpoints["items"][0]["taskId"], tasks[1]);
  EXPECT_EQ(endpoints["items"][0]["ip"], "10.64.0.3");
  EXPECT_EQ(endpoints["items"][0]["ports"], json::array({8080}));
  EXPECT_EQ(endpoints["items"][0]["nodeId"], "node-a");
  EXPECT_EQ(call("GET", "/v1/tasks/" + tasks[1])["ready"], true);
}

TEST_F(ServiceApiTest, EndpointsOfAnUnknownJobAre404AndBadWatchIs400) {
  call("GET", "/v1/jobs/job-000000000000-00000000/endpoints", nullptr, 404);
  json job = servedJob(1);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  call("GET", "/v1/jobs/" + id + "/endpoints?watch=maybe", nullptr, 400);
}

TEST_F(ServiceApiTest, BadReadyValueIsRefused) {
  json job = servedJob(1);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  auto tasks = placedTasks(id, 1);
  ASSERT_EQ(tasks.size(), 1u);
  json body = {
      {"updates", {{{"taskId", tasks[0]}, {"seq", 1}, {"state", "Started"}, {"ready", "yes"}}}}};
  auto response = agent_->call("POST", "/v1/nodes/node-a/taskStatus", &body);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
}

TEST_F(ServiceApiTest, WatchStreamsAdditionsAndRemovalsAfterTheSnapshot) {
  json job = servedJob(2);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  auto tasks = placedTasks(id, 2);
  ASSERT_EQ(tasks.size(), 2u);
  report(tasks[0], true, "10.64.0.2");

  std::vector<json> lines;
  std::thread driver([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    report(tasks[1], true, "10.64.0.3");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto other = skiffd_.client();
    other->call("POST", "/v1/tasks/" + tasks[0] + "/kill", nullptr);
  });
  auto streamed = api_->stream("/v1/jobs/" + id + "/endpoints?watch=true", [&](std::string_view l) {
    lines.push_back(json::parse(l));
    return lines.back()["type"] != "removed";
  });
  driver.join();
  ASSERT_TRUE(streamed) << streamed.error().message();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["type"], "snapshot");
  ASSERT_EQ(lines[0]["items"].size(), 1u);
  EXPECT_EQ(lines[0]["items"][0]["taskId"], tasks[0]);
  EXPECT_EQ(lines[1]["type"], "added");
  EXPECT_EQ(lines[1]["endpoint"]["taskId"], tasks[1]);
  EXPECT_EQ(lines[1]["endpoint"]["ip"], "10.64.0.3");
  EXPECT_EQ(lines[2]["type"], "removed");
  EXPECT_EQ(lines[2]["taskId"], tasks[0]);
  EXPECT_GT(lines[2]["revision"].get<int64_t>(), lines[1]["revision"].get<int64_t>());
}

// A simulated agent on its own thread: starts every Launched task (reporting it ready and a pinned
// image) unless its revision is `failing`, where it exits 1 instead; stops every task being killed.
class FakeAgent {
 public:
  FakeAgent(SkiffdProcess& skiffd, std::string jobId, int64_t failing = 0)
      : admin_(skiffd.client()),
        agent_(skiffd.client(skiffd.joinToken())),
        jobId_(std::move(jobId)),
        failing_(failing),
        thread_([this] { run(); }) {}
  ~FakeAgent() {
    stop_ = true;
    thread_.join();
  }

 private:
  void run() {
    while (!stop_) {
      auto tasks = admin_->call("GET", "/v1/tasks?jobId=" + jobId_, nullptr);
      if (tasks && tasks->status == 200) {
        // Each node reports its own tasks.
        std::map<std::string, json> byNode;
        for (const json& task : tasks->body["items"]) {
          json& updates = byNode[task.value("nodeId", "")];
          if (updates.is_null()) updates = json::array();
          std::string id = task["id"];
          int64_t revision = task.value("specRevision", int64_t{1});
          if (task["state"] == "Launched") {
            if (revision == failing_) {
              updates.push_back({{"taskId", id},
                                 {"seq", ++seqs_[id]},
                                 {"state", "Finished"},
                                 {"exitCode", 1},
                                 {"message", "exit code 1"}});
            } else {
              updates.push_back(
                  {{"taskId", id},
                   {"seq", ++seqs_[id]},
                   {"state", "Started"},
                   {"ready", true},
                   {"ip", "10.64.0." + std::to_string(++ips_ % 250)},
                   {"image", "busybox@sha256:" + std::string(64, revision == 1 ? 'a' : 'b')}});
            }
          } else if (task["state"] == "KillInitiated") {
            updates.push_back(
                {{"taskId", id}, {"seq", ++seqs_[id]}, {"state", "Finished"}, {"exitCode", 0}});
          }
        }
        for (const auto& [node, updates] : byNode) {
          if (node.empty() || updates.empty()) continue;
          json body = {{"updates", updates}};
          agent_->call("POST", "/v1/nodes/" + node + "/taskStatus", &body);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::unique_ptr<client::ApiClient> admin_;
  std::unique_ptr<client::ApiClient> agent_;
  std::string jobId_;
  int64_t failing_;
  std::map<std::string, int64_t> seqs_;
  int ips_ = 1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

json rolledJob(int desired) {
  json job = servedJob(desired);
  job["container"].erase("readiness");
  job["service"]["rollout"] = {{"maxSurge", 1}, {"maxUnavailable", 0}};
  return job;
}

TEST_F(ServiceApiTest, RollingUpdateKeepsEveryEndpointAndRecordsTheHistory) {
  json job = rolledJob(3);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  FakeAgent agent(skiffd_, id);
  auto endpointCount = [&] { return call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size(); };
  for (int i = 0; i < 500 && endpointCount() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(endpointCount(), 3u);
  json container = job["container"];
  container["image"] = "busybox:1.37";
  json updated = call("PUT", "/v1/jobs/" + id + "/container", &container);
  EXPECT_EQ(updated["specRevision"], 2);
  size_t fewest = 3;
  json history;
  for (int i = 0; i < 1000; ++i) {
    fewest = std::min(fewest, endpointCount());
    history = call("GET", "/v1/jobs/" + id + "/history");
    if (history["items"][0]["outcome"] == "current" && !history.contains("rollout")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(fewest, 3u);
  ASSERT_EQ(history["items"].size(), 2u) << history.dump();
  EXPECT_EQ(history["items"][0]["revision"], 2);
  EXPECT_EQ(history["items"][0]["outcome"], "current");
  EXPECT_EQ(history["items"][0]["image"], "busybox:1.37");
  EXPECT_EQ(history["items"][0]["pinnedImage"], "busybox@sha256:" + std::string(64, 'b'));
  EXPECT_EQ(history["items"][0]["tasks"], 3);
  EXPECT_EQ(history["items"][1]["outcome"], "superseded");
  // An identical container changes nothing; a resource change is refused.
  EXPECT_EQ(call("PUT", "/v1/jobs/" + id + "/container", &container)["specRevision"], 2);
  container["resources"]["cpu"] = 2;
  call("PUT", "/v1/jobs/" + id + "/container", &container, 412);
  container["image"] = "Not An Image";
  json invalid = call("PUT", "/v1/jobs/" + id + "/container", &container, 400);
  EXPECT_EQ(invalid["error"]["details"][0]["field"], "container.image");
}

TEST_F(ServiceApiTest, RolloutToAFailingRevisionRollsBackOnItsOwn) {
  json job = rolledJob(2);
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  FakeAgent agent(skiffd_, id, /*failing=*/2);
  for (int i = 0; i < 500; ++i) {
    if (call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  json container = job["container"];
  container["image"] = "busybox:broken";
  call("PUT", "/v1/jobs/" + id + "/container", &container);
  json history;
  for (int i = 0; i < 500; ++i) {
    history = call("GET", "/v1/jobs/" + id + "/history");
    if (history["items"].size() == 2 && history["items"][0]["outcome"] == "rolledBack" &&
        !history.contains("rollout")) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(history["items"].size(), 2u) << history.dump();
  EXPECT_EQ(history["items"][0]["outcome"], "rolledBack") << history.dump();
  EXPECT_THAT(history["items"][0]["message"].get<std::string>(),
              ::testing::HasSubstr("ended before it was healthy"));
  EXPECT_EQ(history["items"][1]["outcome"], "current");
  EXPECT_EQ(history["specRevision"], 1);
  EXPECT_EQ(call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size(), 2u);
}

TEST_F(ServiceApiTest, PushedCpuMetricScalesTheServiceAndTheDecisionIsInTheJob) {
  json job = servedJob(2);
  job["container"].erase("readiness");
  job["service"]["capacity"] = {{"min", 1}, {"desired", 2}, {"max", 6}};
  job["service"]["autoscaling"] = {
      {"policies", {{{"targetTracking", {{"metric", "cpu"}, {"target", 50}}}}}}};
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  FakeAgent agent(skiffd_, id);
  for (int i = 0; i < 500; ++i) {
    if (call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Agents (join token) and collectors may push; the values are validated.
  json metrics = {{"metrics", {{"cpu", 100}}}};
  auto pushed = agent_->call("POST", "/v1/jobs/" + id + "/metrics", &metrics);
  ASSERT_TRUE(pushed && pushed->status == 200) << (pushed ? pushed->body.dump() : "");
  EXPECT_EQ(pushed->body["capacity"]["desired"], 4);
  EXPECT_EQ(pushed->body["autoscaling"]["lastDecision"]["decision"], "scale out");
  EXPECT_EQ(pushed->body["autoscaling"]["lastDecision"]["proposals"][0]["value"], 100.0);
  for (int i = 0; i < 500; ++i) {
    if (call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size() == 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size(), 4u);
  json bad = {{"metrics", {{"cpu%", 1}}}};
  call("POST", "/v1/jobs/" + id + "/metrics", &bad, 400);
  json plain = servedJob(1);
  std::string plainId = call("POST", "/v1/jobs", &plain, 201)["id"];
  call("POST", "/v1/jobs/" + plainId + "/metrics", &metrics, 412);
}

TEST_F(ServiceApiTest, DrainMovesBatchTasksAtItsDeadlineWithoutUsingTheirRetries) {
  json job = servedJob(1);
  job["container"].erase("readiness");
  job["container"].erase("ports");
  job.erase("service");
  job["batch"] = {{"size", 2}, {"retryPolicy", {{"immediate", {{"retries", 0}}}}}};
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  FakeAgent agent(skiffd_, id);
  auto started = [&](const std::string& node) {
    int n = 0;
    json tasks = call("GET", "/v1/tasks?jobId=" + id);
    for (const json& task : tasks["items"]) {
      n += task["state"] == "Started" && task["nodeId"] == node ? 1 : 0;
    }
    return n;
  };
  for (int i = 0; i < 500 && started("node-a") < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(started("node-a"), 2);
  ASSERT_NO_FATAL_FAILURE(registerNode("node-b"));

  json bad = {{"deadlineMs", -5}};
  json refused = call("POST", "/v1/nodes/node-a/drain", &bad, 400);
  EXPECT_NE(refused.dump().find("deadlineMs"), std::string::npos) << refused.dump();
  // With an hour to go the tasks stay; with no time left they move to node-b.
  json later = {{"deadlineMs", 3'600'000}};
  json drained = call("POST", "/v1/nodes/node-a/drain", &later);
  EXPECT_EQ(drained["state"], "Draining");
  EXPECT_GT(drained.value("drainDeadlineMs", int64_t{0}), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(started("node-a"), 2);
  json now = {{"deadlineMs", 0}};
  call("POST", "/v1/nodes/node-a/drain", &now);
  for (int i = 0; i < 500 && started("node-b") < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(started("node-b"), 2);
  json tasks = call("GET", "/v1/tasks?jobId=" + id);
  for (const json& task : tasks["items"]) {
    if (task["nodeId"] == "node-a") {
      EXPECT_EQ(task["reason"], "evicted") << task.dump();
    } else {
      EXPECT_EQ(task["evictionResubmitNumber"], 1) << task.dump();
    }
  }
}

TEST_F(ServiceApiTest, HeartbeatUsageIsValidatedWithItsFieldPath) {
  json good = {{"usage", {{"job-000000000000-00000000-0-0", {{"cpuCores", 0.5}}}}}};
  auto accepted = agent_->call("POST", "/v1/nodes/node-a/heartbeat", &good);
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->status, 200) << accepted->body.dump();
  json negative = {{"usage", {{"t1", {{"cpuCores", -1}}}}}};
  auto refused = agent_->call("POST", "/v1/nodes/node-a/heartbeat", &negative);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.dump().find("usage.t1.cpuCores"), std::string::npos)
      << refused->body.dump();
  json unknown = {{"usages", json::object()}};
  auto unknownField = agent_->call("POST", "/v1/nodes/node-a/heartbeat", &unknown);
  ASSERT_TRUE(unknownField);
  EXPECT_EQ(unknownField->status, 400);
  EXPECT_NE(unknownField->body.dump().find("usages"), std::string::npos);
}

TEST_F(ServiceApiTest, DrainMovesTasksWithinABudgetOfOneUnhealthyTask) {
  json job = rolledJob(3);
  job["service"]["disruptionBudget"] = {{"maxUnhealthy", 1}};
  std::string id = call("POST", "/v1/jobs", &job, 201)["id"];
  FakeAgent agent(skiffd_, id);
  auto endpointCount = [&] { return call("GET", "/v1/jobs/" + id + "/endpoints")["items"].size(); };
  for (int i = 0; i < 500 && endpointCount() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(endpointCount(), 3u);
  ASSERT_NO_FATAL_FAILURE(registerNode("node-b"));
  call("POST", "/v1/nodes/node-a/drain");
  size_t fewest = 3;
  bool moved = false;
  for (int i = 0; i < 1000 && !moved; ++i) {
    fewest = std::min(fewest, endpointCount());
    json tasks = call("GET", "/v1/tasks?jobId=" + id)["items"];
    int onB = 0;
    int liveOnA = 0;
    for (const json& task : tasks) {
      if (task["state"] == "Finished") continue;
      (task["nodeId"] == "node-b" ? onB : liveOnA)++;
    }
    moved = onB == 3 && liveOnA == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(moved);
  EXPECT_GE(fewest, 2u);
  for (int i = 0; i < 500 && endpointCount() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  json endpoints = call("GET", "/v1/jobs/" + id + "/endpoints")["items"];
  ASSERT_EQ(endpoints.size(), 3u);
  for (const json& endpoint : endpoints) EXPECT_EQ(endpoint["nodeId"], "node-b");
}

}  // namespace
}  // namespace skiff::testing
