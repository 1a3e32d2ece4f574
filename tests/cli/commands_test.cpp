// The verbs end to end against a scripted API: arguments, requests, output and exit codes.

#include "cli/commands.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/job.h"
#include "harness.h"

namespace skiff::cli {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using testing::errorReply;
using testing::Harness;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::reply;
using ::testing::StartsWith;
using testing::unreachable;
namespace fs = std::filesystem;

const char* kGoodJob = R"(
applicationName: app
owner: {teamEmail: team@example.com}
container: {image: busybox}
batch: {size: 2}
)";

const char* kBadJob = R"(
applicationName: app
owner: {teamEmail: not-an-email}
container: {image: busybox, resources: {memoryMB: 0}}
batch: {size: 0}
)";

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("skiff-cli-commands-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  std::vector<std::string> errLines() const {
    std::vector<std::string> lines;
    std::istringstream in(h_.err.str());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  fs::path dir_;
  Harness h_;
};

json jobReply(const std::string& id, const std::string& state = "Accepted") {
  return {{"id", id},
          {"descriptor", {{"name", "app"}, {"batch", {{"size", 2}}}}},
          {"status", {{"state", state}}},
          {"type", "batch"},
          {"createdAtMs", 1'700'000'000'000},
          {"taskCounts", {{"Accepted", 2}}}};
}

std::string line(const json& value) {
  return value.dump();
}

json taskEvent(const std::string& type, const std::string& id, int64_t index,
               const std::string& state, const std::string& reason, int64_t revision) {
  return {{"type", type},
          {"kind", "task"},
          {"revision", revision},
          {"object",
           {{"id", id},
            {"jobId", "job-1"},
            {"index", index},
            {"state", state},
            {"reason", reason},
            {"revision", revision}}}};
}

json jobEvent(const std::string& type, const std::string& state, int64_t revision) {
  return {{"type", type},
          {"kind", "job"},
          {"revision", revision},
          {"object", jobReply("job-1", state)}};
}

// --- Exit codes. ---

TEST(ExitCodeTest, HttpStatuses) {
  EXPECT_EQ(exitCodeForStatus(200), 0);
  EXPECT_EQ(exitCodeForStatus(202), 0);
  EXPECT_EQ(exitCodeForStatus(400), 7);
  EXPECT_EQ(exitCodeForStatus(401), 4);
  EXPECT_EQ(exitCodeForStatus(403), 4);
  EXPECT_EQ(exitCodeForStatus(404), 5);
  EXPECT_EQ(exitCodeForStatus(409), 6);
  EXPECT_EQ(exitCodeForStatus(412), 6);
  EXPECT_EQ(exitCodeForStatus(410), 7);
  EXPECT_EQ(exitCodeForStatus(413), 7);
  EXPECT_EQ(exitCodeForStatus(500), 7);
  EXPECT_EQ(exitCodeForStatus(503), 7);
}

TEST(ExitCodeTest, ClientErrors) {
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kUnavailable, "x")), 3);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kInvalidArgument, "x")), 2);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kUnauthenticated, "x")), 4);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kPermissionDenied, "x")), 4);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kNotFound, "x")), 5);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kConflict, "x")), 6);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kFailedPrecondition, "x")), 6);
  EXPECT_EQ(exitCodeForError(Error(ErrorCode::kInternal, "x")), 7);
}

// --- Argument parsing. ---

TEST(ParseTest, GlobalFlagsBeforeAndAfterTheVerb) {
  std::ostringstream out, err;
  CommandLine first;
  ASSERT_EQ(first.parse({"--addr", "h:1", "-o", "json", "job", "ls", "--state", "Finished",
                         "--limit", "5", "--all"},
                        out, err),
            std::nullopt)
      << err.str();
  EXPECT_EQ(first.invocation().path, (std::vector<std::string>{"job", "ls"}));
  EXPECT_EQ(first.invocation().addr, "h:1");
  EXPECT_EQ(first.invocation().format(), OutputFormat::kJson);
  EXPECT_EQ(first.invocation().state, "Finished");
  EXPECT_EQ(first.invocation().limit, 5);
  EXPECT_TRUE(first.invocation().all);

  CommandLine second;
  ASSERT_EQ(second.parse({"job", "get", "-o", "yaml", "job-7", "--token", "t"}, out, err),
            std::nullopt)
      << err.str();
  EXPECT_EQ(second.invocation().path, (std::vector<std::string>{"job", "get"}));
  EXPECT_EQ(second.invocation().id, "job-7");
  EXPECT_EQ(second.invocation().format(), OutputFormat::kYaml);
  EXPECT_EQ(second.invocation().token, "t");
}

