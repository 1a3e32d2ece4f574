// Two all-in-one clusters on one host: two real `skiffd --with-agent` with their own state
// directories, API ports, address ranges (--vpc-cidr) and agent instance names, one docker-registry
// on loopback with the sample image (scripts/sample-image.sh), a busybox httpd container on each.
// Stopping one cluster (its task, then skiffd) must leave the other's nftables table, cgroups,
// mounts and container network as they were, and the stopped agent must leave no nftables table
// and no mount behind. Root only; skipped with the reason when a program is missing, but a
// registry or image build that fails fails.

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/image/fs_util.h"
#include "agent/runtime/cgroup.h"
#include "integration/skiffd_process.h"
#include "testing/local_registry.h"
#include "testing/requirements.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;
namespace itest = image::testing;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kCrun = "/usr/bin/crun";
constexpr const char* kRunc = "/usr/sbin/runc";

std::string missing() {
  std::string runtime =
      access(kCrun, X_OK) == 0 || access(kRunc, X_OK) == 0 ? "" : "neither crun nor runc";
  return skiff::testing::firstMissing(
      {skiff::testing::missingRoot("containers, mounts, cgroups, nftables"),
       skiff::testing::missingExecutable("/usr/sbin/nft"), runtime, itest::missingPrerequisites()});
}

// The mount points at or below `dir` in /proc/self/mountinfo, one per line.
std::string mountsUnder(const std::string& dir) {
  std::string out;
  for (const std::string& point : image::fs::mountsUnder(dir)) out += point + "\n";
  return out;
}

// `nft list table ip TABLE`; exit code -1 or non-zero when there is no such table.
testing::CommandResult nftTable(const std::string& table) {
  return testing::runCommand({"/usr/sbin/nft", "list", "table", "ip", table});
}

struct Cluster {
  std::string name;      // "a" or "b"
  std::string instance;  // The agent's instance name.
  std::string agentDir;
  std::string vpcCidr;
  std::unique_ptr<testing::SkiffdProcess> skiffd;
  std::unique_ptr<client::ApiClient> client;
  std::string jobId;
  std::string taskId;
  std::string ip;

  std::string table() const { return "skiff-" + instance; }
  std::string cgroupParent() const { return "/skiff-" + instance; }
};

class TwoClustersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE_NOTHING_MISSING(missing());
    auto layout = runtime::detectHostCgroupLayout();
    ASSERT_TRUE(layout) << layout.error().message();
    layout_ = *layout;
    dir_ = std::make_unique<itest::TempDir>("skiff-two-clusters");
    auto registry = itest::LocalRegistry::start(dir_->path() + "/registry");
    ASSERT_TRUE(registry) << "docker-registry did not start: " << registry.error().message();
    registry_ = std::move(*registry);
    auto pushed = testing::runCommand(
        {"/bin/bash", std::string(SKIFF_SOURCE_DIR) + "/scripts/sample-image.sh"},
        {"SKIFF_REGISTRY=" + registry_->host(),
         "SKIFF_REGISTRY_STATE=" + dir_->path() + "/sample"});
    ASSERT_EQ(pushed.exitCode, 0) << pushed.out << pushed.err;

    std::string pid = std::to_string(getpid());
    const std::array<const char*, 2> names = {"a", "b"};
    for (size_t i = 0; i < clusters_.size(); ++i) {
      Cluster& cluster = clusters_[i];
      cluster.name = names[i];
      cluster.instance = "test" + pid + "-" + cluster.name;
      cluster.agentDir = dir_->path() + "/agent-" + cluster.name;
      cluster.vpcCidr = "10." + std::to_string(241 + i) + ".0.0/16";
      cluster.skiffd = std::make_unique<testing::SkiffdProcess>(
          std::vector<std::string>{"--with-agent", "--agent-instance", cluster.instance,
                                   "--agent-state-dir", cluster.agentDir, "--agent-node-id",
                                   "node-" + cluster.name, "--vpc-cidr", cluster.vpcCidr});
      ASSERT_TRUE(cluster.skiffd->start()) << cluster.name << ": " << cluster.skiffd->error();
      cluster.client = cluster.skiffd->client();
    }
    for (Cluster& cluster : clusters_) {
      ASSERT_TRUE(waitRegistered(cluster))
          << cluster.name << ": the embedded agent did not register";
    }
  }

  // Whatever happened: no skiffd, container, mount, nftables table or cgroup of the test remains.
  void TearDown() override {
    if (dir_ == nullptr) return;
    for (Cluster& cluster : clusters_) {
      if (cluster.skiffd != nullptr && cluster.client != nullptr && !cluster.jobId.empty()) {
        cluster.client->call("POST", "/v1/jobs/" + cluster.jobId + "/kill", nullptr);
      }
    }
    for (Cluster& cluster : clusters_) {
      if (cluster.client != nullptr && !cluster.jobId.empty()) waitFinished(cluster, 30s);
      cluster.client.reset();
      if (cluster.skiffd != nullptr) cluster.skiffd->stop();
      cluster.skiffd.reset();
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(cluster.agentDir + "/containers", ec)) {
        std::string id = entry.path().filename().string();
        for (const char* runtime : {kCrun, kRunc}) {
          if (access(runtime, X_OK) != 0) continue;
          itest::runCommand(
              {runtime, "--root", cluster.agentDir + "/runtime", "delete", "--force", id});
        }
      }
    }
    itest::unmountAll(dir_->path());
    for (Cluster& cluster : clusters_) {
      if (cluster.instance.empty()) continue;
      if (nftTable(cluster.table()).exitCode == 0) {
        testing::runCommand({"/usr/sbin/nft", "delete", "table", "ip", cluster.table()});
      }
      runtime::removeCgroupTree(layout_, cluster.cgroupParent());
    }
    registry_.reset();
    dir_.reset();
  }

  bool waitRegistered(Cluster& cluster) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto nodes = cluster.client->call("GET", "/v1/nodes", nullptr);
      if (nodes && nodes->ok() && !nodes->body.value("items", json::array()).empty()) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  testing::CommandResult skiff(const Cluster& cluster, std::vector<std::string> args) {
    args.insert(args.begin(), testing::SkiffdProcess::skiffCliPath());
    return testing::runCommand(args, {"SKIFF_ADDR=" + cluster.skiffd->address(),
                                      "SKIFF_TOKEN=" + cluster.skiffd->adminToken()});
  }

  json tasks(const Cluster& cluster) {
    auto response = cluster.client->call("GET", "/v1/tasks?jobId=" + cluster.jobId, nullptr);
    return response && response->ok() ? response->body.value("items", json::array())
                                      : json::array();
  }

  json waitFinished(const Cluster& cluster, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto response = cluster.client->call("GET", "/v1/jobs/" + cluster.jobId, nullptr);
      last = response && response->ok() ? response->body : json();
      if (last.is_object() && last["status"].value("state", "") == "Finished") return last;
      std::this_thread::sleep_for(200ms);
    }
    return last;
  }

  // Submits a one-task batch job serving the sample image's /www on port 8080 and waits until
  // the task runs and answers over HTTP.
  void runServer(Cluster& cluster) {
    auto group =
        skiff(cluster, {"sg", "apply", std::string(SKIFF_SOURCE_DIR) + "/examples/web-sg.yaml"});
    ASSERT_EQ(group.exitCode, 0) << group.err;
    std::string file = dir_->path() + "/server-" + cluster.name + ".yaml";
    std::ofstream(file) << "applicationName: two-clusters\n"
                        << "owner:\n  teamEmail: test@example.com\n"
                        << "container:\n"
                        << "  image: " << registry_->host() << "/skiff/busybox:latest\n"
                        << "  command: [httpd, -f, -p, \"8080\", -h, /www]\n"
                        << "  resources: {cpu: 0.25, memoryMB: 64, diskMB: 64, networkMbps: 50}\n"
                        << "  securityProfile: {securityGroups: [web]}\n"
                        << "batch:\n  size: 1\n  runtimeLimitSec: 600\n";
    auto submitted = skiff(cluster, {"job", "run", file});
    ASSERT_EQ(submitted.exitCode, 0) << submitted.err;
    cluster.jobId = submitted.out.substr(0, submitted.out.find('\n'));
    auto deadline = std::chrono::steady_clock::now() + 60s;
    json list;
    while (std::chrono::steady_clock::now() < deadline) {
      list = tasks(cluster);
      if (list.size() == 1 && list[0].value("state", "") == "Started" &&
          !list[0].value("ip", "").empty()) {
        cluster.taskId = list[0].value("id", "");
        cluster.ip = list[0].value("ip", "");
        break;
      }
      std::this_thread::sleep_for(200ms);
    }
    ASSERT_FALSE(cluster.ip.empty()) << cluster.name << ": the task did not start: " << list.dump();
    ASSERT_TRUE(serves(cluster, 20s)) << cluster.name << ": " << cluster.ip << " does not answer\n"
                                      << diagnostics(cluster);
  }

  // Whether the cluster's container answers "hello from skiff" on port 8080 within `timeout`.
  bool serves(const Cluster& cluster, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string url = "http://" + cluster.ip + ":8080/";
    while (true) {
      // busybox-static's wget crashes on -T; timeout(1) bounds an attempt instead.
      auto got = testing::runCommand(
          {"/usr/bin/timeout", "5", itest::busyboxPath(), "wget", "-q", "-O", "-", url});
      if (got.exitCode == 0 && got.out == "hello from skiff") return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(200ms);
    }
  }

  // What a failed network check needs: the host's tables and routes, the task's output.
  std::string diagnostics(const Cluster& cluster) {
    std::string out = testing::runCommand({"/usr/sbin/nft", "list", "ruleset"}).out;
    out += "\n" + testing::runCommand({"/usr/sbin/ip", "route", "get", cluster.ip}).out;
    out += "\n" + testing::runCommand({"/usr/sbin/ip", "-br", "link"}).out;
    auto logs = skiff(cluster, {"logs", cluster.taskId});
    out += "\nlogs: " + logs.out + logs.err;
    out += "\ntask: " + tasks(cluster).dump();
    return out;
  }

  // Whether the container of the cluster's task has a cgroup (in some hierarchy).
  bool hasTaskCgroup(const Cluster& cluster) {
    std::error_code ec;
    for (const std::string& dir :
         runtime::cgroupDirs(layout_, cluster.cgroupParent() + "/" + cluster.taskId)) {
      if (fs::exists(dir, ec)) return true;
    }
    return false;
  }

  // The cgroups left under the cluster's cgroup parent, in any hierarchy.
  std::vector<std::string> cgroupsUnderParent(const Cluster& cluster) {
    std::vector<std::string> found;
    std::error_code ec;
    for (const std::string& dir : runtime::cgroupDirs(layout_, cluster.cgroupParent())) {
      for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.is_directory(ec)) found.push_back(entry.path().string());
      }
    }
    return found;
  }

  runtime::CgroupLayout layout_;
  std::unique_ptr<itest::TempDir> dir_;
  std::unique_ptr<itest::LocalRegistry> registry_;
  std::array<Cluster, 2> clusters_;
};

