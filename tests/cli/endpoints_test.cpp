// Service commands: `skiff job endpoints` (the list as a table or JSON, and the watch's additions
// and removals), `job update`, `job history`, `job rollback` and `job promote`.

#include <filesystem>
#include <fstream>

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

TEST(JobRolloutCommands, UpdateSendsTheContainerOfTheJobFile) {
  Harness h;
  std::string path = (std::filesystem::temp_directory_path() / "skiff-update-test.yaml").string();
  std::ofstream(path) << "applicationName: web\nowner: {teamEmail: a@b.co}\n"
                         "container: {image: busybox:1.37, ports: [8080]}\n"
                         "service: {capacity: {desired: 2, max: 2}}\n";
  h.api.responses.push_back(reply(200, {{"id", "job-1"}, {"specRevision", 2}, {"rollout", {}}}));
  EXPECT_EQ(h.run({"job", "update", "job-1", path}), 0) << h.err.str();
  std::filesystem::remove(path);
  ASSERT_EQ(h.api.requests.size(), 1u);
  EXPECT_EQ(h.api.requests[0].method, "PUT");
  EXPECT_EQ(h.api.requests[0].target, "/v1/jobs/job-1/container");
  EXPECT_EQ(h.api.requests[0].body["image"]["tag"], "1.37");
  EXPECT_EQ(h.api.requests[0].body["ports"], json::array({8080}));
  EXPECT_EQ(h.out.str(), "job-1: revision 2, rolling out\n");
}

TEST(JobRolloutCommands, RollbackSendsTheRevisionWhenGiven) {
  Harness h;
  h.api.responses.push_back(reply(200, {{"id", "job-1"}, {"specRevision", 1}}));
  h.api.responses.push_back(reply(200, {{"id", "job-1"}, {"specRevision", 3}}));
  EXPECT_EQ(h.run({"job", "rollback", "job-1"}), 0) << h.err.str();
  EXPECT_EQ(h.run({"job", "rollback", "job-1", "3"}), 0) << h.err.str();
  ASSERT_EQ(h.api.requests.size(), 2u);
  EXPECT_EQ(h.api.requests[0].target, "/v1/jobs/job-1/rollback");
  EXPECT_EQ(h.api.requests[0].body, json::object());
  EXPECT_EQ(h.api.requests[1].body, json({{"revision", 3}}));
  EXPECT_EQ(h.out.str(),
            "job-1: rolling back to revision 1\n"
            "job-1: rolling back to revision 3\n");
}

TEST(JobRolloutCommands, HistoryListsRevisionsNewestFirst) {
  Harness h;
  h.api.responses.push_back(reply(200, {{"jobId", "job-1"},
                                        {"items",
                                         {{{"revision", 2},
                                           {"outcome", "rolledBack"},
                                           {"tasks", 0},
                                           {"image", "busybox:broken"},
                                           {"pinnedImage", ""},
                                           {"createdAtMs", 1'700'000'000'000},
                                           {"message", "task t ended"}},
                                          {{"revision", 1},
                                           {"outcome", "current"},
                                           {"tasks", 2},
                                           {"image", "busybox:1.36"},
                                           {"pinnedImage", "busybox@sha256:ab"},
                                           {"createdAtMs", 1'700'000'000'000},
                                           {"message", ""}}}}}));
  EXPECT_EQ(h.run({"job", "history", "job-1"}), 0) << h.err.str();
  EXPECT_EQ(h.api.requests[0].target, "/v1/jobs/job-1/history");
  std::string out = h.out.str();
  EXPECT_THAT(out, ::testing::StartsWith("REVISION   OUTCOME"));
  EXPECT_THAT(out, ::testing::HasSubstr("rolledBack"));
  EXPECT_LT(out.find("rolledBack"), out.find("current"));
  EXPECT_THAT(out, ::testing::HasSubstr("busybox@sha256:ab"));
}

TEST(JobRolloutCommands, PromotePostsToThePromoteRoute) {
  Harness h;
  h.api.responses.push_back(reply(200, {{"id", "job-1"}}));
  EXPECT_EQ(h.run({"job", "promote", "job-1"}), 0) << h.err.str();
  EXPECT_EQ(h.api.requests[0].method, "POST");
  EXPECT_EQ(h.api.requests[0].target, "/v1/jobs/job-1/promote");
}

}  // namespace
}  // namespace skiff::cli::testing