TEST(ParseTest, VerbArguments) {
  std::ostringstream out, err;
  CommandLine run;
  ASSERT_EQ(run.parse({"job", "run", "-", "--wait", "--idempotency-key", "k"}, out, err),
            std::nullopt)
      << err.str();
  EXPECT_EQ(run.invocation().files, (std::vector<std::string>{"-"}));
  EXPECT_TRUE(run.invocation().wait);
  EXPECT_EQ(run.invocation().idempotencyKey, "k");

  CommandLine scale;
  ASSERT_EQ(scale.parse({"job", "scale", "j", "--desired", "3", "--max", "5"}, out, err),
            std::nullopt);
  EXPECT_EQ(scale.invocation().desired, 3);
  EXPECT_EQ(scale.invocation().max, 5);
  EXPECT_EQ(scale.invocation().min, std::nullopt);

  CommandLine kill;
  ASSERT_EQ(kill.parse({"task", "kill", "--shrink", "t-1"}, out, err), std::nullopt);
  EXPECT_TRUE(kill.invocation().shrink);
  EXPECT_EQ(kill.invocation().id, "t-1");

  CommandLine events;
  ASSERT_EQ(events.parse({"events", "--job", "j", "--from-revision", "12"}, out, err),
            std::nullopt);
  EXPECT_EQ(events.invocation().job, "j");
  EXPECT_EQ(events.invocation().fromRevision, 12);

  CommandLine validate;
  ASSERT_EQ(validate.parse({"job", "validate", "a.yaml", "b.yaml"}, out, err), std::nullopt);
  EXPECT_EQ(validate.invocation().files, (std::vector<std::string>{"a.yaml", "b.yaml"}));
}

TEST(ParseTest, UsageErrorsExitTwoWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{}, "missing command for 'skiff'"},
      {{"job"}, "missing command for 'skiff job'; one of: run, validate, ls"},
      {{"jobs", "ls"}, "jobs"},
      {{"job", "ls", "--bogus"}, "--bogus"},
      {{"job", "get"}, "ID is required"},
      {{"job", "run", "a.yaml", "b.yaml"}, "At Most 1"},
      {{"job", "ls", "-o", "xml"}, "xml"},
      {{"job", "ls", "--type", "cron"}, "cron"},
      {{"job", "ls", "--limit", "0"}, "--limit"},
      {{"job", "ls", "--limit", "many"}, "many"},
      {{"task", "ls", "--state", "Running"}, "Running"},
      {{"job", "scale", "j", "--min", "-1"}, "--min"},
      {{"completion", "fish"}, "fish"},
  };
  for (const Case& c : cases) {
    std::ostringstream out, err;
    CommandLine commandLine;
    EXPECT_EQ(commandLine.parse(c.args, out, err), kExitUsage) << ::testing::PrintToString(c.args);
    EXPECT_THAT(err.str(), StartsWith("skiff: ")) << ::testing::PrintToString(c.args);
    EXPECT_THAT(err.str(), HasSubstr(c.message));
    std::string text = err.str();
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    EXPECT_EQ(out.str(), "");
  }
}

TEST(ParseTest, HelpExitsZeroOnStdout) {
  std::ostringstream out, err;
  CommandLine commandLine;
  EXPECT_EQ(commandLine.parse({"job", "run", "--help"}, out, err), kExitOk);
  EXPECT_THAT(out.str(), HasSubstr("skiff job run"));
  EXPECT_THAT(out.str(), HasSubstr("--idempotency-key"));
  EXPECT_THAT(out.str(), HasSubstr("Exit codes"));
  EXPECT_EQ(err.str(), "");
}

// --- job validate. ---

TEST_F(CommandsTest, ValidateGoodFile) {
  std::string file = write("good.yaml", kGoodJob);
  EXPECT_EQ(h_.run({"job", "validate", file}), 0);
  EXPECT_EQ(h_.out.str(), file + ": valid\n");
  EXPECT_EQ(h_.err.str(), "");
  EXPECT_EQ(h_.apisMade, 0);  // Local only: no server, no config.
}

TEST_F(CommandsTest, ValidateBadFileListsEveryError) {
  std::string file = write("bad.yaml", kBadJob);
  EXPECT_EQ(h_.run({"job", "validate", file}), 1);
  EXPECT_EQ(h_.out.str(), "");
  auto document = api::parseJobFileText(kBadJob);
  auto errors = api::validateJobDescriptor(*document).error();
  ASSERT_GE(errors.size(), 3u);
  std::vector<std::string> expected;
  for (const auto& error : errors) expected.push_back(file + ": " + error.toString());
  EXPECT_EQ(errLines(), expected);
  EXPECT_THAT(h_.err.str(), HasSubstr(file + ": batch.size: "));
  EXPECT_THAT(h_.err.str(), HasSubstr(file + ": owner.teamEmail: "));
}

