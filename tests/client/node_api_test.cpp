// NodeApi against a recording Api: the endpoint and body each node-side call sends.

#include "client/node_api.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace skiff::client {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

struct Sent {
  std::string method;
  std::string target;
  json body;  // Null when none was sent.
};

class RecordingApi final : public Api {
 public:
  explicit RecordingApi(std::vector<Sent>& sent) : sent_(sent) {}
  const std::string& address() const override { return address_; }
  Result<ApiResponse> call(std::string_view method, std::string_view target, const json* body,
                           const Headers&) override {
    sent_.push_back({std::string(method), std::string(target), body ? *body : json()});
    return ApiResponse{200, json::object()};
  }
  Result<ApiResponse> stream(std::string_view, const LineHandler&) override {
    return fail(ErrorCode::kUnavailable, "not used");
  }

 private:
  std::vector<Sent>& sent_;
  std::string address_ = "http://skiffd:7070";
};

class NodeApiTest : public ::testing::Test {
 protected:
  std::vector<Sent> sent;
  NodeApi api{std::make_unique<RecordingApi>(sent)};
};

TEST_F(NodeApiTest, RegistrationAndHeartbeats) {
  json registration = {{"id", "node-a"}, {"resources", {{"cpu", 2}}}};
  ASSERT_TRUE(api.registerNode(registration));
  ASSERT_TRUE(api.heartbeat("node-a", json::object()));
  ASSERT_TRUE(api.heartbeat("node-a", {{"t1", {{"cpuCores", 0.5}}}}));
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].method, "POST");
  EXPECT_EQ(sent[0].target, "/v1/nodes");
  EXPECT_EQ(sent[0].body, registration);
  EXPECT_EQ(sent[1].target, "/v1/nodes/node-a/heartbeat");
  EXPECT_EQ(sent[1].body, json::object());
  EXPECT_EQ(sent[2].body, json({{"usage", {{"t1", {{"cpuCores", 0.5}}}}}}));
}

TEST_F(NodeApiTest, LongPollsAndStatusReports) {
  ASSERT_TRUE(api.pollAssignments("node-a", 42, 5000ms));
  ASSERT_TRUE(api.reportTaskStatus("node-a", json::array({{{"taskId", "t1"}, {"seq", 3}}})));
  ASSERT_TRUE(api.pollNetwork(7, 2000ms));
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].method, "GET");
  EXPECT_EQ(sent[0].target, "/v1/nodes/node-a/assignments?delta=true&afterRevision=42&waitMs=5000");
  EXPECT_TRUE(sent[0].body.is_null());
  EXPECT_EQ(sent[1].method, "POST");
  EXPECT_EQ(sent[1].target, "/v1/nodes/node-a/taskStatus");
  EXPECT_EQ(sent[1].body, json({{"updates", {{{"taskId", "t1"}, {"seq", 3}}}}}));
  EXPECT_EQ(sent[2].method, "GET");
  EXPECT_EQ(sent[2].target, "/v1/network?afterRevision=7&waitMs=2000");
}

TEST_F(NodeApiTest, TaskIdentitySendsTheContainerAddressOnlyWhenKnown) {
  ASSERT_TRUE(api.taskToken("t1", {"node-a", ""}));
  ASSERT_TRUE(api.taskCredentials("t1", {"node-a", "10.64.0.7"}, "billing"));
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].target, "/v1/identity/tasks/t1/token");
  EXPECT_EQ(sent[0].body, json({{"nodeId", "node-a"}}));
  EXPECT_EQ(sent[1].target, "/v1/identity/tasks/t1/credentials");
  EXPECT_EQ(sent[1].body,
            json({{"nodeId", "node-a"}, {"containerIp", "10.64.0.7"}, {"role", "billing"}}));
}

}  // namespace
}  // namespace skiff::client
