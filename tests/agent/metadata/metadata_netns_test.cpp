// The metadata proxy in real network namespaces against the real skiffd: each "container" is a
// namespace with a veth to the host, the proxy's listener is created inside it at
// 169.254.169.254:80, and requests are made from threads that have entered a namespace.
// Root only (namespaces, veth, setns); skipped with the reason otherwise. Every namespace and
// link is removed by destructors, also when a test fails.

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/metadata/metadata_proxy.h"
#include "agent/metadata/netns_listener.h"
#include "http_probe.h"
#include "integration/skiffd_process.h"
#include "testing/requirements.h"

namespace skiff::agent::metadata {
namespace {

using boost::beast::http::verb;
using nlohmann::json;
using testing::httpRequest;
using testing::Probe;

// Runs a fixed command line built only from test-generated names; true on exit status 0.
bool sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// A network namespace joined to the host by a veth pair: host side HOST_IP/30, namespace side
// CONTAINER_IP/30.
class TestNamespace {
 public:
  TestNamespace(const std::string& suffix, int subnet) {
    name_ = "skmd" + std::to_string(::getpid() % 1000000) + suffix;
    hostIf_ = name_ + "h";
    std::string prefix = "10.251." + std::to_string(subnet) + ".";
    hostIp_ = prefix + "1";
    containerIp_ = prefix + "2";
    cleanup();
    ok_ = sh("ip netns add " + name_) &&
          sh("ip link add " + hostIf_ + " type veth peer name " + name_ + "c") &&
          sh("ip link set " + name_ + "c netns " + name_) &&
          sh("ip addr add " + hostIp_ + "/30 dev " + hostIf_) &&
          sh("ip link set " + hostIf_ + " up") &&
          sh("ip -n " + name_ + " addr add " + containerIp_ + "/30 dev " + name_ + "c") &&
          sh("ip -n " + name_ + " link set " + name_ + "c up");
  }
  ~TestNamespace() { cleanup(); }

  bool ok() const { return ok_; }
  std::string path() const { return "/run/netns/" + name_; }
  const std::string& hostIp() const { return hostIp_; }
  const std::string& containerIp() const { return containerIp_; }

  // Runs `fn` from inside the namespace.
  Probe inside(const std::function<Probe()>& fn) const {
    Probe probe;
    auto ran = runInNetns(path(), [&]() -> Status {
      probe = fn();
      return {};
    });
    if (!ran) probe.error = ran.error().message();
    return probe;
  }

 private:
  void cleanup() {
    sh("ip netns del " + name_);
    sh("ip link del " + hostIf_);
  }

  std::string name_;
  std::string hostIf_;
  std::string hostIp_;
  std::string containerIp_;
  bool ok_ = false;
};

json batchJob(const std::string& role) {
  return {{"applicationName", "md-" + role},
          {"owner", {{"teamEmail", "team@example.com"}}},
          {"container",
           {{"image", "busybox:1.36"},
            {"command", {"true"}},
            {"resources", {{"cpu", 0.5}, {"memoryMB", 64}}},
            {"securityProfile", {{"iamRole", role}}}}},
          {"batch", {{"size", 1}}}};
}

class MetadataNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE_ROOT("network namespaces, veth, setns");
    SKIFF_REQUIRE(sh("ip -V"), "needs iproute2 to build the test namespaces");
    a_ = std::make_unique<TestNamespace>("a", 10 + ::getpid() % 100);
    b_ = std::make_unique<TestNamespace>("b", 110 + ::getpid() % 100);
    SKIFF_REQUIRE(a_->ok() && b_->ok(), "cannot create network namespaces with veth here");

