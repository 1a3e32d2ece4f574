// The real skiffd over HTTP: node address blocks, security groups (API and `skiff sg`), task
// addresses, and the agents' network view long poll.

#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "skiffd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class NetworkApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
    admin_ = skiffd_.client();
    agent_ = skiffd_.client(skiffd_.joinToken());
  }

  json call(client::ApiClient& client, std::string_view method, const std::string& target,
            const json* body, long expectStatus) {
    auto response = client.call(method, target, body);
    EXPECT_TRUE(response.has_value()) << (response ? "" : response.error().message());
    if (!response) return nullptr;
    EXPECT_EQ(response->status, expectStatus) << method << " " << target << ": " << response->body;
    return response->body;
  }

  json registerNode(const std::string& id) {
    json node = {{"id", id}, {"resources", {{"cpu", 4}, {"memoryMB", 8192}}}};
    auto response = agent_->call("POST", "/v1/nodes", &node);
    EXPECT_TRUE(response && response->ok()) << (response ? response->body.dump() : "");
    return response ? response->body : json();
  }

  SkiffdProcess skiffd_{{"--vpc-cidr", "10.70.0.0/16", "--node-block-prefix", "26"}};
  std::unique_ptr<client::ApiClient> admin_;
  std::unique_ptr<client::ApiClient> agent_;
};

TEST_F(NetworkApiTest, NodesGetDistinctBlocksThatSurviveReRegistration) {
  json first = registerNode("n1");
  json second = registerNode("n2");
  EXPECT_EQ(first["network"]["block"], "10.70.0.0/26");
  EXPECT_EQ(second["network"]["block"], "10.70.0.64/26");
  EXPECT_EQ(registerNode("n1")["network"]["block"], "10.70.0.0/26");
  // The address skiffd saw the registration come from is where other nodes route the block.
  EXPECT_EQ(first["attributes"]["hostAddress"], "127.0.0.1");
  EXPECT_EQ(first["attributes"]["addresses"], "62");  // The scheduler's address cap.
  skiffd_.stop();
  ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
  agent_ = skiffd_.client(skiffd_.joinToken());
  EXPECT_EQ(registerNode("n2")["network"]["block"], "10.70.0.64/26");
}

TEST_F(NetworkApiTest, SecurityGroupCrudWithFieldErrors) {
  json listing = call(*admin_, "GET", "/v1/security-groups", nullptr, 200);
  ASSERT_EQ(listing["items"].size(), 1u);
  EXPECT_EQ(listing["items"][0]["name"], "default");

  json web = {{"name", "web"},
              {"ingress", {{{"protocol", "tcp"}, {"fromPort", 443}, {"sourceCidr", "0.0.0.0/0"}}}}};
  call(*admin_, "POST", "/v1/security-groups", &web, 201);
  call(*admin_, "POST", "/v1/security-groups", &web, 409);
  json bad = {{"name", "bad"}, {"ingress", {{{"protocol", "tcp"}, {"fromPort", 0}}}}};
  json error = call(*admin_, "POST", "/v1/security-groups", &bad, 400);
  EXPECT_NE(error.dump().find("ingress[0].fromPort"), std::string::npos) << error;
  EXPECT_NE(error.dump().find("sourceCidr and sourceGroup"), std::string::npos) << error;

  json changed = {{"ingress", {{{"protocol", "all"}, {"sourceGroup", "web"}}}}};
  call(*admin_, "PUT", "/v1/security-groups/web", &changed, 200);
  std::this_thread::sleep_for(100ms);  // The view follows the store's watch.
  json got = call(*admin_, "GET", "/v1/security-groups/web", nullptr, 200);
  EXPECT_EQ(got["ingress"][0]["sourceGroup"], "web");
  call(*admin_, "DELETE", "/v1/security-groups/web", nullptr, 200);
  call(*admin_, "DELETE", "/v1/security-groups/web", nullptr, 404);
  // Agents cannot change groups.
  call(*agent_, "PUT", "/v1/security-groups/web", &changed, 403);
}