TEST_F(CommandsTest, ValidateSyntaxErrorNamesLineAndColumn) {
  std::string file = write("broken.yaml", "applicationName: [app\n");
  EXPECT_EQ(h_.run({"job", "validate", file}), 1);
  EXPECT_THAT(h_.err.str(), StartsWith(file + ": line "));
  EXPECT_THAT(h_.err.str(), HasSubstr("column"));
}

TEST_F(CommandsTest, ValidateMissingFile) {
  std::string file = (dir_ / "nope.yaml").string();
  EXPECT_EQ(h_.run({"job", "validate", file}), 1);
  EXPECT_EQ(h_.err.str(), file + ": No such file or directory\n");
}

TEST_F(CommandsTest, ValidateStdinAndJson) {
  h_.setStdin(R"({"applicationName": "app", "owner": {"teamEmail": "t@example.com"},
                  "container": {"image": "busybox"}, "batch": {}})");
  EXPECT_EQ(h_.run({"job", "validate", "-"}), 0);
  EXPECT_EQ(h_.out.str(), "<stdin>: valid\n");
}

TEST_F(CommandsTest, ValidateSeveralFilesFailsIfAnyIsBad) {
  std::string good = write("good.yaml", kGoodJob);
  std::string bad = write("bad.yaml", kBadJob);
  EXPECT_EQ(h_.run({"job", "validate", good, bad}), 1);
  EXPECT_EQ(h_.out.str(), good + ": valid\n");
  EXPECT_THAT(h_.err.str(), HasSubstr(bad + ": batch.size"));
}

TEST_F(CommandsTest, ValidateJsonOutput) {
  std::string bad = write("bad.yaml", kBadJob);
  EXPECT_EQ(h_.run({"job", "validate", bad, "-o", "json"}), 1);
  json report = json::parse(h_.out.str());
  EXPECT_EQ(report["file"], bad);
  EXPECT_EQ(report["valid"], false);
  EXPECT_GE(report["errors"].size(), 3u);
  EXPECT_EQ(report["errors"][0].count("field"), 1u);
}

// --- job run. ---

TEST_F(CommandsTest, RunRejectsInvalidFileWithoutCallingTheServer) {
  std::string file = write("bad.yaml", kBadJob);
  EXPECT_EQ(h_.run({"job", "run", file}), 1);
  EXPECT_THAT(h_.err.str(), HasSubstr(file + ": batch.size: "));
  EXPECT_TRUE(h_.api.requests.empty());
}

TEST_F(CommandsTest, RunPostsCanonicalJsonWithAKey) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(reply(201, jobReply("job-1")));
  EXPECT_EQ(h_.run({"job", "run", file, "--addr", "h:9", "--token", "tok"}), 0) << h_.err.str();
  EXPECT_EQ(h_.out.str(), "job-1\n");
  ASSERT_EQ(h_.api.requests.size(), 1u);
  const auto& request = h_.api.requests[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/v1/jobs");
  EXPECT_EQ(request.header("Idempotency-Key"), "key-1");
  auto descriptor = api::validateJobDescriptor(*api::parseJobFileText(kGoodJob));
  EXPECT_EQ(request.body, api::toJson(*descriptor));
  ASSERT_EQ(h_.configs.size(), 1u);
  EXPECT_EQ(h_.configs[0].address, "http://h:9");
  EXPECT_EQ(h_.configs[0].token, "tok");
}

TEST_F(CommandsTest, RunRetriesWithTheSameKey) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(unreachable());
  h_.api.responses.push_back(errorReply(503, "Unavailable", "loading state"));
  h_.api.responses.push_back(reply(200, jobReply("job-1")));
  EXPECT_EQ(h_.run({"job", "run", file, "--idempotency-key", "mine"}), 0) << h_.err.str();
  ASSERT_EQ(h_.api.requests.size(), 3u);
  for (const auto& request : h_.api.requests) EXPECT_EQ(request.header("Idempotency-Key"), "mine");
  EXPECT_THAT(h_.sleeps,
              ElementsAre(std::chrono::milliseconds(250), std::chrono::milliseconds(500)));
  EXPECT_THAT(h_.err.str(), HasSubstr("loading state; retrying"));
  EXPECT_EQ(h_.out.str(), "job-1\n");
}

TEST_F(CommandsTest, RunGivesUpAfterFiveRetries) {
  std::string file = write("good.yaml", kGoodJob);
  for (int i = 0; i < 10; ++i) h_.api.responses.push_back(unreachable());
  EXPECT_EQ(h_.run({"job", "run", file}), 3);
  EXPECT_EQ(h_.api.requests.size(), 6u);
  EXPECT_EQ(h_.sleeps.size(), 5u);
  EXPECT_THAT(errLines().back(), StartsWith("skiff: cannot reach http://fake: Connection refused"));
}

