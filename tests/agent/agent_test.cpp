// End to end: the real skiffd, the real skiff-agent binary, a real docker-registry on loopback
// holding a busybox image built offline (umoci + skopeo), runc, skiff-monitor and tini.
// Root only; skipped with the reason when something is missing. Every process, mount, cgroup
// and directory is cleaned up by the fixture, also when a test fails.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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

#include "agent/image/digest.h"
#include "agent/runtime/cgroup.h"
#include "integration/api_shortcuts.h"
#include "integration/skiffd_process.h"
#include "testing/local_registry.h"
#include "testing/requirements.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;
namespace itest = image::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kCrun = "/usr/bin/crun";
constexpr const char* kTini = "/usr/bin/tini-static";

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// What the host lacks for these tests; empty when nothing is missing.
std::string skipReason() {
  return skiff::testing::firstMissing(
      {skiff::testing::missingRoot("containers, mounts, cgroups"),
       skiff::testing::missingExecutable(kRunc), skiff::testing::missingExecutable(kTini),
       itest::missingPrerequisites(),
       access(SKIFF_AGENT_PATH, X_OK) == 0 ? "" : "skiff-agent is not built",
       access(SKIFF_MONITOR_PATH, X_OK) == 0 ? "" : "skiff-monitor is not built"});
}

// The registry and the image, shared by every test of the suite.
struct Suite {
  std::unique_ptr<itest::TempDir> dir;
  std::unique_ptr<itest::LocalRegistry> registry;
  std::string image;  // "127.0.0.1:PORT/skiff/busybox:latest"
  std::string skip;   // What the host lacks.
  std::string error;  // Why the registry or the image could not be made: a failure.
};
Suite* suite = nullptr;

