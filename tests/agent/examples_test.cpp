// Every file in examples/ runs as written against the all-in-one cluster the Quick start makes:
// a real `skiffd --with-agent`, a docker-registry on loopback holding the sample image built by
// scripts/sample-image.sh, and the `skiff` client. The only change to a file is the registry's
// address (the Quick start's 127.0.0.1:5000 becomes this test's registry). Root only; skipped
// with the reason when a program is missing, but a registry or image build that fails fails.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration/skiffd_process.h"
#include "testing/local_registry.h"
#include "testing/requirements.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;
namespace itest = image::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kQuickStartRegistry = "127.0.0.1:5000";

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string skipReason() {
  bool runtime = access("/usr/bin/crun", X_OK) == 0 || access("/usr/sbin/runc", X_OK) == 0;
  return skiff::testing::firstMissing({skiff::testing::missingRoot("containers, mounts, cgroups"),
                                       runtime ? "" : "neither crun nor runc is installed",
                                       itest::missingPrerequisites()});
}

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE_NOTHING_MISSING(skipReason());
    dir_ = std::make_unique<itest::TempDir>("skiff-examples-test");
    auto registry = itest::LocalRegistry::start(dir_->path() + "/registry");
    ASSERT_TRUE(registry) << "docker-registry did not start: " << registry.error().message();
    registry_ = std::move(*registry);
    // The Quick start's own script builds and pushes the sample image.
    auto pushed = testing::runCommand(
        {"/bin/bash", std::string(SKIFF_SOURCE_DIR) + "/scripts/sample-image.sh"},
        {"SKIFF_REGISTRY=" + registry_->host(),
         "SKIFF_REGISTRY_STATE=" + dir_->path() + "/sample"});
    ASSERT_EQ(pushed.exitCode, 0) << pushed.out << pushed.err;

    agentDir_ = dir_->path() + "/agent";
    skiffd_ = std::make_unique<testing::SkiffdProcess>(std::vector<std::string>{
        "--with-agent", "--agent-state-dir", agentDir_, "--agent-node-id", "examples-node"});
    ASSERT_TRUE(skiffd_->start()) << skiffd_->error();
    client_ = skiffd_->client();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto nodes = client_->call("GET", "/v1/nodes", nullptr);
      if (nodes && nodes->ok() && !nodes->body.value("items", json::array()).empty()) return;
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "the embedded agent did not register";
  }

  void TearDown() override {
    if (skiffd_ != nullptr && client_ != nullptr) {
      // Containers outlive their agent: stop every job's tasks before skiffd goes.
      for (const std::string& jobId : jobs_) {
        client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
      }
      for (const std::string& jobId : jobs_) waitFinished(jobId, 60s);
    }
    client_.reset();
    if (skiffd_ != nullptr) skiffd_->stop();
    skiffd_.reset();
    // Whatever a failed test left running: the runtime's containers, then the mounts.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(agentDir_ + "/containers", ec)) {
      std::string id = entry.path().filename().string();
      for (const char* runtime : {"/usr/bin/crun", "/usr/sbin/runc"}) {
        if (access(runtime, X_OK) == 0) {
          itest::runCommand({runtime, "--root", agentDir_ + "/runtime", "delete", "--force", id});
        }
      }
    }
    if (dir_ != nullptr) itest::unmountAll(dir_->path());
    registry_.reset();
    dir_.reset();
  }

  // Runs the `skiff` client against this cluster.
  testing::CommandResult skiff(std::vector<std::string> args) {
    args.insert(args.begin(), testing::SkiffdProcess::skiffCliPath());
    return testing::runCommand(
        args, {"SKIFF_ADDR=" + skiffd_->address(), "SKIFF_TOKEN=" + skiffd_->adminToken()});
  }

  // The example as the Quick start would use it, pointing at this test's registry.
  std::string localCopy(const fs::path& example) {
    std::string text = readFile(example.string());
    for (size_t at = text.find(kQuickStartRegistry); at != std::string::npos;
         at = text.find(kQuickStartRegistry, at)) {
      text.replace(at, std::string(kQuickStartRegistry).size(), registry_->host());
    }
    std::string copy = dir_->path() + "/" + example.filename().string();
    std::ofstream(copy) << text;
    return copy;
  }

  json job(const std::string& jobId) {
    auto response = client_->call("GET", "/v1/jobs/" + jobId, nullptr);
    return response && response->ok() ? response->body : json();
  }

  json waitFinished(const std::string& jobId, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = job(jobId);
      if (last.is_object() && last["status"].value("state", "") == "Finished") return last;
      std::this_thread::sleep_for(200ms);
    }
    return last;
  }

  json tasks(const std::string& jobId) {
    auto response = client_->call("GET", "/v1/tasks?jobId=" + jobId, nullptr);
    return response && response->ok() ? response->body.value("items", json::array())
                                      : json::array();
  }

  void runBatch(const fs::path& example, const std::string& file) {
    auto ran = skiff({"job", "run", file, "--wait", "-o", "json"});
    json finished = json::parse(ran.out, nullptr, false);
    ASSERT_TRUE(finished.is_object()) << ran.out << ran.err;
    std::string jobId = finished.value("id", "");
    jobs_.push_back(jobId);
    std::string name = example.filename().string();
    if (name == "hello-batch.yaml") {
      ASSERT_EQ(ran.exitCode, 0) << ran.err;
      json list = tasks(jobId);
      ASSERT_EQ(list.size(), 1u) << list.dump();
      auto logs = skiff({"logs", list[0].value("id", "")});
      EXPECT_EQ(logs.exitCode, 0) << logs.err;
      EXPECT_EQ(logs.out, "hello from skiff");  // runCommand trims the last newline.
      return;
    }
    // A job whose command may fail on purpose (retry-exponential.yaml): every attempt ran the
    // command and ended with its exit code, none for want of a program or an image.
    EXPECT_TRUE(ran.exitCode == 0 || ran.exitCode == 1) << ran.exitCode << ran.err;
    for (const json& task : tasks(jobId)) {
      std::string reason = task.value("reason", "");
      EXPECT_TRUE(reason == "normal" || reason == "failed") << task.dump();
      int exitCode = task.value("exitCode", -1);
      EXPECT_TRUE(exitCode == 0 || exitCode == 1) << task.dump();
    }
  }

  void runService(const std::string& file) {
    auto submitted = skiff({"job", "run", file});
    ASSERT_EQ(submitted.exitCode, 0) << submitted.err;
    std::string jobId = submitted.out.substr(0, submitted.out.find('\n'));
    jobs_.push_back(jobId);
    int64_t desired = 0;
    json endpoints;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      json current = job(jobId);
      desired = current.is_object() ? current["capacity"].value("desired", 0) : 0;
      auto listed = client_->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
      if (listed && listed->ok()) endpoints = listed->body.value("items", json::array());
      if (desired > 0 && static_cast<int64_t>(endpoints.size()) == desired) break;
      std::this_thread::sleep_for(200ms);
    }
    ASSERT_GT(desired, 0);
    ASSERT_EQ(static_cast<int64_t>(endpoints.size()), desired)
        << "tasks that passed their readiness check: " << endpoints.dump()
        << "\ntasks: " << tasks(jobId).dump();
    for (const json& endpoint : endpoints) {
      std::string url = "http://" + endpoint.value("ip", "") + ":8080/";
      auto got = testing::runCommand({itest::busyboxPath(), "wget", "-q", "-O", "-", url});
      EXPECT_EQ(got.exitCode, 0) << url << ": " << got.err;
      EXPECT_EQ(got.out, "hello from skiff") << url;
    }
    for (const json& task : tasks(jobId)) {
      EXPECT_EQ(task.value("state", ""), "Started") << "no task crash-loops: " << task.dump();
    }
  }

  std::unique_ptr<itest::TempDir> dir_;
  std::unique_ptr<itest::LocalRegistry> registry_;
  std::unique_ptr<testing::SkiffdProcess> skiffd_;
  std::unique_ptr<client::ApiClient> client_;
  std::string agentDir_;
  std::vector<std::string> jobs_;
};

