// The agent's own logic against the real skiffd, with every back end faked (tests/testing/fake_*):
// no containers, mounts, namespaces or nftables, so it needs no root and never skips. What is
// checked is what the agent decides and reports: the container config it starts, the reason and
// exit code of each end, which failures skiffd may retry, recovery after a restart, health checks
// (through the runtime's exec, on a manual clock) and the metadata proxy's credentials.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "agent/image/manifest.h"
#include "common/clock.h"
#include "integration/api_shortcuts.h"
#include "integration/skiffd_process.h"
#include "testing/fake_identity_provider.h"
#include "testing/fake_images.h"
#include "testing/fake_network.h"
#include "testing/fake_runtime.h"
#include "testing/local_registry.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using skiff::testing::FakeIdentityProvider;
using skiff::testing::FakeImages;
using skiff::testing::FakeNetworkDriver;
using skiff::testing::FakeRegistry;
using skiff::testing::FakeRulesetApplier;
using skiff::testing::FakeRuntime;

constexpr const char* kImage = "registry.test/skiff/busybox:latest";
constexpr const char* kNodeId = "logic-node";

class AgentLogicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<image::testing::TempDir>("skiff-agent-logic");
    image::ImageConfig config;
    config.cmd = {"sh"};
    config.env = {"PATH=/bin"};
    images_->add(kImage, config);
  }

  void TearDown() override {
    agent_.reset();
    skiffd_.reset();
    dir_.reset();
  }

  // skiffd with `flags`, and a client with the admin token.
  void startSkiffd(std::vector<std::string> flags = {"--system-retry-delay", "60"}) {
    skiffd_ = std::make_unique<skiff::testing::SkiffdProcess>(std::move(flags));
    ASSERT_TRUE(skiffd_->start()) << skiffd_->error();
    client_ = skiffd_->client();
  }

  AgentOptions agentOptions() const {
    AgentOptions options;
    options.server = skiffd_->address();
    options.joinToken = skiffd_->joinToken();
    options.nodeId = kNodeId;
    options.stateDir = dir_->path() + "/agent";
    options.resources = {.cpu = 2, .memoryMB = 2048, .diskMB = 20000, .networkMbps = 1000};
    options.monitorPath = "/nonexistent/skiff-monitor";  // The fake runtime starts nothing.
    options.diskLimits = false;
    options.logListen = "";
    options.networking = false;
    options.heartbeatInterval = 200ms;
    options.pollWait = 500ms;
    options.stopGrace = 1s;
    return options;
  }

  AgentDeps agentDeps() {
    AgentDeps deps;
    deps.runtime = runtime_;
    deps.images = images_;
    deps.networkDriver = networkDriver_;
    deps.firewall = firewall_;
    deps.identity = identity_;
    deps.metadataListener = skiff::testing::openLoopbackListener;
    deps.clock = &clock_;
    return deps;
  }

  void startAgent(AgentOptions options, AgentDeps deps) {
    auto created = Agent::create(std::move(options), std::move(deps));
    ASSERT_TRUE(created) << created.error().message();
    agent_ = std::move(*created);
    auto started = agent_->start();
    ASSERT_TRUE(started) << started.error().message();
  }

  void startAgent() { startAgent(agentOptions(), agentDeps()); }

  json batchJob(std::vector<std::string> command, int retries = 0) const {
    return {
        {"applicationName", "logictest"},
        {"owner", {{"teamEmail", "t@example.com"}}},
        {"container",
         {{"image", kImage},
          {"command", command},
          {"resources", {{"cpu", 0.5}, {"memoryMB", 64}, {"diskMB", 64}, {"networkMbps", 10}}}}},
        {"batch",
         {{"size", 1},
          {"runtimeLimitSec", 600},
          {"retryPolicy", {{"immediate", {{"retries", retries}}}}}}}};
  }

  std::string submit(const json& job) { return skiff::testing::submitJob(*client_, job); }

  json tasks(const std::string& jobId) { return skiff::testing::tasksOfJob(*client_, jobId); }

  json task(const std::string& taskId) { return skiff::testing::getTask(*client_, taskId); }

  // Polls `done` until it holds or `timeout` passes (the agent reports asynchronously).
  static bool eventually(const std::function<bool()>& done, std::chrono::seconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return done();
  }

  // Waits until the task is in `state`; returns the task as skiffd last showed it.
  json waitTask(const std::string& taskId, const std::string& state) {
    json last;
    bool reached = eventually([&] {
      last = task(taskId);
      return last.value("state", "") == state;
    });
    EXPECT_TRUE(reached) << "task " << taskId << " never got to " << state << ": " << last.dump();
    return last;
  }

  json waitJobFinished(const std::string& jobId) {
    json job;
    bool finished = eventually([&] {
      auto response = client_->call("GET", "/v1/jobs/" + jobId, nullptr);
      if (response && response->ok()) job = response->body;
      return job.is_object() && job["status"].value("state", "") == "Finished";
    });
    EXPECT_TRUE(finished) << "job " << jobId << " did not finish: " << job.dump()
                          << "\ntasks: " << tasks(jobId).dump();
    return job;
  }

  // Waits until the fake runtime started the container of `taskId`; its config.
  runtime::ContainerConfig waitStarted(const std::string& taskId) {
    auto config = runtime_->waitStarted(taskId, 20s);
    EXPECT_TRUE(config) << "container " << taskId << " was never started";
    return config.value_or(runtime::ContainerConfig{});
  }

  std::unique_ptr<image::testing::TempDir> dir_;
  std::unique_ptr<skiff::testing::SkiffdProcess> skiffd_;
  std::unique_ptr<client::ApiClient> client_;
  ManualClock clock_;
  std::shared_ptr<FakeRuntime> runtime_ = std::make_shared<FakeRuntime>();
  std::shared_ptr<FakeImages> images_ = std::make_shared<FakeImages>();
  std::shared_ptr<FakeNetworkDriver> networkDriver_ = std::make_shared<FakeNetworkDriver>();
  std::shared_ptr<FakeRulesetApplier> firewall_ = std::make_shared<FakeRulesetApplier>();
  std::shared_ptr<FakeIdentityProvider> identity_ = std::make_shared<FakeIdentityProvider>(clock_);
  std::unique_ptr<Agent> agent_;
};