TEST_F(CommandsTest, RunDoesNotRetryOtherErrors) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(
      errorReply(409, "Conflict", "idempotency key reused with another body"));
  EXPECT_EQ(h_.run({"job", "run", file}), 6);
  EXPECT_EQ(h_.api.requests.size(), 1u);
  EXPECT_EQ(h_.err.str(), "skiff: idempotency key reused with another body\n");
}

TEST_F(CommandsTest, ServerValidationDetailsOnePerLine) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(
      errorReply(400, "InvalidArgument", "invalid job",
                 json::array({{{"field", "batch.size"}, {"message", "too big"}},
                              {{"field", "container.image"}, {"message", "unknown registry"}}})));
  EXPECT_EQ(h_.run({"job", "run", file}), 7);
  EXPECT_THAT(errLines(), ElementsAre("skiff: invalid job", "  batch.size: too big",
                                      "  container.image: unknown registry"));
}

TEST_F(CommandsTest, AProblemTheMessageAlreadyNamesIsPrintedOnce) {
  std::string file = write("good.yaml", kGoodJob);
  std::string field = "container.securityProfile.securityGroups[1]";
  h_.api.responses.push_back(errorReply(
      400, "InvalidArgument", field + ": security group web does not exist",
      json::array({{{"field", field}, {"message", "security group web does not exist"}}})));
  EXPECT_EQ(h_.run({"job", "run", file}), 7);
  EXPECT_THAT(errLines(), ElementsAre("skiff: " + field + ": security group web does not exist"));
}

TEST_F(CommandsTest, RunRejectsBadIdempotencyKey) {
  std::string file = write("good.yaml", kGoodJob);
  EXPECT_EQ(h_.run({"job", "run", file, "--idempotency-key", std::string(129, 'k')}), 2);
  EXPECT_TRUE(h_.api.requests.empty());
}

TEST_F(CommandsTest, RunJsonPrintsTheJob) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(reply(201, jobReply("job-1")));
  EXPECT_EQ(h_.run({"-o", "json", "job", "run", file}), 0);
  EXPECT_EQ(json::parse(h_.out.str()), jobReply("job-1"));
}

TEST_F(CommandsTest, UnauthenticatedWithoutTokenGivesAHint) {
  h_.api.responses.push_back(errorReply(401, "Unauthenticated", "missing bearer token"));
  EXPECT_EQ(h_.run({"job", "get", "job-1"}), 4);
  EXPECT_THAT(h_.err.str(), StartsWith("skiff: missing bearer token (no token configured"));
}

// --- run --wait and job wait. ---

TEST_F(CommandsTest, RunWaitSucceeds) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(reply(201, jobReply("job-1")));
  h_.api.streams.push_back({{
      line(jobEvent("snapshot", "Accepted", 3)),
      line(taskEvent("snapshot", "t0", 0, "Accepted", "", 2)),
      line(taskEvent("snapshot", "t1", 1, "Accepted", "", 3)),
      line({{"type", "snapshotEnd"}, {"revision", 3}}),
      line(taskEvent("update", "t0", 0, "Started", "", 4)),
      line({{"type", "keepalive"}}),
      line(taskEvent("update", "t0", 0, "Finished", "normal", 5)),
      line(taskEvent("update", "t1", 1, "Finished", "normal", 6)),
      line(jobEvent("update", "Finished", 6)),
      line(taskEvent("update", "never-read", 5, "Accepted", "", 7)),
  }});
  EXPECT_EQ(h_.run({"job", "run", "--wait", file}), 0) << h_.err.str();
  EXPECT_EQ(h_.api.streamTargets, (std::vector<std::string>{"/v1/events?jobId=job-1"}));
  EXPECT_EQ(h_.out.str(),
            "job-1\n"
            "job-1  Accepted  tasks: 2 accepted\n"
            "job-1  Accepted  tasks: 1 accepted, 1 started\n"
            "job-1  Accepted  tasks: 1 accepted, 1 finished (1 normal)\n"
            "job-1  Accepted  tasks: 2 finished (2 normal)\n"
            "job-1  Finished  tasks: 2 finished (2 normal)\n");
}

TEST_F(CommandsTest, RunWaitFailsWhenATaskFailed) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(reply(201, jobReply("job-1")));
  json failed = taskEvent("snapshot", "t1", 1, "Finished", "failed", 3);
  failed["object"]["message"] = "exit code 3";
  h_.api.streams.push_back({{
      line(jobEvent("snapshot", "Finished", 3)),
      line(taskEvent("snapshot", "t0", 0, "Finished", "normal", 2)),
      line(failed),
      line({{"type", "snapshotEnd"}, {"revision", 3}}),
  }});
  EXPECT_EQ(h_.run({"job", "run", "--wait", file}), 1);
  EXPECT_THAT(errLines(),
              ElementsAre("skiff: job job-1 failed", "  task 1 (t1) finished failed: exit code 3"));
}