TEST_F(ExamplesTest, EveryExampleRunsAsWrittenOnTheAllInOneCluster) {
  std::vector<fs::path> examples;
  for (const auto& entry : fs::directory_iterator(std::string(SKIFF_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() == ".yaml") examples.push_back(entry.path());
  }
  // Security groups first, as the Quick start applies them: job files name them.
  auto isGroup = [](const fs::path& path) {
    return readFile(path.string()).find("\ningress:") != std::string::npos;
  };
  std::sort(examples.begin(), examples.end(), [&](const fs::path& a, const fs::path& b) {
    if (isGroup(a) != isGroup(b)) return isGroup(a);
    return a < b;
  });
  ASSERT_GE(examples.size(), 3u);
  for (const fs::path& example : examples) {
    SCOPED_TRACE(example.filename().string());
    std::string file = localCopy(example);
    if (isGroup(example)) {
      auto applied = skiff({"sg", "apply", file});
      EXPECT_EQ(applied.exitCode, 0) << applied.err;
      continue;
    }
    auto validated = skiff({"job", "validate", file});
    ASSERT_EQ(validated.exitCode, 0) << validated.out << validated.err;
    if (readFile(file).find("\nservice:") != std::string::npos) {
      runService(file);
    } else {
      runBatch(example, file);
    }
  }
}

}  // namespace
}  // namespace skiff::agent