    skiffd_.setListenHost("0.0.0.0");
    ASSERT_TRUE(skiffd_.start()) << skiffd_.error();
    std::string address = skiffd_.address();
    port_ = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));

    auto agent = skiffd_.client(skiffd_.joinToken());
    json node = {
        {"id", "node-md"},
        {"resources", {{"cpu", 4}, {"memoryMB", 8192}, {"diskMB", 100000}, {"networkMbps", 1000}}},
        {"attributes", {{"zone", "z1"}}}};
    auto registered = agent->call("POST", "/v1/nodes", &node);
    ASSERT_TRUE(registered && registered->status == 201);
    taskA_ = launchedTask(batchJob("role-a"));
    taskB_ = launchedTask(batchJob("role-b"));
    ASSERT_FALSE(taskA_.empty());
    ASSERT_FALSE(taskB_.empty());

    auto upstream = std::make_shared<SkiffdIdentityProvider>(skiffd_.address(), skiffd_.joinToken(),
                                                             SystemClock::instance());
    auto proxy = MetadataProxy::create({}, upstream);
    ASSERT_TRUE(proxy) << proxy.error().message();
    proxy_ = std::move(*proxy);
    auto addedA = proxy_->addTask(metadata(taskA_, "role-a", a_->containerIp()), a_->path());
    ASSERT_TRUE(addedA) << addedA.error().message();
    auto addedB = proxy_->addTask(metadata(taskB_, "role-b", b_->containerIp()), b_->path());
    ASSERT_TRUE(addedB) << addedB.error().message();
  }

  // Submits `job` and waits until its task is placed on node-md; returns the task id.
  std::string launchedTask(const json& job) {
    auto admin = skiffd_.client();
    auto created = admin->call("POST", "/v1/jobs", &job);
    if (!created || created->status != 201) {
      ADD_FAILURE() << "job not created";
      return {};
    }
    std::string jobId = created->body["id"];
    for (int i = 0; i < 500; ++i) {
      auto tasks = admin->call("GET", "/v1/tasks?jobId=" + jobId, nullptr);
      if (tasks && tasks->ok() && !tasks->body["items"].empty() &&
          tasks->body["items"][0]["state"] == "Launched") {
        return tasks->body["items"][0]["id"];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "task never launched";
    return {};
  }

  static TaskMetadata metadata(const std::string& taskId, const std::string& role,
                               const std::string& ip) {
    TaskMetadata task;
    task.taskId = taskId;
    task.iamRole = role;
    task.ipv4 = ip;
    task.nodeId = "node-md";
    task.availabilityZone = "z1";
    return task;
  }

  static Probe imds(verb method, const std::string& target,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    return httpRequest("169.254.169.254", 80, method, target, headers);
  }
  static Probe imdsToken() {
    return imds(verb::put, "/latest/api/token", {{"X-aws-ec2-metadata-token-ttl-seconds", "300"}});
  }

  // Members are destroyed in reverse: the proxy (and its listeners) before the namespaces.
  std::unique_ptr<TestNamespace> a_;
  std::unique_ptr<TestNamespace> b_;
  skiff::testing::SkiffdProcess skiffd_;
  uint16_t port_ = 0;
  std::string taskA_;
  std::string taskB_;
  std::unique_ptr<MetadataProxy> proxy_;
};

TEST_F(MetadataNetnsTest, EachNamespaceSeesItsOwnTaskAndRole) {
  Probe id = a_->inside([] {
    Probe token = imdsToken();
    if (token.status != 200) return token;
    return imds(verb::get, "/latest/meta-data/instance-id",
                {{"X-aws-ec2-metadata-token", token.body}});
  });
  EXPECT_EQ(id.status, 200) << id.error;
  EXPECT_EQ(id.body, taskA_);

  Probe credentials = a_->inside([] {
    Probe token = imdsToken();
    return imds(verb::get, "/latest/meta-data/iam/security-credentials/role-a",
                {{"X-aws-ec2-metadata-token", token.body}});
  });
  ASSERT_EQ(credentials.status, 200) << credentials.error << credentials.body;
  json document = json::parse(credentials.body);
  EXPECT_EQ(document["Type"], "AWS-HMAC");
  EXPECT_TRUE(document["AccessKeyId"].get<std::string>().starts_with("ASIA"));

  // Another job's role does not exist in this namespace.
  Probe otherRole = a_->inside([] {
    Probe token = imdsToken();
    return imds(verb::get, "/latest/meta-data/iam/security-credentials/role-b",
                {{"X-aws-ec2-metadata-token", token.body}});
  });
  EXPECT_EQ(otherRole.status, 404);

  Probe listing = b_->inside([] {
    Probe token = imdsToken();
    return imds(verb::get, "/latest/meta-data/iam/security-credentials/",
                {{"X-aws-ec2-metadata-token", token.body}});
  });
  EXPECT_EQ(listing.body, "role-b");
}

TEST_F(MetadataNetnsTest, TokenFetchedInOneNamespaceIsRefusedInAnother) {
  Probe stolen = a_->inside(imdsToken);
  ASSERT_EQ(stolen.status, 200) << stolen.error;
  Probe replayed = b_->inside([&] {
    return imds(verb::get, "/latest/meta-data/iam/security-credentials/role-b",
                {{"X-aws-ec2-metadata-token", stolen.body}});
  });
  EXPECT_EQ(replayed.status, 401);
  Probe replayedForA = b_->inside([&] {
    return imds(verb::get, "/latest/meta-data/iam/security-credentials/role-a",
                {{"X-aws-ec2-metadata-token", stolen.body}});
  });
  EXPECT_EQ(replayedForA.status, 401);
  // The host namespace has no metadata listener at all.
  EXPECT_NE(
      imds(verb::put, "/latest/api/token", {{"X-aws-ec2-metadata-token-ttl-seconds", "60"}}).status,
      200);
}

TEST_F(MetadataNetnsTest, IdentityTokenIsVerifiedOnlyFromTheContainersAddress) {
  Probe identity = a_->inside([] {
    Probe token = imdsToken();
    return imds(verb::get, "/skiff/v1/task-identity", {{"X-aws-ec2-metadata-token", token.body}});
  });
  ASSERT_EQ(identity.status, 200) << identity.error << identity.body;
  std::string body = json{{"token", identity.body}}.dump();
  uint16_t port = port_;

  // From its own container, through the veth to skiffd: accepted, with the task's claims.
  std::string hostA = a_->hostIp();
  Probe fromA = a_->inside(
      [&] { return httpRequest(hostA, port, verb::post, "/v1/identity/verify", {}, body); });
  ASSERT_EQ(fromA.status, 200) << fromA.error << fromA.body;
  json claims = json::parse(fromA.body)["claims"];
  EXPECT_EQ(claims["task"], taskA_);
  EXPECT_EQ(claims["role"], "role-a");
  EXPECT_EQ(claims["ip"], a_->containerIp());

  // Replayed from the other container, or from the host: refused.
  std::string hostB = b_->hostIp();
  Probe fromB = b_->inside(
      [&] { return httpRequest(hostB, port, verb::post, "/v1/identity/verify", {}, body); });
  EXPECT_EQ(fromB.status, 403) << fromB.error << fromB.body;
  Probe fromHost = httpRequest("127.0.0.1", port, verb::post, "/v1/identity/verify", {}, body);
  EXPECT_EQ(fromHost.status, 403) << fromHost.body;

  // Once the task has finished, its token speaks for no one, even from its old address.
  json report = {
      {"updates",
       json::array({{{"taskId", taskA_}, {"seq", 1}, {"state", "Finished"}, {"exitCode", 0}}})}};
  auto reported =
      skiffd_.client(skiffd_.joinToken())->call("POST", "/v1/nodes/node-md/taskStatus", &report);
  ASSERT_TRUE(reported && reported->ok());
  Probe afterFinish;
  for (int i = 0; i < 100; ++i) {
    afterFinish = a_->inside(
        [&] { return httpRequest(hostA, port, verb::post, "/v1/identity/verify", {}, body); });
    if (afterFinish.status == 401) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(afterFinish.status, 401) << afterFinish.body;
}

TEST_F(MetadataNetnsTest, RemovedTaskIsNoLongerServed) {
  ASSERT_TRUE(proxy_->removeTask(taskA_));
  Probe after;
  for (int i = 0; i < 100; ++i) {
    after = a_->inside(imdsToken);
    if (after.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(after.status, 0);
  // Re-attaching (an agent restart) works on the same namespace.
  auto again = proxy_->addTask(metadata(taskA_, "role-a", a_->containerIp()), a_->path());
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(a_->inside(imdsToken).status, 200);
}

}  // namespace
}  // namespace skiff::agent::metadata
