// skiffd on the etcd store (`--store etcd://...`) against a private etcd member: a job runs to
// completion through an agent (played by the test, as in api_test.cpp), and every acknowledged
// job is still there after skiffd is killed with SIGKILL and restarted.

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "skiffd_process.h"
#include "testing/etcd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;

json batchJob(int size) {
  return {{"applicationName", "etcd-it"},
          {"owner", {{"teamEmail", "team@example.com"}}},
          {"container",
           {{"image", "busybox:1.36"},
            {"command", {"true"}},
            {"resources", {{"cpu", 0.5}, {"memoryMB", 64}}}}},
          {"batch", {{"size", size}, {"retryPolicy", {{"immediate", {{"retries", 0}}}}}}}};
}

class EtcdSkiffdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(etcd_.start()) << etcd_.error();
    skiffd_ = std::make_unique<SkiffdProcess>(std::vector<std::string>{"--store", etcd_.spec()});
    ASSERT_TRUE(skiffd_->start()) << skiffd_->error();
  }

  json call(std::string_view method, std::string_view target, const json* body = nullptr,
            long expectStatus = 200) {
    auto api = skiffd_->client();
    auto response = api->call(method, target, body);
    EXPECT_TRUE(response.has_value()) << (response ? "" : response.error().message());
    if (!response) return nullptr;
    EXPECT_EQ(response->status, expectStatus) << method << " " << target << ": " << response->body;
    return response->body;
  }

  void asAgent(std::string_view method, const std::string& target, const json& body) {
    auto agent = skiffd_->client(skiffd_->joinToken());
    auto response = agent->call(method, target, &body);
    ASSERT_TRUE(response && (response->status == 200 || response->status == 201))
        << target << ": " << (response ? response->body.dump() : response.error().message());
  }

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

  EtcdProcess etcd_;
  std::unique_ptr<SkiffdProcess> skiffd_;
};

TEST_F(EtcdSkiffdTest, JobRunsToCompletionAndEveryJobSurvivesKill9) {
  json job = batchJob(2);
  std::string id = call("POST", "/v1/jobs", &job, 201).value("id", "");
  ASSERT_FALSE(id.empty());
  asAgent(
      "POST", "/v1/nodes",
      {{"id", "node-a"},
       {"resources", {{"cpu", 4}, {"memoryMB", 8192}, {"diskMB", 100000}, {"networkMbps", 1000}}},
       {"attributes", {{"zone", "z1"}}}});
  waitForJob(id, [](const json& j) { return j["taskCounts"]["Launched"] == 2; });
  auto agent = skiffd_->client(skiffd_->joinToken());
  auto assignments = agent->call("GET", "/v1/nodes/node-a/assignments?waitMs=0", nullptr);
  ASSERT_TRUE(assignments);
  ASSERT_EQ(assignments->body["assignments"].size(), 2u);
  for (const auto& assignment : assignments->body["assignments"]) {
    std::string taskId = assignment["task"]["id"];
    int64_t seq = 0;
    for (const char* state : {"StartInitiated", "Started", "Finished"}) {
      json update = {{"taskId", taskId}, {"seq", ++seq}, {"state", state}};
      if (std::string(state) == "Finished") update["exitCode"] = 0;
      asAgent("POST", "/v1/nodes/node-a/taskStatus", {{"updates", json::array({update})}});
    }
  }
  json finished = waitForJob(id, [](const json& j) { return j["status"]["state"] == "Finished"; });
  EXPECT_EQ(finished["status"]["reason"], "normal");

  // A job acknowledged just before the crash.
  json second = batchJob(1);
  std::string secondId = call("POST", "/v1/jobs", &second, 201).value("id", "");
  ASSERT_FALSE(secondId.empty());
  skiffd_->kill9();
  ASSERT_TRUE(skiffd_->start()) << skiffd_->error();

  json again = call("GET", "/v1/jobs/" + id);
  EXPECT_EQ(again["status"]["state"], "Finished");
  json secondAgain = call("GET", "/v1/jobs/" + secondId);
  EXPECT_EQ(secondAgain.value("id", ""), secondId);
  // The state lives in etcd, not in the state directory.
  EXPECT_FALSE(std::filesystem::exists(skiffd_->stateDir() + "/skiff.db"));
}

TEST(EtcdSkiffdFlags, BadStoreValueIsRefusedWithTheRule) {
  auto result = runCommand({SkiffdProcess::skiffdPath(), "--state-dir",
                            "/tmp/skiff-it-bad-store-never-created", "--store", "postgres://x"});
  EXPECT_EQ(result.exitCode, 2) << result.out << result.err;
  EXPECT_NE((result.out + result.err).find("--store: must be sqlite or etcd://"), std::string::npos)
      << result.out << result.err;
}

TEST(EtcdSkiffdFlags, UnreachableEtcdFailsNamingTheEndpoint) {
  std::string endpoint = "127.0.0.1:" + std::to_string(unusedLoopbackPort());
  char pattern[] = "/tmp/skiff-it-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  auto result = runCommand({SkiffdProcess::skiffdPath(), "--state-dir", pattern, "--listen",
                            "127.0.0.1:0", "--store", "etcd://" + endpoint});
  std::error_code ignored;
  std::filesystem::remove_all(pattern, ignored);
  EXPECT_EQ(result.exitCode, 1) << result.out << result.err;
  EXPECT_NE((result.out + result.err).find(endpoint), std::string::npos)
      << result.out << result.err;
}

}  // namespace
}  // namespace skiff::testing