Status buildImage(Suite& s) {
  itest::ImageBuilder builder(s.dir->path() + "/build");
  std::string busybox = itest::busyboxPath();
  SKIFF_TRY_STATUS(builder.create("bb"), "create");
  SKIFF_TRY_STATUS(
      builder.addLayer("bb",
                       [&](const std::string& root) -> Status {
                         SKIFF_TRY_STATUS(itest::copyFileInto(busybox, root, "bin/busybox"), "bb");
                         for (const char* applet :
                              {"sh", "echo", "sleep", "cat", "nc", "tail", "head", "printf",
                               "touch", "rm", "mkdir", "httpd", "kill", "date"}) {
                           std::error_code ec;
                           fs::create_symlink("busybox", root + "/bin/" + applet, ec);
                           if (ec) return fail(ErrorCode::kIo, ec.message());
                         }
                         return {};
                       }),
      "layer");
  SKIFF_TRY_STATUS(builder.configure("bb", {"--config.cmd", "sh", "--config.env", "PATH=/bin"}),
                   "config");
  s.image = s.registry->host() + "/skiff/busybox:latest";
  SKIFF_TRY_STATUS(builder.copy("bb", "docker://" + s.image), "push");
  // A broken release of the same program: its default command fails at once.
  SKIFF_TRY_STATUS(builder.configure("bb", {"--clear=config.cmd", "--config.cmd", "sh",
                                            "--config.cmd", "-c", "--config.cmd", "exit 3"}),
                   "broken config");
  return builder.copy("bb", "docker://" + s.registry->host() + "/skiff/broken:latest");
}

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite = new Suite;
    suite->skip = skipReason();
    if (!suite->skip.empty()) return;
    suite->dir = std::make_unique<itest::TempDir>("skiff-agent-test");
    auto registry = itest::LocalRegistry::start(suite->dir->path() + "/registry");
    if (!registry) {
      suite->error = "docker-registry did not start: " + registry.error().message();
      return;
    }
    suite->registry = std::move(*registry);
    if (auto built = buildImage(*suite); !built) {
      suite->error = "building the test image failed: " + built.error().message();
    }
  }
  static void TearDownTestSuite() {
    delete suite;
    suite = nullptr;
  }

  void SetUp() override {
    SKIFF_REQUIRE_NOTHING_MISSING(suite->skip);
    ASSERT_TRUE(suite->error.empty()) << suite->error;
    auto layout = runtime::detectHostCgroupLayout();
    ASSERT_TRUE(layout) << layout.error().message();
    layout_ = *layout;
    dir_ = std::make_unique<itest::TempDir>("skiff-agent-e2e");
    agentDir_ = dir_->path() + "/agent";
    cgroupParent_ = "/skiff-agent-test-" + std::to_string(getpid());
    skiffd_ = std::make_unique<testing::SkiffdProcess>(
        std::vector<std::string>{"--system-retry-delay", "60", "--cpu-metric-interval", "1"});
    ASSERT_TRUE(skiffd_->start()) << skiffd_->error();
    client_ = skiffd_->client();
    startAgent();
  }

  // Whatever happened: no agent, container, monitor, mount, cgroup or directory remains.
  void TearDown() override {
    if (dir_ == nullptr) return;
    stopAgent(SIGTERM);
    std::error_code ec;
    std::string containers = agentDir_ + "/containers";
    if (fs::exists(containers, ec)) {
      for (const auto& entry : fs::directory_iterator(containers, ec)) {
        // The runtime that made the container: runc keeps state.json, crun status. (runc
        // `delete --force` removes a state directory without state.json, crun's included.)
        std::string id = entry.path().filename().string();
        std::string state = agentDir_ + "/runtime" + "/" + id;
        const char* runtime = fs::exists(state + "/state.json", ec) ? kRunc : kCrun;
        if (fs::exists(state, ec) && access(runtime, X_OK) == 0) {
          itest::runCommand({runtime, "--root", agentDir_ + "/runtime", "delete", "--force", id});
        }
        // The monitor records the exit and exits once its container is gone.
        for (int i = 0; i < 100 && !fs::exists(entry.path() / "exit"); ++i) {
          std::this_thread::sleep_for(50ms);
        }
      }
    }
    itest::unmountAll(dir_->path());
    runtime::removeCgroupTree(layout_, cgroupParent_);
    skiffd_.reset();
    dir_.reset();
  }

  void startAgent() {
    std::string log = dir_->path() + "/agent.log";
    std::vector<std::string> args = {
        SKIFF_AGENT_PATH, "--server", skiffd_->address(), "--join-token-file",
        skiffd_->stateDir() + "/join.token", "--node-id", "test-node", "--state-dir", agentDir_,
        "--cpu", "2", "--memory-mb", "2048", "--disk-mb", "20000", "--monitor", SKIFF_MONITOR_PATH,
        // crun where usable (the agent makes a hybrid host
        // usable for it), else runc: the production default.
        "--runtime", "auto", "--keep-finished-containers", "3", "--cgroup-parent", cgroupParent_,
        "--heartbeat-ms", "500", "--poll-wait-ms", "1000", "--stop-grace-sec", "2"};
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (std::string& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    agentPid_ = pid;
  }

  void stopAgent(int signal) {
    if (agentPid_ <= 0) return;
    kill(agentPid_, signal);
    int status = 0;
    waitpid(agentPid_, &status, 0);
    agentPid_ = -1;
  }

  std::string agentLog() const { return readFile(dir_->path() + "/agent.log"); }

  json batchJob(std::vector<std::string> command, int retries = 0, std::string image = "") {
    return {
        {"applicationName", "agenttest"},
        {"owner", {{"teamEmail", "t@example.com"}}},
        {"container",
         {{"image", image.empty() ? suite->image : image},
          {"command", command},
          {"resources", {{"cpu", 0.5}, {"memoryMB", 64}, {"diskMB", 64}, {"networkMbps", 10}}}}},
        {"batch",
         {{"size", 1},
          {"runtimeLimitSec", 60},
          {"retryPolicy", {{"immediate", {{"retries", retries}}}}}}}};
  }

  std::string submit(const json& job) { return skiff::testing::submitJob(*client_, job); }

  json tasks(const std::string& jobId) { return skiff::testing::tasksOfJob(*client_, jobId); }

  json task(const std::string& taskId) { return skiff::testing::getTask(*client_, taskId); }

  // Waits until `done(job)` holds; returns the last job seen.
  json waitJob(const std::string& jobId, const std::function<bool(const json&)>& done,
               std::chrono::seconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    json job;
    while (std::chrono::steady_clock::now() < deadline) {
      auto response = client_->call("GET", "/v1/jobs/" + jobId, nullptr);
      if (response && response->ok()) {
        job = response->body;
        if (done(job)) return job;
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "job " << jobId << " did not get there in time: " << job.dump()
                  << "\ntasks: " << tasks(jobId).dump() << "\nagent log:\n"
                  << agentLog();
    return job;
  }

  static bool finished(const json& job) { return job["status"].value("state", "") == "Finished"; }

  std::string stdoutOf(const std::string& taskId) {
    return readFile(agentDir_ + "/containers/" + taskId + "/stdout.log");
  }

  runtime::CgroupLayout layout_;
  std::unique_ptr<itest::TempDir> dir_;
  std::string agentDir_;
  std::string cgroupParent_;
  std::unique_ptr<testing::SkiffdProcess> skiffd_;
  std::unique_ptr<client::ApiClient> client_;
  pid_t agentPid_ = -1;
};

TEST_F(AgentTest, NodeRegistersWithItsResources) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  json node;
  while (std::chrono::steady_clock::now() < deadline) {
    auto response = client_->call("GET", "/v1/nodes/test-node", nullptr);
    if (response && response->ok()) {
      node = response->body;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(node.is_object()) << agentLog();
  EXPECT_EQ(node["state"], "Ready");
  EXPECT_EQ(node["resources"]["memoryMB"], 2048);
  EXPECT_EQ(node["resources"]["cpu"], 2.0);
}

TEST_F(AgentTest, EchoHelloFinishesNormallyAndLogsItsOutput) {
  std::string jobId = submit(batchJob({"echo", "hello"}));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, finished);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  const json& task = list[0];
  EXPECT_EQ(task["state"], "Finished");
  EXPECT_EQ(task["reason"], "normal") << task.dump() << agentLog();
  EXPECT_EQ(task.value("exitCode", -1), 0);
  EXPECT_EQ(task["nodeId"], "test-node");
  EXPECT_EQ(stdoutOf(task["id"]), "hello\n");
  // The root filesystem was unmounted and its directory removed.
  EXPECT_FALSE(fs::exists(agentDir_ + "/rootfs/" + task["id"].get<std::string>()));
}

TEST_F(AgentTest, OnlyTheNewestExitedContainersAreKept) {
  std::vector<std::string> taskIds;
  for (int i = 0; i < 5; ++i) {
    std::string jobId = submit(batchJob({"echo", "run " + std::to_string(i)}));
    ASSERT_FALSE(jobId.empty());
    waitJob(jobId, finished);
    taskIds.push_back(jobId + "-0-0");
  }
  // The agent removes the oldest right after the newest exit; give it that moment.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fs::exists(agentDir_ + "/containers/" + taskIds[1]) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(fs::exists(agentDir_ + "/containers/" + taskIds[0])) << agentLog();
  EXPECT_FALSE(fs::exists(agentDir_ + "/containers/" + taskIds[1])) << agentLog();
  for (size_t i = 2; i < taskIds.size(); ++i) {
    EXPECT_EQ(stdoutOf(taskIds[i]), "run " + std::to_string(i) + "\n");
  }
}

TEST_F(AgentTest, MetadataProxyAnswersInsideTheContainerWithIMDSv2) {
  // IMDSv2 by hand with nc: a token from PUT, then GETs with and without it.
  std::string script =
      "T=$(printf 'PUT /latest/api/token HTTP/1.0\\r\\nX-aws-ec2-metadata-token-ttl-seconds: "
      "60\\r\\n\\r\\n' | nc 169.254.169.254 80 | tail -n 1);"
      "printf \"GET /latest/meta-data/instance-id HTTP/1.0\\r\\nX-aws-ec2-metadata-token: "
      "$T\\r\\n\\r\\n\" | nc 169.254.169.254 80 | tail -n 1; echo;"
      "printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' | "
      "nc 169.254.169.254 80 | head -n 1";
  std::string jobId = submit(batchJob({"sh", "-c", script}));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, finished);
  std::string taskId = jobId + "-0-0";
  std::string out = stdoutOf(taskId);
  EXPECT_EQ(out.substr(0, out.find('\n')), taskId) << out << agentLog();
  EXPECT_NE(out.find("401"), std::string::npos) << out;
}

TEST_F(AgentTest, ReadinessCheckMarksTheTaskReadyOnceItPasses) {
  json job = batchJob({"sh", "-c", "sleep 2; touch /ready; sleep 60"});
  job["container"]["readiness"] = {
      {"exec", {{"command", {"cat", "/ready"}}}}, {"intervalMs", 200}, {"timeoutMs", 200}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  std::string taskId = jobId + "-0-0";
  waitJob(jobId, [&](const json& j) { return j["taskCounts"].value("Started", 0) == 1; });
  EXPECT_FALSE(task(taskId).value("ready", true)) << task(taskId).dump();
  waitJob(
      jobId, [&](const json&) { return task(taskId).value("ready", false); }, 20s);
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  waitJob(jobId, finished, 30s);
}

TEST_F(AgentTest, LivenessFailureRestartsTheTaskCountedAsFailedWithTheChecksOutput) {
  json job = batchJob({"sh", "-c", "touch /alive; sleep 2; rm /alive; sleep 60"}, /*retries=*/1);
  job["container"]["liveness"] = {{"exec", {{"command", {"cat", "/alive"}}}},
                                  {"intervalMs", 200},
                                  {"timeoutMs", 200},
                                  {"failureThreshold", 2}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, finished, 40s);
  json first = task(jobId + "-0-0");
  EXPECT_EQ(first["reason"], "failed") << first.dump() << agentLog();
  EXPECT_NE(first.value("message", "").find("liveness check failed"), std::string::npos)
      << first.dump();
  EXPECT_NE(first.value("message", "").find("/alive"), std::string::npos) << first.dump();
  // It passed while /alive existed: the task ran for about 2 s before the check failed it.
  int64_t ranMs = first["stateTimesMs"].value("Finished", int64_t{0}) -
                  first["stateTimesMs"].value("Started", int64_t{0});
  EXPECT_GE(ranMs, 1500) << first.dump();
  // The failure used the job's one retry: the task was started again, and failed the same way.
  json second = task(jobId + "-0-1");
  EXPECT_EQ(second.value("resubmitOf", ""), jobId + "-0-0") << second.dump();
  EXPECT_EQ(second["reason"], "failed") << second.dump();
  EXPECT_NE(second.value("message", "").find("liveness check failed"), std::string::npos)
      << second.dump();
}

// Whether a TCP connection to ip:port opens within a second.
bool connects(const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = inet_pton(AF_INET, ip.c_str(), &address.sin_addr) == 1 &&
            connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return ok;
}

TEST_F(AgentTest, RollingUpdateOfARealServiceKeepsEveryEndpointServing) {
  // busybox httpd serving $VERSION; on SIGTERM it keeps serving for a second (connection draining,
  // as a real service's preStop would) so a client holding a just-fetched list is not refused.
  json job = batchJob({"sh", "-c",
                       "mkdir -p /www && echo $VERSION > /www/index.html && "
                       "httpd -f -p 8080 -h /www & pid=$!; "
                       "trap 'sleep 1; kill $pid; exit 0' TERM; wait $pid"});
  job.erase("batch");
  job["container"]["env"] = {{"VERSION", "1"}};
  job["container"]["ports"] = {8080};
  job["container"]["resources"] = {
      {"cpu", 0.25}, {"memoryMB", 32}, {"diskMB", 16}, {"networkMbps", 10}};
  job["container"]["readiness"] = {
      {"http", {{"port", 8080}, {"path", "/"}}}, {"intervalMs", 200}, {"timeoutMs", 200}};
  job["service"] = {{"capacity", {{"desired", 6}, {"max", 8}}},
                    {"rollout", {{"maxSurge", 1}, {"maxUnavailable", 0}}}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  auto endpoints = [&] {
    auto response = client_->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
    return response && response->ok() ? response->body.value("items", json::array())
                                      : json::array();
  };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (endpoints().size() < 6 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(endpoints().size(), 6u) << tasks(jobId).dump() << agentLog();

  // The poller: every 100 ms the list, and a connection to every endpoint on it.
  std::atomic<bool> polling{true};
  size_t fewest = 6;
  int polls = 0;
  std::vector<std::string> refused;
  std::thread poller([&] {
    auto client = skiffd_->client();
    while (polling) {
      auto response = client->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
      if (response && response->ok()) {
        json items = response->body.value("items", json::array());
        fewest = std::min(fewest, items.size());
        ++polls;
        for (const json& endpoint : items) {
          if (!connects(endpoint.value("ip", ""), 8080)) refused.push_back(endpoint.dump());
        }
      }
      std::this_thread::sleep_for(100ms);
    }
  });
  json container = job["container"];
  container["env"] = {{"VERSION", "2"}};
  auto updated = client_->call("PUT", "/v1/jobs/" + jobId + "/container", &container);
  json history;
  deadline = std::chrono::steady_clock::now() + 120s;
  while (updated && updated->ok() && std::chrono::steady_clock::now() < deadline) {
    auto response = client_->call("GET", "/v1/jobs/" + jobId + "/history", nullptr);
    if (response && response->ok()) history = response->body;
    if (history.value("items", json::array()).size() == 2 &&
        history["items"][0].value("outcome", "") == "current" && !history.contains("rollout")) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  polling = false;
  poller.join();
  ASSERT_TRUE(updated && updated->ok()) << (updated ? updated->body.dump() : "");
  ASSERT_EQ(history["items"][0].value("outcome", ""), "current") << history.dump() << agentLog();
  EXPECT_GT(polls, 5);
  EXPECT_EQ(fewest, 6u) << "the budget allows no unavailable task";
  EXPECT_TRUE(refused.empty()) << refused.size()
                               << " refused, first: " << (refused.empty() ? "" : refused.front());
  // Every endpoint now runs the new revision.
  json last = endpoints();
  ASSERT_EQ(last.size(), 6u);
  for (const json& endpoint : last) {
    std::string taskId = endpoint.value("taskId", "");
    EXPECT_EQ(task(taskId).value("specRevision", 0), 2) << task(taskId).dump();
  }
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  waitJob(jobId, finished, 60s);
}

TEST_F(AgentTest, RolloutToABrokenImageRollsBackOnItsOwn) {
  json job = batchJob({"sleep", "600"});
  job.erase("batch");
  job["container"]["resources"] = {
      {"cpu", 0.25}, {"memoryMB", 32}, {"diskMB", 16}, {"networkMbps", 10}};
  // Healthy means running for 3 s (no readiness check): the broken release exits at once.
  job["service"] = {{"capacity", {{"desired", 2}, {"max", 4}}},
                    {"rollout", {{"maxSurge", 1}, {"maxUnavailable", 0}, {"minHealthyMs", 3000}}}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  auto endpointCount = [&] {
    auto response = client_->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
    return response && response->ok() ? response->body.value("items", json::array()).size() : 0u;
  };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (endpointCount() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(endpointCount(), 2u) << agentLog();
  json container = job["container"];
  container["image"] = suite->registry->host() + "/skiff/broken:latest";
  container.erase("command");
  auto updated = client_->call("PUT", "/v1/jobs/" + jobId + "/container", &container);
  ASSERT_TRUE(updated && updated->ok()) << (updated ? updated->body.dump() : "");
  json history;
  deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto response = client_->call("GET", "/v1/jobs/" + jobId + "/history", nullptr);
    if (response && response->ok()) history = response->body;
    if (history.value("items", json::array()).size() == 2 &&
        history["items"][0].value("outcome", "") == "rolledBack" && !history.contains("rollout")) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(history["items"][0].value("outcome", ""), "rolledBack") << history.dump() << agentLog();
  EXPECT_EQ(history["items"][1].value("outcome", ""), "current") << history.dump();
  EXPECT_EQ(history.value("specRevision", 0), 1) << history.dump();
  EXPECT_EQ(endpointCount(), 2u);
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  waitJob(jobId, finished, 60s);
}

TEST_F(AgentTest, CpuBurnerScalesTheServiceOutAndBackInOnceItStops) {
  // Every task burns its quarter core until BURN_UNTIL (an absolute time, so tasks added by the
  // scale-out burn too), then idles.
  int64_t burnUntil = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count() +
                      15;
  json job =
      batchJob({"sh", "-c", "while [ $(date +%s) -lt $BURN_UNTIL ]; do :; done; exec sleep 600"});
  job.erase("batch");
  job["container"]["env"] = {{"BURN_UNTIL", std::to_string(burnUntil)}};
  job["container"]["resources"] = {
      {"cpu", 0.25}, {"memoryMB", 32}, {"diskMB", 16}, {"networkMbps", 10}};
  job["service"] = {{"capacity", {{"min", 1}, {"desired", 1}, {"max", 3}}},
                    {"autoscaling",
                     {{"scaleOutCooldownMs", 1000},
                      {"scaleInCooldownMs", 2000},
                      {"policies", {{{"targetTracking", {{"metric", "cpu"}, {"target", 50}}}}}}}}};
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  auto desired = [](const json& j) { return j["capacity"].value("desired", 0); };
  // Out: the agent's cgroup readings put the one task near 100 % of its quarter core.
  json scaledOut = waitJob(
      jobId, [&](const json& j) { return desired(j) >= 2; }, 30s);
  ASSERT_GE(desired(scaledOut), 2) << scaledOut.dump();
  json decision = scaledOut["autoscaling"]["lastDecision"];
  EXPECT_EQ(decision.value("decision", ""), "scale out") << decision.dump();
  ASSERT_FALSE(decision["proposals"].empty()) << decision.dump();
  EXPECT_EQ(decision["proposals"][0].value("metric", ""), "cpu") << decision.dump();
  EXPECT_GT(decision["proposals"][0].value("value", 0.0), 60.0) << decision.dump();
  // In: once the burners stop, the service returns to its minimum and the extra tasks stop.
  json scaledIn = waitJob(
      jobId,
      [&](const json& j) {
        return desired(j) == 1 && j["taskCounts"].value("Started", 0) == 1 &&
               j["taskCounts"].value("KillInitiated", 0) == 0;
      },
      60s);
  EXPECT_EQ(desired(scaledIn), 1) << scaledIn.dump();
  decision = scaledIn["autoscaling"]["lastDecision"];
  EXPECT_EQ(decision.value("decision", ""), "scale in") << decision.dump();
  EXPECT_LT(decision["proposals"][0].value("value", 100.0), 20.0) << decision.dump();
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  waitJob(jobId, finished, 60s);
}

TEST_F(AgentTest, FailingJobIsRetriedAndReportsTheExitCode) {
  std::string jobId = submit(batchJob({"sh", "-c", "echo try; exit 3"}, 1));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, finished);
  // The task list shows the latest attempt; the first one is still readable by its id.
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  json retry = list[0];
  EXPECT_EQ(retry.value("resubmitNumber", 0), 1) << retry.dump();
  json first = task(retry.value("resubmitOf", ""));
  for (const json& attempt : {first, retry}) {
    EXPECT_EQ(attempt["state"], "Finished") << attempt.dump();
    EXPECT_EQ(attempt["reason"], "failed") << attempt.dump();
    EXPECT_EQ(attempt.value("exitCode", -1), 3);
    EXPECT_EQ(attempt["nodeId"], "test-node");
    EXPECT_EQ(stdoutOf(attempt.value("id", "")), "try\n");
  }
}

TEST_F(AgentTest, AMissingTagOrRepositoryEndsTheTaskWithTheRegistrysMessageAndNoRetry) {
  // The sample image's repository without the tag, and a repository that does not exist
  // (docker-registry answers both with 404 MANIFEST_UNKNOWN).
  std::string repository = suite->image.substr(0, suite->image.rfind(':'));
  const std::pair<std::string, std::string> kCases[] = {
      {repository + ":no-such-tag", "MANIFEST_UNKNOWN"},
      {suite->registry->host() + "/skiff/nope:latest", "MANIFEST_UNKNOWN"},
  };
  for (const auto& [image, registryCode] : kCases) {
    SCOPED_TRACE(image);
    std::string jobId = submit(batchJob({"echo", "never"}, 2, image));
    ASSERT_FALSE(jobId.empty());
    json job = waitJob(jobId, finished);
    EXPECT_EQ(job["status"].value("reason", ""), "failed") << job.dump();
    // The job alone says why: the task's reason and the registry's message.
    std::string jobMessage = job["status"].value("message", "");
    EXPECT_NE(jobMessage.find("imageNotFound"), std::string::npos) << job.dump();
    EXPECT_NE(jobMessage.find(registryCode), std::string::npos) << job.dump();
    json list = tasks(jobId);
    ASSERT_EQ(list.size(), 1u) << list.dump();
    json first = list[0];
    EXPECT_EQ(first.value("id", ""), jobId + "-0-0") << "no retry: " << first.dump();
    EXPECT_EQ(first["reason"], "imageNotFound") << first.dump();
    EXPECT_NE(first.value("message", "").find(registryCode), std::string::npos) << first.dump();
    EXPECT_FALSE(first.contains("exitCode")) << first.dump();
  }
  // The network made while the image was looked up is taken down again.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(agentDir_ + "/netns", ec)) {
    ADD_FAILURE() << "network namespace left behind: " << entry.path();
  }
}

TEST_F(AgentTest, KillStopsARunningContainer) {
  std::string jobId = submit(batchJob({"sh", "-c", "echo up; sleep 60"}));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, [&](const json& job) { return job["taskCounts"].value("Started", 0) == 1; });
  auto begin = std::chrono::steady_clock::now();
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  waitJob(jobId, finished, 30s);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 15s);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["reason"], "killed") << list[0].dump();
}

TEST_F(AgentTest, AgentKill9ReadoptsTheContainerAndReportsItsExit) {
  std::string jobId = submit(batchJob({"sh", "-c", "echo start; sleep 3; echo done"}));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, [&](const json& job) { return job["taskCounts"].value("Started", 0) == 1; });
  stopAgent(SIGKILL);
  std::this_thread::sleep_for(4s);  // The container exits while the agent is down.
  startAgent();
  waitJob(jobId, finished);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["reason"], "normal") << list[0].dump() << agentLog();
  EXPECT_EQ(stdoutOf(list[0]["id"]), "start\ndone\n");
}