TEST_F(CommandsTest, RunWaitJsonPrintsOnlyTheFinalJob) {
  std::string file = write("good.yaml", kGoodJob);
  h_.api.responses.push_back(reply(201, jobReply("job-1")));
  h_.api.streams.push_back({{line(jobEvent("snapshot", "Finished", 3)),
                             line(taskEvent("snapshot", "t0", 0, "Finished", "normal", 2)),
                             line(taskEvent("snapshot", "t1", 1, "Finished", "normal", 3)),
                             line({{"type", "snapshotEnd"}, {"revision", 3}})}});
  h_.api.responses.push_back(reply(200, jobReply("job-1", "Finished")));
  EXPECT_EQ(h_.run({"job", "run", "--wait", "-o", "json", file}), 0) << h_.err.str();
  EXPECT_EQ(h_.api.requests.back().target, "/v1/jobs/job-1");
  EXPECT_EQ(json::parse(h_.out.str()), jobReply("job-1", "Finished"));
  EXPECT_EQ(h_.err.str(), "job-1  Finished  tasks: 2 finished (2 normal)\n");
}

TEST_F(CommandsTest, WaitReconnectsFromTheNextRevision) {
  h_.api.streams.push_back({{line(jobEvent("snapshot", "Accepted", 3)),
                             line(taskEvent("snapshot", "t0", 0, "Started", "", 3)),
                             line({{"type", "snapshotEnd"}, {"revision", 10}}),
                             line(taskEvent("update", "t0", 0, "Finished", "normal", 11))},
                            unreachable()});
  h_.api.streams.push_back({{}, errorReply(503, "Unavailable", "restarting")});
  h_.api.streams.push_back({{line(taskEvent("update", "t1", 1, "Finished", "normal", 12)),
                             line(jobEvent("update", "Finished", 13))}});
  EXPECT_EQ(h_.run({"job", "wait", "job-1"}), 0) << h_.err.str();
  EXPECT_EQ(
      h_.api.streamTargets,
      (std::vector<std::string>{"/v1/events?jobId=job-1", "/v1/events?jobId=job-1&fromRevision=12",
                                "/v1/events?jobId=job-1&fromRevision=12"}));
  // The first failure came after progress, so both reconnects start from the shortest backoff
  // and grow from there.
  EXPECT_THAT(h_.sleeps,
              ElementsAre(std::chrono::milliseconds(500), std::chrono::milliseconds(1000)));
  EXPECT_THAT(h_.err.str(), HasSubstr("reconnecting"));
}

TEST_F(CommandsTest, WaitRestartsWithASnapshotWhenHistoryIsCompacted) {
  h_.api.streams.push_back({{line(jobEvent("snapshot", "Accepted", 3)),
                             line({{"type", "snapshotEnd"}, {"revision", 10}})},
                            unreachable()});
  h_.api.streams.push_back({{}, errorReply(410, "Compacted", "revision 11 was compacted")});
  h_.api.streams.push_back({{line(jobEvent("snapshot", "Finished", 30)),
                             line(taskEvent("snapshot", "t0", 0, "Finished", "normal", 20)),
                             line(taskEvent("snapshot", "t1", 1, "Finished", "normal", 21)),
                             line({{"type", "snapshotEnd"}, {"revision", 30}})}});
  EXPECT_EQ(h_.run({"job", "wait", "job-1"}), 0) << h_.err.str();
  EXPECT_EQ(
      h_.api.streamTargets,
      (std::vector<std::string>{"/v1/events?jobId=job-1", "/v1/events?jobId=job-1&fromRevision=11",
                                "/v1/events?jobId=job-1"}));
}

TEST_F(CommandsTest, WaitGivesUpWhenTheServerStaysAway) {
  EXPECT_EQ(h_.run({"job", "wait", "job-1"}), 3);
  EXPECT_EQ(h_.api.streamTargets.size(), 9u);
  EXPECT_THAT(errLines().back(),
              StartsWith("skiff: giving up on the event stream: cannot reach http://fake"));
}

TEST_F(CommandsTest, WaitForUnknownJob) {
  h_.api.streams.push_back({{line({{"type", "snapshotEnd"}, {"revision", 4}})}});
  EXPECT_EQ(h_.run({"job", "wait", "job-404"}), 5);
  EXPECT_EQ(h_.err.str(), "skiff: job job-404 not found\n");
}

TEST_F(CommandsTest, WaitStreamNotFound) {
  h_.api.streams.push_back({{}, errorReply(404, "NotFound", "job job-404 not found")});
  EXPECT_EQ(h_.run({"job", "wait", "job-404"}), 5);
  EXPECT_EQ(h_.err.str(), "skiff: job job-404 not found\n");
}

