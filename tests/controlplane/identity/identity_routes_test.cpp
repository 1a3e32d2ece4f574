// The identity endpoints over real HTTP (http::Server on loopback) with a fake task directory.

#include "controlplane/identity/identity_routes.h"

#include <map>
#include <memory>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client/client.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "controlplane/tokens.h"

namespace skiff::identity {
namespace {

using nlohmann::json;

class FakeTaskDirectory final : public TaskDirectory {
 public:
  std::map<std::string, TaskRecordView> tasks;
  boost::asio::awaitable<Result<TaskRecordView>> lookup(std::string taskId) override {
    auto it = tasks.find(taskId);
    if (it == tasks.end()) co_return fail(ErrorCode::kNotFound, "no such task");
    co_return it->second;
  }
};

class IdentityRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys = std::move(*KeyRing::inMemory(clock));
    service = std::make_unique<IdentityService>(*keys, clock);
    issuer = std::make_unique<SkiffRoleCredentialIssuer>(*keys, clock);
    directory.tasks["t-live"] = {{"t-live", "job-1", "billing", "billing-role", "", "node-a"},
                                 "Started"};
    directory.tasks["t-done"] = {{"t-done", "job-1", "billing", "billing-role", "", "node-a"},
                                 "Finished"};
    directory.tasks["t-norole"] = {{"t-norole", "job-2", "web", "", "", "node-a"}, "Started"};
    directory.tasks["t-recorded"] = {
        {"t-recorded", "job-1", "billing", "billing-role", "10.64.0.9", "node-a"}, "Started"};
    api = std::make_unique<IdentityApi>(IdentityApi{
        *keys, *service, *issuer, directory, [this](std::string_view authorization) {
          return !controlplane::authenticate(tokens, http::Access::kAgent, authorization);
        }});
    registerIdentityRoutes(router, *api);
    server = std::make_unique<http::Server>(
        io, router, [this](http::Access access, std::string_view authorization) {
          return controlplane::authenticate(tokens, access, authorization);
        });
    ASSERT_TRUE(server->listen("127.0.0.1", 0));
    thread = std::thread([this] { io.run(); });
    address = "http://127.0.0.1:" + std::to_string(server->port());
  }
  void TearDown() override {
    server->stop();
    work.reset();
    io.stop();
    if (thread.joinable()) thread.join();
  }

  client::ApiResponse call(const std::string& token, std::string_view method,
                           std::string_view target, const json& body) {
    client::ApiClient client(address, token);
    auto response = client.call(method, target, &body);
    EXPECT_TRUE(response) << response.error().message();
    return response ? *response : client::ApiResponse{};
  }

  ManualClock clock;
  controlplane::Tokens tokens{"admin-token-0123456789", "join-token-0123456789"};
  std::unique_ptr<KeyRing> keys;
  std::unique_ptr<IdentityService> service;
  std::unique_ptr<SkiffRoleCredentialIssuer> issuer;
  FakeTaskDirectory directory;
  std::unique_ptr<IdentityApi> api;
  http::Router router;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<http::Server> server;
  std::thread thread;
  std::string address;
};

TEST_F(IdentityRoutesTest, JwksIsPublic) {
  client::ApiClient client(address, "");
  auto response = client.call("GET", "/v1/identity/jwks", nullptr);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  ASSERT_EQ(response->body["keys"].size(), 1u);
  EXPECT_EQ(response->body["keys"][0]["kid"], keys->active()->kid());
}

TEST_F(IdentityRoutesTest, AgentEndpointsNeedTheAgentToken) {
  json body = {{"nodeId", "node-a"}, {"containerIp", "10.64.0.7"}};
  EXPECT_EQ(call("", "POST", "/v1/identity/tasks/t-live/token", body).status, 401);
  EXPECT_EQ(
      call("wrong-token-0123456789", "POST", "/v1/identity/tasks/t-live/credentials", body).status,
      401);
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/keys/rotate", json::object()).status, 403);
}