TEST_F(AgentTest, LogsStreamThroughTheControlPlane) {
  std::string jobId =
      submit(batchJob({"sh", "-c", "echo one; echo two; echo three; sleep 1; echo four"}));
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, [&](const json& job) {
    return job["taskCounts"].value("Started", 0) == 1 || finished(job);
  });
  std::string taskId = jobId + "-0-0";
  auto node = client_->call("GET", "/v1/nodes/test-node", nullptr);
  ASSERT_TRUE(node && node->ok());
  EXPECT_TRUE(node->body["attributes"].value("logAddress", "").starts_with("http://127.0.0.1:"))
      << node->body.dump();

  // Following from the start: the fourth line arrives after the sleep, then the stream ends
  // because the task did.
  std::vector<std::string> followed;
  auto streamed =
      client_->stream("/v1/tasks/" + taskId + "/logs?follow=true", [&](std::string_view line) {
        followed.emplace_back(line);
        return true;
      });
  ASSERT_TRUE(streamed) << streamed.error().message() << agentLog();
  EXPECT_EQ(streamed->status, 200) << streamed->body.dump() << agentLog();
  EXPECT_EQ(followed, (std::vector<std::string>{"one", "two", "three", "four"}));
  waitJob(jobId, finished);

  auto tail = client_->call("GET", "/v1/tasks/" + taskId + "/logs?tail=2", nullptr);
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->status, 200);
  EXPECT_EQ(tail->body, json("three\nfour\n"));
  auto stderrTail = client_->call("GET", "/v1/tasks/" + taskId + "/logs?stream=stderr", nullptr);
  ASSERT_TRUE(stderrTail);
  EXPECT_EQ(stderrTail->status, 200);
  EXPECT_TRUE(stderrTail->body.is_null()) << stderrTail->body.dump();
  auto unknown = client_->call("GET", "/v1/tasks/" + jobId + "-9-9/logs", nullptr);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  auto bad = client_->call("GET", "/v1/tasks/" + taskId + "/logs?stream=both", nullptr);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);

  // The same through the CLI (runCommand drops the output's final newline).
  auto cli =
      testing::runCommand({testing::SkiffdProcess::skiffCliPath(), "--addr", skiffd_->address(),
                           "--token", skiffd_->adminToken(), "logs", taskId, "--tail", "3"});
  EXPECT_EQ(cli.exitCode, 0) << cli.err;
  EXPECT_EQ(cli.out, "two\nthree\nfour");
  auto followCli =
      testing::runCommand({testing::SkiffdProcess::skiffCliPath(), "--addr", skiffd_->address(),
                           "--token", skiffd_->adminToken(), "logs", "-f", taskId});
  EXPECT_EQ(followCli.exitCode, 0) << followCli.err;
  EXPECT_EQ(followCli.out, "one\ntwo\nthree\nfour");
}

