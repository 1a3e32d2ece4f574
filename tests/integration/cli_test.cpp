// The `skiff` binary against the real skiffd: what a user types, what they see, and exit codes.

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "skiffd_process.h"

namespace skiff::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kGoodJob = R"(applicationName: cli
owner:
  teamEmail: team@example.com
container:
  image: busybox:1.36
  command: [echo, hi]
batch:
  size: 2
)";

constexpr const char* kBadJob = R"(applicationName: cli
container:
  image: Busybox@sha256:abc
  resources:
    memoryMB: 0
batch:
  size: 0
  colour: blue
)";

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
    dir_ = skiffd_.stateDir() + "/files";
    std::filesystem::create_directories(dir_);
    write("good.yaml", kGoodJob);
    write("bad.yaml", kBadJob);
  }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }

  CommandResult skiff(std::vector<std::string> args, const std::string& token = "admin") {
    std::vector<std::string> argv = {SkiffdProcess::skiffCliPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env = {"SKIFF_ADDR=" + skiffd_.address(), "HOME=" + skiffd_.stateDir(),
                                    "XDG_CONFIG_HOME=" + skiffd_.stateDir() + "/config"};
    env.push_back("SKIFF_TOKEN=" + (token == "admin" ? skiffd_.adminToken() : token));
    return runCommand(argv, env);
  }

  SkiffdProcess skiffd_;
  std::string dir_;
};

TEST_F(CliTest, ValidateAcceptsAGoodFile) {
  auto result = skiff({"job", "validate", dir_ + "/good.yaml"});
  EXPECT_EQ(result.exitCode, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("valid"));
}

TEST_F(CliTest, ValidateListsEveryErrorWithItsFieldAndExits1) {
  auto result = skiff({"job", "validate", dir_ + "/bad.yaml"});
  EXPECT_EQ(result.exitCode, 1);
  std::string all = result.out + result.err;
  EXPECT_THAT(all, HasSubstr("owner: is required"));
  EXPECT_THAT(all,
              HasSubstr("container.resources.memoryMB: must be between 16 and 1048576 (got 0)"));
  EXPECT_THAT(all, HasSubstr("batch.size: must be between 1 and 10000 (got 0)"));
  EXPECT_THAT(all, HasSubstr("batch.colour: unknown field"));
  EXPECT_THAT(all, HasSubstr("container.image"));
}

TEST_F(CliTest, RunPrintsAnIdThatJobGetShows) {
  auto run = skiff({"job", "run", dir_ + "/good.yaml"});
  ASSERT_EQ(run.exitCode, 0) << run.err;
  std::string id = run.out.substr(run.out.find("job-"), 25);
  auto get = skiff({"job", "get", id, "-o", "json"});
  ASSERT_EQ(get.exitCode, 0) << get.err;
  json job = json::parse(get.out);
  EXPECT_EQ(job["id"], id);
  EXPECT_EQ(job["descriptor"]["applicationName"], "cli");
  auto table = skiff({"job", "ls"});
  EXPECT_EQ(table.exitCode, 0);
  EXPECT_THAT(table.out, HasSubstr(id));
  auto tasks = skiff({"task", "ls", "--job", id, "-o", "yaml"});
  EXPECT_EQ(tasks.exitCode, 0) << tasks.err;
  EXPECT_THAT(tasks.out, HasSubstr(id + "-1-0"));
}

TEST_F(CliTest, RunRefusesAnInvalidFileWithoutSubmitting) {
  auto run = skiff({"job", "run", dir_ + "/bad.yaml"});
  EXPECT_EQ(run.exitCode, 1);
  auto list = skiff({"job", "ls", "-o", "json"});
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("job-")));
}

TEST_F(CliTest, KillThenGetShowsTheJobFinished) {
  auto run = skiff({"job", "run", dir_ + "/good.yaml"});
  std::string id = run.out.substr(run.out.find("job-"), 25);
  EXPECT_EQ(skiff({"job", "kill", id}).exitCode, 0);
  for (int i = 0; i < 100; ++i) {
    auto get = skiff({"job", "get", id, "-o", "json"});
    if (json::parse(get.out)["status"]["state"] == "Finished") return;
  }
  ADD_FAILURE() << "job did not finish after kill";
}

TEST_F(CliTest, ExitCodesAreDocumented) {
  auto missing = skiff({"job", "get", "job-000000000000-00000000"});
  EXPECT_EQ(missing.exitCode, 5) << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("not found"));
  auto wrongToken = skiff({"job", "ls"}, "wrong-token-wrong-token");
  EXPECT_EQ(wrongToken.exitCode, 4) << wrongToken.err;
  auto usage = skiff({"job", "frobnicate"});
  EXPECT_EQ(usage.exitCode, 2);
  skiffd_.kill9();
  auto unreachable = skiff({"job", "ls"});
  EXPECT_EQ(unreachable.exitCode, 3) << unreachable.err;
  EXPECT_THAT(unreachable.err, HasSubstr("127.0.0.1"));
}

TEST_F(CliTest, ErrorsAreOneLine) {
  auto missing = skiff({"job", "get", "job-000000000000-00000000"});
  std::string err = missing.err;
  while (!err.empty() && err.back() == '\n') err.pop_back();
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

TEST_F(CliTest, CompletionScriptNamesTheVerbs) {
  auto completion = skiff({"completion", "bash"});
  EXPECT_EQ(completion.exitCode, 0);
  EXPECT_THAT(completion.out, HasSubstr("validate"));
  EXPECT_THAT(completion.out, HasSubstr("drain"));
}

}  // namespace
}  // namespace skiff::testing