TEST_F(CommandsTest, LiveStatusOnATerminal) {
  h_.context.outIsTty = true;
  h_.api.streams.push_back({{line(jobEvent("snapshot", "Accepted", 3)),
                             line(taskEvent("snapshot", "t0", 0, "Finished", "normal", 3)),
                             line(taskEvent("snapshot", "t1", 1, "Finished", "normal", 3)),
                             line({{"type", "snapshotEnd"}, {"revision", 3}}),
                             line(jobEvent("update", "Finished", 4))}});
  EXPECT_EQ(h_.run({"job", "wait", "job-1"}), 0);
  EXPECT_EQ(h_.out.str(),
            "\rjob-1  Accepted  tasks: 2 finished (2 normal)\x1b[K"
            "\rjob-1  Finished  tasks: 2 finished (2 normal)\x1b[K\n");
}

// --- Listing and single objects. ---

TEST_F(CommandsTest, JobListFollowsCursorsWithAll) {
  h_.api.responses.push_back(reply(200, {{"items", {jobReply("job-1")}}, {"nextCursor", "c/2"}}));
  h_.api.responses.push_back(reply(200, {{"items", {jobReply("job-2", "Finished")}}}));
  EXPECT_EQ(h_.run({"job", "ls", "--all", "--type", "batch", "--app", "my app"}), 0)
      << h_.err.str();
  ASSERT_EQ(h_.api.requests.size(), 2u);
  EXPECT_EQ(h_.api.requests[0].target, "/v1/jobs?type=batch&applicationName=my%20app");
  EXPECT_EQ(h_.api.requests[1].target, "/v1/jobs?type=batch&applicationName=my%20app&cursor=c%2F2");
  EXPECT_EQ(h_.out.str(),
            "ID      NAME   TYPE    STATE      TASKS        AGE\n"
            "job-1   app    batch   Accepted   2 accepted   100s\n"
            "job-2   app    batch   Finished   2 accepted   100s\n");
}

TEST_F(CommandsTest, JobListOnePageHintsAtMore) {
  h_.api.responses.push_back(reply(200, {{"items", {jobReply("job-1")}}, {"nextCursor", "c2"}}));
  EXPECT_EQ(h_.run({"job", "ls", "--limit", "1", "--state", "Accepted"}), 0);
  EXPECT_EQ(h_.api.requests[0].target, "/v1/jobs?state=Accepted&limit=1");
  EXPECT_EQ(h_.err.str(), "More jobs follow: use --all, or --cursor c2\n");
}

TEST_F(CommandsTest, JobListJsonAll) {
  h_.api.responses.push_back(reply(200, {{"items", {jobReply("job-1")}}, {"nextCursor", "c2"}}));
  h_.api.responses.push_back(reply(200, {{"items", {jobReply("job-2")}}}));
  EXPECT_EQ(h_.run({"job", "ls", "--all", "-o", "json"}), 0);
  EXPECT_EQ(json::parse(h_.out.str()), json({{"items", {jobReply("job-1"), jobReply("job-2")}}}));
}

TEST_F(CommandsTest, EmptyList) {
  h_.api.responses.push_back(reply(200, {{"items", json::array()}}));
  EXPECT_EQ(h_.run({"task", "ls", "--job", "job-1"}), 0);
  EXPECT_EQ(h_.api.requests[0].target, "/v1/tasks?jobId=job-1");
  EXPECT_EQ(h_.out.str(), "");
  EXPECT_EQ(h_.err.str(), "No tasks found.\n");
}

TEST_F(CommandsTest, GetNotFound) {
  h_.api.responses.push_back(errorReply(404, "NotFound", "job job-x not found"));
  EXPECT_EQ(h_.run({"job", "get", "job-x"}), 5);
  EXPECT_EQ(h_.err.str(), "skiff: job job-x not found\n");
  EXPECT_EQ(h_.out.str(), "");
}

TEST_F(CommandsTest, GetEncodesTheId) {
  h_.api.responses.push_back(reply(200, jobReply("a b/c")));
  EXPECT_EQ(h_.run({"job", "get", "a b/c", "-o", "yaml"}), 0);
  EXPECT_EQ(h_.api.requests[0].target, "/v1/jobs/a%20b%2Fc");
  EXPECT_THAT(h_.out.str(), HasSubstr("id: a b/c\n"));
}

TEST_F(CommandsTest, JobGetTable) {
  h_.api.responses.push_back(reply(200, jobReply("job-1")));
  EXPECT_EQ(h_.run({"job", "get", "job-1"}), 0);
  EXPECT_THAT(h_.out.str(), StartsWith("ID      NAME   TYPE    STATE      TASKS        AGE\n"));
}