TEST_F(AgentLogicTest, TaskStartsThroughTheRuntimeAndFinishesWithItsExitCode) {
  startSkiffd();
  startAgent();
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";

  runtime::ContainerConfig config = waitStarted(taskId);
  EXPECT_EQ(config.bundle.args, (std::vector<std::string>{"echo", "hello"}));
  EXPECT_EQ(config.bundle.rootfsPath, dir_->path() + "/agent/rootfs/" + taskId + "/rootfs");
  EXPECT_EQ(config.bundle.cwd, "/");
  EXPECT_EQ(config.bundle.cpuCores, 0.5);
  EXPECT_EQ(config.bundle.memoryBytes, uint64_t{64} << 20);
  EXPECT_EQ(config.runtimeLimit, 600s);
  const auto& env = config.bundle.env;
  EXPECT_NE(std::find(env.begin(), env.end(), "PATH=/bin"), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "SKIFF_TASK_ID=" + taskId), env.end());
  EXPECT_NE(std::find(env.begin(), env.end(), "SKIFF_JOB_ID=" + jobId), env.end());

  json started = waitTask(taskId, "Started");
  EXPECT_EQ(started.value("nodeId", ""), kNodeId);
  EXPECT_EQ(started.value("image", "").rfind("registry.test/skiff/busybox@sha256:", 0), 0u)
      << started.dump();

  ASSERT_TRUE(runtime_->exit(taskId, 0));
  waitJobFinished(jobId);
  json finished = task(taskId);
  EXPECT_EQ(finished["reason"], "normal") << finished.dump();
  EXPECT_EQ(finished.value("exitCode", -1), 0);
  // The root filesystem was released and its directory removed.
  EXPECT_TRUE(eventually([&] { return images_->mounted().empty(); }));
  EXPECT_FALSE(fs::exists(dir_->path() + "/agent/rootfs/" + taskId));
  EXPECT_EQ(images_->pullCount(kImage), 1);
}

TEST_F(AgentLogicTest, ContainerExitingNonZeroIsReportedFailedWithItsExitCode) {
  startSkiffd();
  startAgent();
  std::string jobId = submit(batchJob({"false"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitStarted(taskId);
  waitTask(taskId, "Started");
  ASSERT_TRUE(runtime_->exit(taskId, 3));
  waitJobFinished(jobId);
  json finished = task(taskId);
  EXPECT_EQ(finished["reason"], "failed") << finished.dump();
  EXPECT_EQ(finished.value("exitCode", -1), 3);
  EXPECT_EQ(finished.value("message", ""), "exit code 3");
}

TEST_F(AgentLogicTest, ARegistrysDefinitiveAnswerEndsTheTaskWithImageNotFoundWithoutRetries) {
  // skiffd retries system errors at once and often: a retried failure would show as more tasks
  // and more registry requests.
  startSkiffd({"--system-retry-delay", "0", "--max-system-retries", "5"});
  // The real image store, asking a registry that knows no such manifest.
  auto registry = std::make_shared<FakeRegistry>(
      Error(ErrorCode::kNotFound, "MANIFEST_UNKNOWN: manifest unknown"));
  AgentDeps deps = agentDeps();
  deps.images = nullptr;
  deps.registry = registry;
  startAgent(agentOptions(), std::move(deps));
  std::string jobId = submit(batchJob({"echo", "hello"}, /*retries=*/3));
  ASSERT_FALSE(jobId.empty());
  waitJobFinished(jobId);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], jobId + "-0-0") << "retried: " << list.dump();
  EXPECT_EQ(list[0]["reason"], "imageNotFound") << list[0].dump();
  EXPECT_NE(list[0].value("message", "").find("manifest unknown"), std::string::npos)
      << list[0].dump();
  EXPECT_EQ(registry->manifestRequests(), 1);
  EXPECT_EQ(runtime_->startCount(), 0);
}

TEST_F(AgentLogicTest, ARefusedPullEndsTheTaskWithImageDenied) {
  startSkiffd({"--system-retry-delay", "0", "--max-system-retries", "5"});
  images_->failPull(kImage, Error(ErrorCode::kPermissionDenied, "DENIED: requested access"));
  startAgent();
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  waitJobFinished(jobId);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], jobId + "-0-0") << "retried: " << list.dump();
  EXPECT_EQ(list[0]["reason"], "imageDenied") << list[0].dump();
  EXPECT_EQ(images_->pullCount(kImage), 1);
}