TEST_F(AgentTest, OomKillIsReportedAsSuch) {
  json job = batchJob({"sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"});
  job["container"]["resources"]["memoryMB"] = 16;
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  waitJob(jobId, finished);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["reason"], "failed") << list[0].dump();
  EXPECT_NE(list[0].value("message", "").find("OOMKilled"), std::string::npos) << list[0].dump();
}

TEST_F(AgentTest, RuntimeLimitStopsTheTask) {
  json job = batchJob({"sh", "-c", "echo up; sleep 60"});
  job["batch"]["runtimeLimitSec"] = 1;
  std::string jobId = submit(job);
  ASSERT_FALSE(jobId.empty());
  auto begin = std::chrono::steady_clock::now();
  waitJob(jobId, finished, 40s);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 30s);
  json list = tasks(jobId);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["reason"], "runtimeLimitExceeded") << list[0].dump() << agentLog();
}

TEST_F(AgentTest, CorruptBlobIsAnImageErrorNotAnExitCode) {
  // A second image with its own layer, whose blob is then damaged in the registry's storage.
  itest::ImageBuilder builder(dir_->path() + "/corrupt-build");
  ASSERT_TRUE(builder.create("c"));
  ASSERT_TRUE(builder.addLayer("c", [](const std::string& root) -> Status {
    std::ofstream(root + "/payload") << std::string(4096, 'p');
    return {};
  }));
  std::string image = suite->registry->host() + "/skiff/corrupt:latest";
  ASSERT_TRUE(builder.copy("c", "docker://" + image));
  client::ApiClient registry("http://" + suite->registry->host(), "");
  auto manifest = registry.call("GET", "/v2/skiff/corrupt/manifests/latest", nullptr,
                                {{"Accept",
                                  "application/vnd.oci.image.manifest.v1+json, "
                                  "application/vnd.docker.distribution.manifest.v2+json"}});
  ASSERT_TRUE(manifest && manifest->ok());
  json body =
      manifest->body.is_string() ? json::parse(manifest->body.get<std::string>()) : manifest->body;
  auto digest = image::Digest::parse(body["layers"][0]["digest"].get<std::string>());
  ASSERT_TRUE(digest);
  std::string blob = suite->registry->blobDataPath(*digest);
  auto size = fs::file_size(blob);
  std::ofstream(blob, std::ios::binary | std::ios::trunc) << std::string(size, 'x');

  std::string jobId = submit(batchJob({"echo", "never"}, 0, image));
  ASSERT_FALSE(jobId.empty());
  json first;
  waitJob(jobId, [&](const json&) {
    first = task(jobId + "-0-0");
    return first.value("state", "") == "Finished";
  });
  std::string reason = first.value("reason", "");
  EXPECT_TRUE(reason == "localSystemError" || reason == "transientSystemError") << first.dump();
  EXPECT_NE(first.value("message", "").find("digest"), std::string::npos) << first.dump();
  EXPECT_FALSE(first.contains("exitCode")) << first.dump();
  auto killed = client_->call("POST", "/v1/jobs/" + jobId + "/kill", nullptr);
  EXPECT_TRUE(killed && killed->ok());
}

}  // namespace
}  // namespace skiff::agent