TEST_F(CommandsTest, KillScaleEnableDisableDrain) {
  h_.api.responses.push_back(reply(202, jobReply("job-1", "KillInitiated")));
  EXPECT_EQ(h_.run({"job", "kill", "job-1"}), 0);
  EXPECT_EQ(h_.api.requests.back().method, "POST");
  EXPECT_EQ(h_.api.requests.back().target, "/v1/jobs/job-1/kill");
  EXPECT_EQ(h_.out.str(), "job-1: KillInitiated\n");

  Harness scale;
  json scaled = jobReply("job-2");
  scaled["capacity"] = {{"min", 1}, {"desired", 3}, {"max", 5}};
  scale.api.responses.push_back(reply(200, scaled));
  EXPECT_EQ(scale.run({"job", "scale", "job-2", "--desired", "3"}), 0);
  EXPECT_EQ(scale.api.requests.back().method, "PUT");
  EXPECT_EQ(scale.api.requests.back().target, "/v1/jobs/job-2/capacity");
  EXPECT_EQ(scale.api.requests.back().body, json({{"desired", 3}}));
  EXPECT_EQ(scale.out.str(), "job-2: capacity min=1 desired=3 max=5\n");

  Harness precondition;
  precondition.api.responses.push_back(
      errorReply(412, "FailedPrecondition", "batch jobs have no capacity"));
  EXPECT_EQ(precondition.run({"job", "scale", "job-3", "--max", "1"}), 6);

  Harness disable;
  disable.api.responses.push_back(reply(200, jobReply("job-4")));
  EXPECT_EQ(disable.run({"job", "disable", "job-4"}), 0);
  EXPECT_EQ(disable.api.requests.back().target, "/v1/jobs/job-4/disable");
  EXPECT_EQ(disable.out.str(), "job-4: disabled\n");

  Harness enable;
  enable.api.responses.push_back(reply(200, jobReply("job-4")));
  EXPECT_EQ(enable.run({"job", "enable", "job-4"}), 0);
  EXPECT_EQ(enable.api.requests.back().target, "/v1/jobs/job-4/enable");

  Harness drain;
  drain.api.responses.push_back(reply(200, {{"id", "node-a"}, {"state", "Draining"}}));
  EXPECT_EQ(drain.run({"node", "drain", "node-a"}), 0);
  EXPECT_EQ(drain.api.requests.back().target, "/v1/nodes/node-a/drain");
  EXPECT_EQ(drain.out.str(), "node-a: Draining\n");
  EXPECT_EQ(drain.api.requests.back().body, json::object()) << "the server's default deadline";

  Harness deadline;
  deadline.api.responses.push_back(reply(200, {{"id", "node-a"}, {"state", "Draining"}}));
  EXPECT_EQ(deadline.run({"node", "drain", "node-a", "--deadline", "30m"}), 0);
  EXPECT_EQ(deadline.api.requests.back().body, json({{"deadlineMs", 1'800'000}}));

  Harness bad;
  EXPECT_EQ(bad.run({"node", "drain", "node-a", "--deadline", "soon"}), 2);
  EXPECT_TRUE(bad.api.requests.empty());
  EXPECT_NE(bad.err.str().find("--deadline"), std::string::npos) << bad.err.str();
}

TEST_F(CommandsTest, ScaleNeedsAFlag) {
  EXPECT_EQ(h_.run({"job", "scale", "job-1"}), 2);
  EXPECT_TRUE(h_.api.requests.empty());
  EXPECT_EQ(h_.err.str(), "skiff: job scale needs at least one of --min, --desired, --max\n");
}

TEST_F(CommandsTest, TaskKillShrink) {
  h_.api.responses.push_back(reply(202, {{"id", "t-1"}, {"state", "KillInitiated"}}));
  EXPECT_EQ(h_.run({"task", "kill", "t-1", "--shrink"}), 0);
  EXPECT_EQ(h_.api.requests.back().target, "/v1/tasks/t-1/kill?shrink=true");
  EXPECT_EQ(h_.out.str(), "t-1: KillInitiated\n");

  Harness plain;
  plain.api.responses.push_back(reply(202, {{"id", "t-2"}, {"state", "KillInitiated"}}));
  EXPECT_EQ(plain.run({"task", "kill", "t-2"}), 0);
  EXPECT_EQ(plain.api.requests.back().target, "/v1/tasks/t-2/kill?shrink=false");
}