TEST_F(IdentityRoutesTest, VerifyUsesTheConnectionsAddress) {
  auto local = service->issueTaskToken({"t-live", "job-1", "billing", "r", "127.0.0.1", "node-a"});
  auto remote = service->issueTaskToken({"t-live", "job-1", "billing", "r", "10.64.0.7", "node-a"});
  auto ok = call("", "POST", "/v1/identity/verify", {{"token", local->token}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body["valid"], true);
  EXPECT_EQ(ok.body["claims"]["task"], "t-live");
  auto stolen = call("", "POST", "/v1/identity/verify", {{"token", remote->token}});
  EXPECT_EQ(stolen.status, 403);
  EXPECT_EQ(stolen.body["error"]["code"], "PermissionDenied");
  auto garbage = call("", "POST", "/v1/identity/verify", {{"token", "a.b.c"}});
  EXPECT_EQ(garbage.status, 401);
  EXPECT_EQ(call("", "POST", "/v1/identity/verify", json::object()).status, 400);
}

TEST_F(IdentityRoutesTest, TokenOfAFinishedTaskIsRefused) {
  auto done = service->issueTaskToken({"t-done", "job-1", "billing", "r", "127.0.0.1", "node-a"});
  auto gone = service->issueTaskToken({"t-gone", "job-1", "billing", "r", "127.0.0.1", "node-a"});
  EXPECT_EQ(call("", "POST", "/v1/identity/verify", {{"token", done->token}}).status, 401);
  EXPECT_EQ(call("", "POST", "/v1/identity/verify", {{"token", gone->token}}).status, 401);
}

TEST_F(IdentityRoutesTest, OnlyATrustedCallerMayNameThePresenter) {
  auto remote = service->issueTaskToken({"t-live", "job-1", "billing", "r", "10.64.0.7", "node-a"});
  json body = {{"token", remote->token}, {"presenterIp", "10.64.0.7"}};
  EXPECT_EQ(call("", "POST", "/v1/identity/verify", body).status, 403);
  EXPECT_EQ(call(tokens.admin, "POST", "/v1/identity/verify", body).status, 200);
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/verify", body).status, 200);
  body["presenterIp"] = "10.64.0.8";
  EXPECT_EQ(call(tokens.admin, "POST", "/v1/identity/verify", body).status, 403);
}

TEST_F(IdentityRoutesTest, AgentGetsATokenForItsLiveTask) {
  auto response = call(tokens.join, "POST", "/v1/identity/tasks/t-live/token",
                       {{"nodeId", "node-a"}, {"containerIp", "10.64.0.7"}});
  ASSERT_EQ(response.status, 200) << response.body.dump();
  auto claims = service->verifyTaskToken(response.body["token"].get<std::string>(), "10.64.0.7");
  ASSERT_TRUE(claims) << claims.error().message();
  EXPECT_EQ((*claims)["role"], "billing-role");
  EXPECT_EQ((*claims)["node"], "node-a");
}

TEST_F(IdentityRoutesTest, TokenRequestsAreCheckedAgainstTheRecord) {
  json body = {{"nodeId", "node-b"}, {"containerIp", "10.64.0.7"}};
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-live/token", body).status, 403);
  body["nodeId"] = "node-a";
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-done/token", body).status, 412);
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-none/token", body).status, 404);
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-recorded/token", body).status, 409);
  EXPECT_EQ(
      call(tokens.join, "POST", "/v1/identity/tasks/t-live/token", {{"nodeId", "node-a"}}).status,
      400);
  auto recorded =
      call(tokens.join, "POST", "/v1/identity/tasks/t-recorded/token", {{"nodeId", "node-a"}});
  ASSERT_EQ(recorded.status, 200);
  EXPECT_TRUE(service->verifyTaskToken(recorded.body["token"].get<std::string>(), "10.64.0.9"));
  body["containerIp"] = 7;
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-live/token", body).status, 400);
}

TEST_F(IdentityRoutesTest, CredentialsOnlyForTheJobsRole) {
  json body = {{"nodeId", "node-a"}};
  auto response = call(tokens.join, "POST", "/v1/identity/tasks/t-live/credentials", body);
  ASSERT_EQ(response.status, 200) << response.body.dump();
  EXPECT_EQ(response.body["Code"], "Success");
  EXPECT_EQ(response.body["Type"], "AWS-HMAC");
  EXPECT_TRUE(response.body["AccessKeyId"].get<std::string>().starts_with("ASIA"));
  body["role"] = "admin-role";
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-live/credentials", body).status, 403);
  body["role"] = "billing-role";
  EXPECT_EQ(call(tokens.join, "POST", "/v1/identity/tasks/t-live/credentials", body).status, 200);
  EXPECT_EQ(
      call(tokens.join, "POST", "/v1/identity/tasks/t-norole/credentials", {{"nodeId", "node-a"}})
          .status,
      404);
}

TEST_F(IdentityRoutesTest, AdminRotatesTheSigningKey) {
  std::string before = keys->active()->kid();
  auto response = call(tokens.admin, "POST", "/v1/identity/keys/rotate", json::object());
  ASSERT_EQ(response.status, 200);
  EXPECT_NE(response.body["kid"], before);
  EXPECT_EQ(response.body["jwks"]["keys"].size(), 2u);
}

}  // namespace
}  // namespace skiff::identity
