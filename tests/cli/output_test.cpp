#include "cli/output.h"

#include <gtest/gtest.h>

#include "cli/util.h"

namespace skiff::cli {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'100'000;

TEST(TableTest, AlignsColumnsWithoutTrailingBlanks) {
  Table table({"ID", "NAME", "AGE"});
  table.addRow({"job-1", "a", "5s"});
  table.addRow({"j", "longer-name", "10m"});
  EXPECT_EQ(table.render(),
            "ID      NAME          AGE\n"
            "job-1   a             5s\n"
            "j       longer-name   10m\n");
}

TEST(TableTest, PadsShortRowsAndSanitizesCells) {
  Table table({"A", "B"});
  table.addRow({"x"});
  table.addRow({"evil\x1b[31m", "tab\there", "dropped"});
  EXPECT_EQ(table.render(),
            "A           B\n"
            "x           \n"
            "evil?[31m   tab?here\n");
}

TEST(TableTest, CountsUtf8CodePointsAsOneColumn) {
  Table table({"N", "X"});
  table.addRow({"\xc3\xa9t\xc3\xa9", "1"});  // "été": 3 columns, 5 bytes.
  EXPECT_EQ(table.render(),
            "N     X\n"
            "\xc3\xa9t\xc3\xa9   1\n");
}

TEST(FormatAgeTest, OneUnit) {
  EXPECT_EQ(formatAge(0), "0s");
  EXPECT_EQ(formatAge(-5000), "0s");
  EXPECT_EQ(formatAge(59'999), "59s");
  EXPECT_EQ(formatAge(119'000), "119s");
  EXPECT_EQ(formatAge(120'000), "2m");
  EXPECT_EQ(formatAge(120 * 60'000 - 1), "119m");
  EXPECT_EQ(formatAge(3 * 3600'000 - 1), "2h");
  EXPECT_EQ(formatAge(3 * 3600'000), "3h");
  EXPECT_EQ(formatAge(5 * 86400'000LL), "5d");
}

TEST(OutputFormatTest, Parse) {
  EXPECT_EQ(parseOutputFormat("table"), OutputFormat::kTable);
  EXPECT_EQ(parseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(parseOutputFormat("yaml"), OutputFormat::kYaml);
  EXPECT_EQ(parseOutputFormat("xml"), std::nullopt);
}

TEST(RenderJobsTest, Columns) {
  json batch = {
      {"id", "job-1"},
      {"descriptor", {{"name", "train"}, {"batch", {{"size", 3}}}}},
      {"status", {{"state", "Accepted"}}},
      {"type", "batch"},
      {"createdAtMs", kNow - 90'000},
      {"taskCounts", {{"Accepted", 1}, {"Launched", 0}, {"Started", 2}, {"Finished", 0}}}};
  json service = {{"id", "job-22"},
                  {"descriptor", {{"name", "web"}, {"service", json::object()}}},
                  {"status", {{"state", "Accepted"}}},
                  {"enabled", false},
                  {"createdAtMs", kNow - 7200'000},
                  {"taskCounts", json::object()}};
  EXPECT_EQ(renderJobs({batch, service}, kNow),
            "ID       NAME    TYPE      STATE                 TASKS                   AGE\n"
            "job-1    train   batch     Accepted              1 accepted, 2 started   90s\n"
            "job-22   web     service   Accepted (disabled)   none                    2h\n");
}

TEST(RenderJobsTest, ToleratesMissingFields) {
  EXPECT_EQ(renderJobs({json::object(), json("not an object")}, kNow),
            "ID   NAME   TYPE   STATE   TASKS   AGE\n"
            "-    -      -      -       -       -\n"
            "-    -      -      -       -       -\n");
}

TEST(RenderTasksTest, Columns) {
  json task = {{"id", "job-1-0-1"},
               {"jobId", "job-1"},
               {"index", 0},
               {"state", "Finished"},
               {"reason", "failed"},
               {"message", "exit code 3"},
               {"nodeId", "node-a"},
               {"stateTimesMs", {{"Accepted", kNow - 30'000}, {"Finished", kNow - 1000}}}};
  json fresh = {
      {"id", "job-1-1-0"}, {"jobId", "job-1"}, {"index", 1}, {"state", "Accepted"}, {"reason", ""}};
  EXPECT_EQ(renderTasks({task, fresh}, kNow),
            "ID          JOB     INDEX   STATE      REASON   NODE     AGE   MESSAGE\n"
            "job-1-0-1   job-1   0       Finished   failed   node-a   30s   exit code 3\n"
            "job-1-1-0   job-1   1       Accepted   -        -        -     -\n");
}

TEST(RenderNodesTest, Columns) {
  json node = {{"id", "node-a"},
               {"state", "Ready"},
               {"resources", {{"cpu", 2}, {"memoryMB", 4096}}},
               {"allocated", {{"cpu", 1.5}, {"memoryMB", 1024}}},
               {"taskCount", 3},
               {"lastHeartbeatMs", kNow - 4000}};
  EXPECT_EQ(renderNodes({node}, kNow),
            "ID       STATE   CPU     MEMORY        TASKS   HEARTBEAT\n"
            "node-a   Ready   1.5/2   1024/4096MB   3       4s\n");
}

TEST(SummarizeTaskCountsTest, StateOrderAndWords) {
  EXPECT_EQ(summarizeTaskCounts(
                {{"Finished", 3}, {"StartInitiated", 1}, {"KillInitiated", 2}, {"Accepted", 0}}),
            "1 starting, 2 killing, 3 finished");
  EXPECT_EQ(summarizeTaskCounts(json::object()), "none");
}

TEST(RenderValueTest, JsonAndYaml) {
  json value = {{"id", "job-1"}, {"n", 2}};
  EXPECT_EQ(renderValue(value, OutputFormat::kJson), "{\n  \"id\": \"job-1\",\n  \"n\": 2\n}\n");
  EXPECT_EQ(renderValue(value, OutputFormat::kYaml), "id: job-1\nn: 2\n");
}

TEST(DescribeEventTest, CompactLines) {
  json task = {{"type", "update"},
               {"kind", "task"},
               {"revision", 57},
               {"object",
                {{"id", "job-1-0-0"},
                 {"state", "Finished"},
                 {"reason", "failed"},
                 {"nodeId", "node-a"},
                 {"message", "exit code 3"}}}};
  EXPECT_EQ(describeEvent(task), "57 update task job-1-0-0 Finished failed on node-a: exit code 3");
  json job = {{"type", "snapshot"},
              {"kind", "job"},
              {"revision", 3},
              {"object", {{"id", "job-1"}, {"status", {{"state", "Accepted"}, {"reason", ""}}}}}};
  EXPECT_EQ(describeEvent(job), "3 snapshot job job-1 Accepted");
  EXPECT_EQ(describeEvent({{"type", "snapshotEnd"}, {"revision", 9}}), "9 snapshotEnd");
  EXPECT_EQ(describeEvent({{"type", "keepalive"}}), "");
}

TEST(UtilTest, UrlEncode) {
  EXPECT_EQ(urlEncode("job-1_a.b~"), "job-1_a.b~");
  EXPECT_EQ(urlEncode("a b/c?d&e=f"), "a%20b%2Fc%3Fd%26e%3Df");
  EXPECT_EQ(urlEncode("\xc3\xa9"), "%C3%A9");
}

TEST(UtilTest, TrimAndSanitize) {
  EXPECT_EQ(trim("  a b \n"), "a b");
  EXPECT_EQ(trim(" \t\n"), "");
  EXPECT_EQ(sanitize("ok\r\n\x1b\x7f"), "ok????");
  EXPECT_EQ(sanitize("caf\xc3\xa9"), "caf\xc3\xa9");
}

}  // namespace
}  // namespace skiff::cli