TEST_F(AgentLogicTest, AnUnreachableRegistryIsRetriedABoundedNumberOfTimes) {
  startSkiffd({"--system-retry-delay", "0", "--max-system-retries", "2"});
  images_->failPull(kImage, Error(ErrorCode::kUnavailable, "connect: connection refused"));
  startAgent();
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  waitJobFinished(jobId);
  // Each attempt was a new task (the list shows the last one), and each pulled again.
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], jobId + "-0-2") << list.dump();
  EXPECT_EQ(list[0]["reason"], "transientSystemError") << list.dump();
  EXPECT_EQ(list[0].value("systemErrorsInRow", 0), 2) << list.dump();
  EXPECT_EQ(images_->pullCount(kImage), 3);
  EXPECT_EQ(runtime_->startCount(), 0);
}

TEST_F(AgentLogicTest, ARestartedAgentReadoptsTheRunningContainerAndReportsItsExit) {
  startSkiffd();
  startAgent();
  std::string jobId = submit(batchJob({"sleep", "600"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitStarted(taskId);
  waitTask(taskId, "Started");

  // The agent stops; the container keeps running.
  agent_->stop();
  agent_.reset();
  EXPECT_TRUE(runtime_->running(taskId));
  startAgent();
  ASSERT_TRUE(runtime_->exit(taskId, 7));
  waitJobFinished(jobId);
  json finished = task(taskId);
  EXPECT_EQ(finished["reason"], "failed") << finished.dump();
  EXPECT_EQ(finished.value("exitCode", -1), 7);
  EXPECT_EQ(runtime_->startCount(), 1) << "re-adopted, not started again";
}

TEST_F(AgentLogicTest, AnExitWhileTheAgentWasDownIsReportedByTheNextOne) {
  startSkiffd();
  startAgent();
  std::string jobId = submit(batchJob({"true"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitStarted(taskId);
  waitTask(taskId, "Started");
  agent_->stop();
  agent_.reset();
  ASSERT_TRUE(runtime_->exit(taskId, 0));
  startAgent();
  waitJobFinished(jobId);
  json finished = task(taskId);
  EXPECT_EQ(finished["reason"], "normal") << finished.dump();
  EXPECT_EQ(finished.value("exitCode", -1), 0);
}

TEST_F(AgentLogicTest, AContainerTheRuntimeCannotStartIsALocalSystemError) {
  startSkiffd();
  runtime_->failStarts(Error(ErrorCode::kInternal, "crun: cannot allocate memory"));
  startAgent();
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  json finished = waitTask(taskId, "Finished");
  EXPECT_EQ(finished["reason"], "localSystemError") << finished.dump();
  EXPECT_NE(finished.value("message", "").find("cannot allocate memory"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return images_->mounted().empty(); }));
}

TEST_F(AgentLogicTest, ANetworkSetupFailureIsTheTasksReason) {
  startSkiffd();
  networkDriver_->failAttach(Error(ErrorCode::kInternal, "veth: operation not supported"));
  AgentOptions options = agentOptions();
  options.networking = true;
  startAgent(std::move(options), agentDeps());
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  json finished = waitTask(taskId, "Finished");
  EXPECT_EQ(finished["reason"], "localSystemError") << finished.dump();
  EXPECT_NE(finished.value("message", "").find("network: "), std::string::npos) << finished.dump();
  EXPECT_NE(finished.value("message", "").find("veth: operation not supported"), std::string::npos)
      << finished.dump();
  EXPECT_GE(networkDriver_->attachCount(), 1);
  EXPECT_EQ(runtime_->startCount(), 0);
}

TEST_F(AgentLogicTest, ANetworkedTaskGetsItsAddressAndItsRolesCredentialsArePrefetched) {
  startSkiffd();
  AgentOptions options = agentOptions();
  options.networking = true;
  startAgent(std::move(options), agentDeps());
  json job = batchJob({"sleep", "600"});
  job["container"]["securityProfile"] = {{"iamRole", "app-reader"}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";

  runtime::ContainerConfig config = waitStarted(taskId);
  EXPECT_EQ(config.bundle.netnsPath, "/nonexistent/netns/" + taskId);
  ASSERT_EQ(config.bundle.fileBinds.size(), 2u);
  EXPECT_EQ(config.bundle.fileBinds[0].destination, "/etc/hosts");
  json started = waitTask(taskId, "Started");
  EXPECT_FALSE(started.value("ip", "").empty()) << started.dump();
  EXPECT_EQ(networkDriver_->endpoints(), std::set<std::string>{taskId});
  // The metadata proxy asked for the task's role before the task could.
  EXPECT_TRUE(eventually([&] {
    for (const auto& [id, role] : identity_->roleRequests()) {
      if (id == taskId && role == "app-reader") return true;
    }
    return false;
  })) << identity_->roleRequests().size();

  ASSERT_TRUE(runtime_->exit(taskId, 0));
  waitJobFinished(jobId);
  // The endpoint goes with the task.
  EXPECT_TRUE(eventually([&] { return networkDriver_->endpoints().empty(); }));
}

TEST_F(AgentLogicTest, ReadinessIsCheckedThroughTheRuntimesExecOnTheAgentsClock) {
  startSkiffd();
  std::atomic<bool> ready = false;
  runtime_->onExec([&](const std::string&, const std::vector<std::string>& command) {
    EXPECT_EQ(command, (std::vector<std::string>{"cat", "/ready"}));
    return ready ? FakeRuntime::ProcessResult{.exitCode = 0}
                 : FakeRuntime::ProcessResult{.exitCode = 1, .err = "cat: /ready: No such file"};
  });
  startAgent();
  json job = batchJob({"sleep", "600"});
  job["container"]["readiness"] = {
      {"exec", {{"command", {"cat", "/ready"}}}}, {"intervalMs", 1000}, {"timeoutMs", 200}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitStarted(taskId);
  // The first attempt is due at once and fails; the next one waits for the clock.
  ASSERT_TRUE(eventually([&] { return runtime_->execCount(taskId) == 1; }));
  EXPECT_FALSE(waitTask(taskId, "Started").value("ready", true));
  ready = true;
  clock_.advanceMs(999);
  std::this_thread::sleep_for(400ms);  // Longer than one turn of the agent's watch loop.
  EXPECT_EQ(runtime_->execCount(taskId), 1) << "not due before its interval";
  clock_.advanceMs(1);
  EXPECT_TRUE(eventually([&] { return task(taskId).value("ready", false); }))
      << task(taskId).dump();
  EXPECT_EQ(runtime_->execCount(taskId), 2);

  ASSERT_TRUE(client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr));
  waitJobFinished(jobId);
  EXPECT_EQ(task(taskId)["reason"], "killed") << task(taskId).dump();
  EXPECT_GE(runtime_->stopCount(taskId), 1);
}

TEST_F(AgentLogicTest, ALivenessFailureStopsTheContainerAndFailsTheTaskWithTheChecksOutput) {
  startSkiffd();
  runtime_->onExec([](const std::string&, const std::vector<std::string>&) {
    return FakeRuntime::ProcessResult{.exitCode = 1,
                                      .err = "cat: /alive: No such file or directory"};
  });
  startAgent();
  json job = batchJob({"sleep", "600"});
  job["container"]["liveness"] = {{"exec", {{"command", {"cat", "/alive"}}}},
                                  {"intervalMs", 1000},
                                  {"timeoutMs", 200},
                                  {"failureThreshold", 2}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitStarted(taskId);
  ASSERT_TRUE(eventually([&] { return runtime_->execCount(taskId) == 1; }));
  EXPECT_EQ(runtime_->stopCount(taskId), 0) << "one failure is below the threshold";
  clock_.advanceMs(1000);
  ASSERT_TRUE(eventually([&] { return runtime_->stopCount(taskId) == 1; }));
  waitJobFinished(jobId);
  json finished = task(taskId);
  EXPECT_EQ(finished["reason"], "failed") << finished.dump();
  EXPECT_NE(finished.value("message", "").find("liveness check failed"), std::string::npos)
      << finished.dump();
  EXPECT_NE(finished.value("message", "").find("cat: /alive: No such file or directory"),
            std::string::npos)
      << finished.dump();
}

}  // namespace
}  // namespace skiff::agent