TEST_F(TwoClustersTest, StoppingOneClusterLeavesTheOthersTableCgroupsMountsAndNetwork) {
  Cluster& a = clusters_[0];
  Cluster& b = clusters_[1];
  runServer(a);
  ASSERT_FALSE(HasFailure());
  runServer(b);
  ASSERT_FALSE(HasFailure());

  // Both run side by side, each with its own table, cgroups and mounts.
  for (const Cluster& cluster : clusters_) {
    SCOPED_TRACE(cluster.name);
    auto table = nftTable(cluster.table());
    ASSERT_EQ(table.exitCode, 0) << table.err;
    EXPECT_NE(table.out.find(cluster.ip), std::string::npos) << table.out;
    const Cluster& other = &cluster == &a ? b : a;
    EXPECT_EQ(table.out.find(other.ip), std::string::npos) << table.out;
    EXPECT_EQ(table.out.find("skv*"), std::string::npos) << table.out;
    EXPECT_TRUE(hasTaskCgroup(cluster));
    EXPECT_NE(mountsUnder(cluster.agentDir).find(cluster.agentDir + "/rootfs/" + cluster.taskId),
              std::string::npos)
        << mountsUnder(cluster.agentDir);
  }
  EXPECT_TRUE(serves(a, 5s));
  EXPECT_TRUE(serves(b, 5s));
  std::string tableB = nftTable(b.table()).out;
  std::string mountsB = mountsUnder(b.agentDir);

  // Cluster a stops: its task ends, then skiffd with its agent.
  auto killed = a.client->call("POST", "/v1/jobs/" + a.jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  json finished = waitFinished(a, 60s);
  ASSERT_EQ(finished["status"].value("state", ""), "Finished") << finished.dump();
  a.client.reset();
  a.skiffd->stop();
  a.skiffd.reset();

  // Nothing of a's is left: no table, no mount under its directories, no container cgroup.
  auto tableA = nftTable(a.table());
  EXPECT_NE(tableA.exitCode, 0) << "the stopped agent left its table:\n" << tableA.out;
  EXPECT_EQ(mountsUnder(a.agentDir), "");
  EXPECT_TRUE(cgroupsUnderParent(a).empty());

  // b is untouched: the same table, its cgroup, its mounts, and its container still answers.
  EXPECT_EQ(nftTable(b.table()).out, tableB);
  EXPECT_TRUE(hasTaskCgroup(b));
  EXPECT_EQ(mountsUnder(b.agentDir), mountsB);
  EXPECT_TRUE(serves(b, 5s)) << b.ip << " stopped answering once cluster a stopped";
  auto task = tasks(b);
  ASSERT_EQ(task.size(), 1u);
  EXPECT_EQ(task[0].value("state", ""), "Started") << task.dump();

  // Then b stops the same way: no mount of either agent is left.
  killed = b.client->call("POST", "/v1/jobs/" + b.jobId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  finished = waitFinished(b, 60s);
  ASSERT_EQ(finished["status"].value("state", ""), "Finished") << finished.dump();
  b.client.reset();
  b.skiffd->stop();
  b.skiffd.reset();
  EXPECT_NE(nftTable(b.table()).exitCode, 0);
  EXPECT_EQ(mountsUnder(dir_->path()), "");
  EXPECT_TRUE(cgroupsUnderParent(b).empty());
}

}  // namespace
}  // namespace skiff::agent
