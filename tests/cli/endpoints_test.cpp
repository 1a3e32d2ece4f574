// `skiff job endpoints`: the list as a table or JSON, and the watch's additions and removals.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace skiff::cli::testing {
namespace {

using nlohmann::json;

json endpoint(const std::string& task, const std::string& ip) {
  return {{"taskId", task}, {"ip", ip}, {"nodeId", "node-a"}, {"ports", {8080, 9090}}};
}

TEST(JobEndpointsCommand, ListsReadyTasksAsATable) {
  Harness h;
  h.api.responses.push_back(
      reply(200, {{"jobId", "job-1"}, {"revision", 7}, {"items", {endpoint("t0", "10.64.0.2")}}}));
  EXPECT_EQ(h.run({"job", "endpoints", "job-1"}), 0) << h.err.str();
  ASSERT_EQ(h.api.requests.size(), 1u);
  EXPECT_EQ(h.api.requests[0].target, "/v1/jobs/job-1/endpoints");
  EXPECT_EQ(h.out.str(),
            "TASK   IP          PORTS       NODE\n"
            "t0     10.64.0.2   8080,9090   node-a\n");
}

TEST(JobEndpointsCommand, JsonOutputIsTheApiObject) {
  Harness h;
  json listing = {{"jobId", "job-1"}, {"revision", 7}, {"items", json::array()}};
  h.api.responses.push_back(reply(200, listing));
  EXPECT_EQ(h.run({"-o", "json", "job", "endpoints", "job-1"}), 0) << h.err.str();
  EXPECT_EQ(json::parse(h.out.str()), listing);
}

TEST(JobEndpointsCommand, WatchPrintsTheSnapshotThenAdditionsAndRemovals) {
  Harness h;
  h.api.streams.push_back({{
      json{{"type", "snapshot"}, {"items", {endpoint("t0", "10.64.0.2")}}, {"revision", 3}}.dump(),
      json{{"type", "keepalive"}}.dump(),
      json{{"type", "added"}, {"endpoint", endpoint("t1", "10.64.0.3")}, {"revision", 4}}.dump(),
      json{{"type", "removed"}, {"taskId", "t0"}, {"revision", 5}}.dump(),
  }});
  EXPECT_EQ(h.run({"job", "endpoints", "--watch", "job-1"}), 0) << h.err.str();
  EXPECT_EQ(h.api.streamTargets, (std::vector<std::string>{"/v1/jobs/job-1/endpoints?watch=true"}));
  EXPECT_EQ(h.out.str(),
            "  t0 10.64.0.2 8080,9090 node-a\n"
            "+ t1 10.64.0.3 8080,9090 node-a\n"
            "- t0\n");
}

TEST(JobEndpointsCommand, UnknownJobIsAnError) {
  Harness h;
  h.api.responses.push_back(errorReply(404, "NotFound", "job job-9 not found"));
  EXPECT_NE(h.run({"job", "endpoints", "job-9"}), 0);
  EXPECT_THAT(h.err.str(), ::testing::HasSubstr("job job-9 not found"));
}

}  // namespace
}  // namespace skiff::cli::testing