TEST_F(CommandsTest, NodeList) {
  h_.api.responses.push_back(reply(200, {{"items",
                                          {{{"id", "node-a"},
                                            {"state", "Ready"},
                                            {"resources", {{"cpu", 2}, {"memoryMB", 4096}}},
                                            {"allocated", {{"cpu", 0}, {"memoryMB", 0}}},
                                            {"taskCount", 0},
                                            {"lastHeartbeatMs", 1'700'000'098'000}}}}}));
  EXPECT_EQ(h_.run({"node", "ls"}), 0);
  EXPECT_EQ(h_.api.requests[0].target, "/v1/nodes");
  EXPECT_EQ(h_.out.str(),
            "ID       STATE   CPU   MEMORY     TASKS   HEARTBEAT\n"
            "node-a   Ready   0/2   0/4096MB   0       2s\n");
}

TEST_F(CommandsTest, UnreachableServer) {
  h_.api.responses.push_back(unreachable());
  EXPECT_EQ(h_.run({"node", "ls"}), 3);
  EXPECT_EQ(h_.err.str(),
            "skiff: cannot reach http://fake: Connection refused (is skiffd running? set the "
            "address with --addr or SKIFF_ADDR)\n");
}

TEST_F(CommandsTest, ConfigErrorsAreUsageErrors) {
  EXPECT_EQ(h_.run({"job", "ls", "--config", (dir_ / "missing.yaml").string()}), 2);
  EXPECT_THAT(h_.err.str(), HasSubstr("missing.yaml does not exist"));
  EXPECT_EQ(h_.apisMade, 0);

  Harness badAddr;
  EXPECT_EQ(badAddr.run({"job", "ls", "--addr", "ftp://x"}), 2);
  EXPECT_THAT(badAddr.err.str(), StartsWith("skiff: --addr: invalid address"));
}

// --- events. ---

TEST_F(CommandsTest, EventsTableSkipsKeepalives) {
  h_.api.streams.push_back(
      {{line(jobEvent("snapshot", "Accepted", 3)), line({{"type", "keepalive"}}),
        line({{"type", "snapshotEnd"}, {"revision", 3}}),
        line(taskEvent("update", "t0", 0, "Started", "", 4))}});
  EXPECT_EQ(h_.run({"events", "--job", "job-1"}), 3);  // The fake has nothing more: gives up.
  EXPECT_EQ(h_.out.str(),
            "3 snapshot job job-1 Accepted\n"
            "3 snapshotEnd\n"
            "4 update task t0 Started\n");
  EXPECT_EQ(h_.api.streamTargets[0], "/v1/events?jobId=job-1");
  EXPECT_EQ(h_.api.streamTargets[1], "/v1/events?jobId=job-1&fromRevision=5");
}

TEST_F(CommandsTest, EventsJsonIsRawNdjson) {
  std::string raw = R"({"type":"update","kind":"job","revision":7,"object":{"id":"job-1"}})";
  h_.api.streams.push_back({{raw, line({{"type", "keepalive"}})}});
  EXPECT_EQ(h_.run({"events", "-o", "json", "--from-revision", "7"}), 3);
  EXPECT_EQ(h_.out.str(), raw + "\n");
  EXPECT_EQ(h_.api.streamTargets[0], "/v1/events?fromRevision=7");
}

TEST_F(CommandsTest, EventsCompactedFromAnExplicitRevisionIsAnError) {
  h_.api.streams.push_back({{}, errorReply(410, "Compacted", "revision 1 was compacted")});
  EXPECT_EQ(h_.run({"events", "--from-revision", "1"}), 7);
  EXPECT_EQ(h_.err.str(), "skiff: revision 1 was compacted\n");
}

// --- version and completion. ---

TEST_F(CommandsTest, VersionWithAndWithoutServer) {
  h_.api.responses.push_back(reply(200, {{"version", "0.1.0"}, {"api", "v1"}}));
  EXPECT_EQ(h_.run({"version"}), 0);
  EXPECT_EQ(h_.out.str(), "client: skiff " SKIFF_VERSION "\nserver: skiffd 0.1.0 (api v1)\n");
  EXPECT_EQ(h_.api.requests[0].target, "/version");

  Harness offline;
  offline.api.responses.push_back(unreachable());
  EXPECT_EQ(offline.run({"version"}), 0);
  EXPECT_EQ(offline.out.str(), "client: skiff " SKIFF_VERSION "\n");
  EXPECT_THAT(offline.err.str(), HasSubstr("server version unknown"));
}

TEST_F(CommandsTest, CompletionScripts) {
  EXPECT_EQ(h_.run({"completion", "bash"}), 0);
  EXPECT_THAT(h_.out.str(), HasSubstr("complete -F _skiff skiff"));
  Harness zsh;
  EXPECT_EQ(zsh.run({"completion", "zsh"}), 0);
  EXPECT_THAT(zsh.out.str(), StartsWith("#compdef skiff"));
  EXPECT_EQ(h_.apisMade + zsh.apisMade, 0);
}

}  // namespace
}  // namespace skiff::cli