TEST_F(NetworkApiTest, JobNamingAnUnknownSecurityGroupIsRefusedWithItsFieldPath) {
  json job = {{"applicationName", "app"},
              {"owner", {{"teamEmail", "t@example.com"}}},
              {"container",
               {{"image", "busybox:1.36"},
                {"command", {"true"}},
                {"securityProfile", {{"securityGroups", {"default", "web"}}}}}},
              {"batch", {{"size", 1}}}};
  json error = call(*admin_, "POST", "/v1/jobs", &job, 400);
  EXPECT_NE(error.dump().find("container.securityProfile.securityGroups[1]"), std::string::npos)
      << error;
  EXPECT_NE(error.dump().find("security group web does not exist"), std::string::npos) << error;
  // A group created a moment before the job is known at once.
  json web = {{"name", "web"}, {"ingress", json::array()}};
  call(*admin_, "POST", "/v1/security-groups", &web, 201);
  call(*admin_, "POST", "/v1/jobs", &job, 201);
}

TEST_F(NetworkApiTest, NetworkViewLongPollAnswersAsSoonAsAGroupChanges) {
  registerNode("n1");
  // The view follows the store's watch, so the registration shows up a moment after its answer.
  json now;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    now = call(*agent_, "GET", "/v1/network?afterRevision=0&waitMs=0", nullptr, 200);
    if (now["nodes"].size() == 1u) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  int64_t revision = now["revision"].get<int64_t>();
  ASSERT_EQ(now["nodes"].size(), 1u);
  EXPECT_EQ(now["nodes"][0]["block"], "10.70.0.0/26");

  auto waiter = skiffd_.client(skiffd_.joinToken());
  auto started = std::chrono::steady_clock::now();
  auto poll = std::async(std::launch::async, [&] {
    return waiter->call(
        "GET", "/v1/network?afterRevision=" + std::to_string(revision) + "&waitMs=10000", nullptr);
  });
  std::this_thread::sleep_for(200ms);
  json group = {{"name", "api"},
                {"ingress", {{{"protocol", "tcp"}, {"fromPort", 80}, {"sourceGroup", "api"}}}}};
  auto changedAt = std::chrono::steady_clock::now();
  call(*admin_, "PUT", "/v1/security-groups/api", &group, 200);
  auto answer = poll.get();
  auto latency = std::chrono::steady_clock::now() - changedAt;
  ASSERT_TRUE(answer && answer->ok());
  EXPECT_GT(answer->body["revision"].get<int64_t>(), revision);
  EXPECT_LT(latency, 1s);
  EXPECT_GT(changedAt - started, 150ms);  // It really waited before the change.
  bool found = false;
  for (const json& item : answer->body["securityGroups"]) found = found || item["name"] == "api";
  EXPECT_TRUE(found) << answer->body;
}

TEST_F(NetworkApiTest, CliAppliesListsAndDeletesSecurityGroups) {
  std::string file = skiffd_.stateDir() + "/sg.yaml";
  FILE* out = std::fopen(file.c_str(), "w");
  ASSERT_NE(out, nullptr);
  std::fputs("name: cache\ningress:\n  - protocol: tcp\n    fromPort: 6379\n    sourceGroup: web\n",
             out);
  std::fclose(out);
  std::vector<std::string> env = {"SKIFF_ADDR=" + skiffd_.address(),
                                  "SKIFF_TOKEN=" + skiffd_.adminToken()};
  auto applied = runCommand({SkiffdProcess::skiffCliPath(), "sg", "apply", file}, env);
  EXPECT_EQ(applied.exitCode, 0) << applied.err;
  std::this_thread::sleep_for(100ms);
  auto listed = runCommand({SkiffdProcess::skiffCliPath(), "sg", "ls"}, env);
  EXPECT_EQ(listed.exitCode, 0) << listed.err;
  EXPECT_NE(listed.out.find("tcp 6379 from group web"), std::string::npos) << listed.out;
  auto deleted = runCommand({SkiffdProcess::skiffCliPath(), "sg", "delete", "cache"}, env);
  EXPECT_EQ(deleted.exitCode, 0) << deleted.err;
}

}  // namespace
}  // namespace skiff::testing
