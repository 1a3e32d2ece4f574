// Multi-node end to end with real containers: the real skiffd, N real skiff-agent processes, each
// on its own test host (a network namespace with its own address, testing/netns_cluster.h), a
// docker-registry holding a busybox image, runc/crun containers.
//
// Layout: the test's main thread joins the cluster's fabric namespace for the whole test, so
// everything it forks (skiffd, docker-registry, skopeo) runs there: skiffd listens on 0.0.0.0
// (the test reaches it on loopback, agents on 10.213.0.1), the registry on 10.213.0.1 (agents
// pull with --insecure-registry). Agent I runs in host namespace I with node id host-I.
//
// Reachability probes are TCP connects made by the test from a thread that joined the
// container's own network namespace (STATE/netns/TASK of its agent): the source address, the
// container's eth0, the host's routes and the nftables rules on both nodes are exactly those of a
// client running in the container. The servers are busybox httpd inside the containers.
//
// Root only; skipped with the reason otherwise. Every process, container, mount, cgroup and
// namespace is removed by the fixture, also when a test fails.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/runtime/cgroup.h"
#include "api/network.h"
#include "integration/skiffd_process.h"
#include "testing/local_registry.h"
#include "testing/netns_cluster.h"
#include "testing/requirements.h"

namespace skiff::agent {
namespace {

namespace fs = std::filesystem;
namespace itest = image::testing;
using json = nlohmann::json;
using skiff::testing::NetnsCluster;
using namespace std::chrono_literals;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kCrun = "/usr/bin/crun";
constexpr const char* kTini = "/usr/bin/tini-static";
constexpr int kHttpPort = 8080;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string skipReason() {
  if (geteuid() != 0) return "needs root (namespaces, containers, mounts, cgroups)";
  std::string cluster = NetnsCluster::skipReason();
  if (!cluster.empty()) return cluster;
  for (const char* path : {kRunc, kTini}) {
    if (access(path, X_OK) != 0) return std::string(path) + " is not installed";
  }
  std::string missing = itest::missingPrerequisites();
  if (!missing.empty()) return missing;
  if (access(SKIFF_AGENT_PATH, X_OK) != 0) return "skiff-agent is not built";
  if (access(SKIFF_MONITOR_PATH, X_OK) != 0) return "skiff-monitor is not built";
  return "";
}

// Whether a TCP connection from inside `netns` to ip:port completes within `timeout`.
bool tcpConnects(const std::string& netns, const std::string& ip, int port,
                 std::chrono::milliseconds timeout = 1500ms) {
  bool connected = false;
  skiff::testing::runInNetns(netns, [&] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
        int error = 0;
        socklen_t length = sizeof error;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
        connected = error == 0;
      }
    } else {
      connected = rc == 0;
    }
    ::close(fd);
  });
  return connected;
}

// The image, built once for the suite into an OCI layout; each test pushes it to its registry.
struct Suite {
  std::unique_ptr<itest::TempDir> dir;
  std::string skip;   // What the host lacks.
  std::string error;  // Why the test image could not be built: a failure.
};
Suite* suite = nullptr;

Status buildImage(const std::string& workDir) {
  itest::ImageBuilder builder(workDir);
  std::string busybox = itest::busyboxPath();
  SKIFF_TRY_STATUS(builder.create("bb"), "create");
  SKIFF_TRY_STATUS(
      builder.addLayer("bb",
                       [&](const std::string& root) -> Status {
                         SKIFF_TRY_STATUS(itest::copyFileInto(busybox, root, "bin/busybox"), "bb");
                         for (const char* applet : {"sh", "echo", "sleep", "cat", "nc", "httpd"}) {
                           std::error_code ec;
                           fs::create_symlink("busybox", root + "/bin/" + applet, ec);
                           if (ec) return fail(ErrorCode::kIo, ec.message());
                         }
                         return itest::writeFileInto(root, "www/index.html", "skiff\n");
                       }),
      "layer");
  return builder.configure("bb", {"--config.cmd", "sh", "--config.env", "PATH=/bin"});
}

struct HostSpec {
  std::string zone = "zone-a";
  std::string machineType = "m.test";
  double cpu = 2;
  int memoryMB = 2048;
};

// A placed task as the test sees it.
struct Placed {
  std::string id;
  std::string nodeId;
  std::string ip;
  std::string state;
  std::string reason;
  int evictions = 0;  // evictionResubmitNumber: how many earlier attempts were evicted.
};

class MultiNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite = new Suite;
    suite->skip = skipReason();
    if (!suite->skip.empty()) return;
    suite->dir = std::make_unique<itest::TempDir>("skiff-multinode-image");
    if (auto built = buildImage(suite->dir->path() + "/build"); !built) {
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
    dir_ = std::make_unique<itest::TempDir>("skiff-multinode");
  }

  // Whatever happened: no agent, container, monitor, mount, cgroup, namespace or directory
  // remains, and the main thread is back in its own network namespace.
  void TearDown() override {
    if (dir_ == nullptr) return;
    for (size_t i = 0; i < agents_.size(); ++i) {
      if (agents_[i] > 0) cluster_->stop(agents_[i], 3000);
    }
    for (size_t i = 0; i < agents_.size(); ++i) removeContainers(static_cast<int>(i));
    itest::unmountAll(dir_->path());
    for (size_t i = 0; i < agents_.size(); ++i) {
      runtime::removeCgroupTree(layout_, cgroupParent(static_cast<int>(i)));
    }
    skiffd_.reset();
    registry_.reset();
    if (ownNetns_ >= 0) {
      ::setns(ownNetns_, CLONE_NEWNET);
      ::close(ownNetns_);
      ownNetns_ = -1;
    }
    cluster_.reset();
    dir_.reset();
  }

  // Stops every container of agent `host` whatever state its runtime files are in: SIGKILL to
  // every process of its cgroups (the runtimes' state under STATE/runtime is not reliable once
  // the agent is gone), then waits for the monitors to record the exits.
  void removeContainers(int host) {
    std::error_code ec;
    std::vector<std::string> roots = {"/sys/fs/cgroup" + cgroupParent(host)};
    for (const auto& controller : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      roots.push_back(controller.path().string() + cgroupParent(host));
    }
    for (const std::string& root : roots) {
      if (!fs::is_directory(root, ec)) continue;
      // Cgroups come and go meanwhile: iterate without exceptions.
      for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename() != "cgroup.procs") continue;
        std::ifstream procs(it->path());
        for (pid_t pid = 0; procs >> pid;) ::kill(pid, SIGKILL);
      }
    }
    std::string containers = agentDir(host) + "/containers";
    if (!fs::exists(containers, ec)) return;
    for (const auto& entry : fs::directory_iterator(containers, ec)) {
      // The runtime that made the container: runc keeps state.json, crun status. (runc
      // `delete --force` removes a state directory without state.json, crun's included.)
      std::string id = entry.path().filename().string();
      std::string state = agentDir(host) + "/runtime" + "/" + id;
      const char* runtime = fs::exists(state + "/state.json", ec) ? kRunc : kCrun;
      if (fs::exists(state, ec) && access(runtime, X_OK) == 0) {
        itest::runCommand(
            {runtime, "--root", agentDir(host) + "/runtime", "delete", "--force", id});
      }
      // The monitor records the exit and exits once its container is gone.
      for (int i = 0; i < 100 && !fs::exists(entry.path() / "exit"); ++i) {
        std::this_thread::sleep_for(50ms);
      }
    }
  }

  std::string agentDir(int host) const { return dir_->path() + "/agent-" + std::to_string(host); }
  std::string cgroupParent(int host) const {
    return "/skiff-multinode-" + std::to_string(getpid()) + "-" + std::to_string(host);
  }
  static std::string nodeId(int host) { return "host-" + std::to_string(host); }
  static int hostOf(const std::string& node) { return std::stoi(node.substr(5)); }

  // Namespaces, registry with the image, skiffd (with `skiffdFlags`) and one agent per host.
  void startCluster(const std::vector<HostSpec>& hosts,
                    const std::vector<std::string>& skiffdFlags = {}) {
    auto cluster =
        NetnsCluster::create(static_cast<int>(hosts.size()), "skmn" + std::to_string(getpid()));
    ASSERT_TRUE(cluster) << cluster.error().message();
    cluster_ = std::move(*cluster);
    ownNetns_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(ownNetns_, 0);
    int fabric = ::open(cluster_->netnsPath(-1).c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fabric, 0);
    ASSERT_EQ(::setns(fabric, CLONE_NEWNET), 0) << strerror(errno);
    ::close(fabric);

    auto registry =
        itest::LocalRegistry::start(dir_->path() + "/registry", NetnsCluster::kFabricAddress);
    ASSERT_TRUE(registry) << registry.error().message();
    registry_ = std::move(*registry);
    image_ = registry_->host() + "/skiff/busybox:latest";
    itest::ImageBuilder builder(suite->dir->path() + "/build");
    auto pushed = builder.copy("bb", "docker://" + image_);
    ASSERT_TRUE(pushed) << pushed.error().message();

    std::vector<std::string> flags = {"--system-retry-delay", "0.2"};
    flags.insert(flags.end(), skiffdFlags.begin(), skiffdFlags.end());
    skiffd_ = std::make_unique<testing::SkiffdProcess>(flags);
    skiffd_->setListenHost("0.0.0.0");
    ASSERT_TRUE(skiffd_->start()) << skiffd_->error();
    client_ = skiffd_->client();
    std::string server = skiffd_->address();
    server.replace(server.find("127.0.0.1"), 9, NetnsCluster::kFabricAddress);

    for (size_t i = 0; i < hosts.size(); ++i) {
      int host = static_cast<int>(i);
      std::ostringstream cpu;
      cpu << hosts[i].cpu;
      std::vector<std::string> args = {SKIFF_AGENT_PATH,
                                       "--server",
                                       server,
                                       "--join-token-file",
                                       skiffd_->stateDir() + "/join.token",
                                       "--node-id",
                                       nodeId(host),
                                       "--state-dir",
                                       agentDir(host),
                                       "--cpu",
                                       cpu.str(),
                                       "--memory-mb",
                                       std::to_string(hosts[i].memoryMB),
                                       "--disk-mb",
                                       "20000",
                                       "--zone",
                                       hosts[i].zone,
                                       "--machine-type",
                                       hosts[i].machineType,
                                       "--insecure-registry",
                                       registry_->host(),
                                       "--monitor",
                                       SKIFF_MONITOR_PATH,
                                       "--runtime",
                                       "auto",
                                       "--cgroup-parent",
                                       cgroupParent(host),
                                       "--heartbeat-ms",
                                       "500",
                                       "--poll-wait-ms",
                                       "1000",
                                       "--stop-grace-sec",
                                       "1"};
      auto pid = cluster_->spawn(host, args, dir_->path() + "/agent-" + std::to_string(i) + ".log");
      ASSERT_TRUE(pid) << pid.error().message();
      agents_.push_back(*pid);
    }
    // Every node registered and Ready.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    size_t ready = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      ready = 0;
      for (size_t i = 0; i < hosts.size(); ++i) {
        auto node = client_->call("GET", "/v1/nodes/" + nodeId(static_cast<int>(i)), nullptr);
        if (node && node->ok() && node->body.value("state", "") == "Ready") ++ready;
      }
      if (ready == hosts.size()) break;
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_EQ(ready, hosts.size()) << logs();
  }

  std::string logs() const {
    std::string text;
    for (size_t i = 0; i < agents_.size(); ++i) {
      std::string log = readFile(dir_->path() + "/agent-" + std::to_string(i) + ".log");
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      text += "\n--- agent " + std::to_string(i) + ":\n" + log;
    }
    if (skiffd_) {
      std::string log = readFile(skiffd_->stateDir() + "/skiffd.log");
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      text += "\n--- skiffd:\n" + log;
    }
    return text;
  }

  json job(const std::string& app, int size, std::vector<std::string> command, double cpu = 0.1,
           int memoryMB = 32) const {
    return {{"applicationName", app},
            {"owner", {{"teamEmail", "t@example.com"}}},
            {"container",
             {{"image", image_},
              {"command", command},
              {"resources",
               {{"cpu", cpu}, {"memoryMB", memoryMB}, {"diskMB", 64}, {"networkMbps", 10}}}}},
            {"batch",
             {{"size", size},
              {"runtimeLimitSec", 600},
              {"retryPolicy", {{"immediate", {{"retries", 0}}}}}}}};
  }

  std::string submit(const json& body) {
    auto response = client_->call("POST", "/v1/jobs", &body);
    EXPECT_TRUE(response && response->status == 201)
        << (response ? response->body.dump() : response.error().message());
    if (!response || !response->ok()) return "";
    return response->body.value("id", "");
  }

  void put(const std::string& path, const json& body) {
    auto response = client_->call("PUT", path, &body);
    ASSERT_TRUE(response && response->ok())
        << path << ": " << (response ? response->body.dump() : response.error().message());
  }

  // The job's current tasks (the latest attempt of each index).
  std::vector<Placed> tasks(const std::string& jobId) {
    std::vector<Placed> result;
    auto response = client_->call("GET", "/v1/tasks?jobId=" + jobId, nullptr);
    if (!response || !response->ok()) return result;
    for (const json& t : response->body.value("items", json::array())) {
      result.push_back({t.value("id", ""), t.value("nodeId", ""), t.value("ip", ""),
                        t.value("state", ""), t.value("reason", ""),
                        t.value("evictionResubmitNumber", 0)});
    }
    return result;
  }

  static int count(const std::vector<Placed>& list, const std::string& state) {
    int n = 0;
    for (const Placed& t : list) n += t.state == state ? 1 : 0;
    return n;
  }

  // Waits until `done(tasks)` holds; returns the last list seen.
  std::vector<Placed> waitTasks(const std::string& jobId,
                                const std::function<bool(const std::vector<Placed>&)>& done,
                                std::chrono::milliseconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<Placed> list;
    while (std::chrono::steady_clock::now() < deadline) {
      list = tasks(jobId);
      if (done(list)) return list;
      std::this_thread::sleep_for(100ms);
    }
    std::string text;
    for (const Placed& t : list) text += t.id + " " + t.state + " " + t.nodeId + "; ";
    ADD_FAILURE() << "job " << jobId << " did not get there in time: " << text << logs();
    return list;
  }

  std::vector<Placed> waitStarted(const std::string& jobId, int n,
                                  std::chrono::milliseconds timeout = 60s) {
    return waitTasks(
        jobId, [&](const std::vector<Placed>& l) { return count(l, "Started") == n; }, timeout);
  }

  runtime::CgroupLayout layout_;
  std::unique_ptr<itest::TempDir> dir_;
  std::unique_ptr<NetnsCluster> cluster_;
  int ownNetns_ = -1;
  std::unique_ptr<itest::LocalRegistry> registry_;
  std::string image_;
  std::unique_ptr<testing::SkiffdProcess> skiffd_;
  std::unique_ptr<client::ApiClient> client_;
  std::vector<pid_t> agents_;
};

// ---- Issue 5: security groups with real containers ----

struct Member {
  std::string name;  // "a0", ...
  std::string group;
  Placed task;
  std::string netns;
};

// Whether the groups allow a TCP connection from `from` to `to` on kHttpPort (the model).
bool allowed(const json& groups, const Member& from, const Member& to) {
  for (const json& document : groups) {
    auto group = api::validateSecurityGroup(document);
    if (!group || group->name != to.group) continue;
    for (const api::SecurityGroupRule& rule : group->ingress) {
      bool source = rule.sourceCidr ? rule.sourceCidr->contains(*api::parseIpv4(from.task.ip))
                                    : rule.sourceGroup == from.group;
      bool protocol =
          rule.protocol == api::Protocol::kAll ||
          (rule.protocol == api::Protocol::kTcp &&
           (rule.fromPort == 0 || (rule.fromPort <= kHttpPort && kHttpPort <= rule.toPort)));
      if (source && protocol) return true;
    }
  }
  return false;
}

// Probes every ordered pair in parallel; returns the number of disagreements with the model and
// the table ('.' allowed, 'X' blocked, '!' observation and model disagree).
std::pair<int, std::string> matrix(const json& groups, const std::vector<Member>& members) {
  std::vector<std::future<bool>> probes;
  for (const Member& from : members) {
    for (const Member& to : members) {
      if (&from == &to) {
        probes.push_back(std::async(std::launch::deferred, [] { return false; }));
        continue;
      }
      probes.push_back(std::async(std::launch::async,
                                  [&] { return tcpConnects(from.netns, to.task.ip, kHttpPort); }));
    }
  }
  int mismatches = 0;
  std::string table = "from\\to ";
  for (const Member& to : members) table += to.name + "(" + to.task.nodeId.substr(5) + ") ";
  table += "\n";
  size_t index = 0;
  for (const Member& from : members) {
    table += from.name + "(" + from.task.nodeId.substr(5) + ")   ";
    for (const Member& to : members) {
      bool observed = probes[index++].get();
      if (&from == &to) {
        table += "  -    ";
        continue;
      }
      bool want = allowed(groups, from, to);
      if (observed != want) ++mismatches;
      table += std::string("  ") + (observed != want ? '!' : observed ? '.' : 'X') + "    ";
    }
    table += "\n";
  }
  return {mismatches, table};
}

TEST_F(MultiNodeTest, SecurityGroupMatrixWithRealContainersBeforeAndAfterARuleChange) {
  ASSERT_NO_FATAL_FAILURE(startCluster({HostSpec{}, HostSpec{}}));
  auto node1 = client_->call("GET", "/v1/nodes/" + nodeId(1), nullptr);
  ASSERT_TRUE(node1 && node1->ok());
  std::string block1 = node1->body["network"].value("block", "");
  ASSERT_FALSE(block1.empty()) << node1->body.dump();

  json v1 = json::array({
      {{"name", "a"},
       {"ingress", {{{"protocol", "tcp"}, {"fromPort", kHttpPort}, {"sourceGroup", "a"}}}}},
      {{"name", "b"},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 8000}, {"toPort", 8100}, {"sourceGroup", "a"}}}}},
      {{"name", "c"}, {"ingress", {{{"protocol", "all"}, {"sourceCidr", block1}}}}},
  });
  for (const json& group : v1)
    put("/v1/security-groups/" + group["name"].get<std::string>(), group);

  // Per group one job of two httpd containers, one on each host (uniqueHost).
  std::vector<Member> members;
  for (const char* group : {"a", "b", "c"}) {
    json body = job(std::string("sg-") + group, 2,
                    {"httpd", "-f", "-p", std::to_string(kHttpPort), "-h", "/www"});
    body["container"]["securityProfile"] = {{"securityGroups", {group}}};
    body["container"]["hardConstraints"] = {{"uniqueHost", "true"}};
    std::string jobId = submit(body);
    ASSERT_FALSE(jobId.empty());
    auto started = waitStarted(jobId, 2);
    ASSERT_EQ(count(started, "Started"), 2);
    for (const Placed& t : started) {
      ASSERT_FALSE(t.ip.empty()) << t.id;
      std::string name = group + std::to_string(members.size());
      members.push_back({name, group, t, agentDir(hostOf(t.nodeId)) + "/netns/" + t.id});
    }
  }
  ASSERT_EQ(members.size(), 6u);
  std::set<std::string> nodes;
  std::set<std::string> ips;
  for (const Member& m : members) {
    nodes.insert(m.task.nodeId);
    ips.insert(m.task.ip);
  }
  EXPECT_EQ(nodes.size(), 2u);
  // Distinct addresses: the nodes' blocks do not overlap (they did when agents registered at once).
  ASSERT_EQ(ips.size(), 6u);

  // Each server answers its own node (traffic from the node is not filtered) before probing.
  for (const Member& m : members) {
    ASSERT_TRUE(fs::exists(m.netns)) << m.netns;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    bool up = false;
    while (!up && std::chrono::steady_clock::now() < deadline) {
      up = tcpConnects(cluster_->netnsPath(hostOf(m.task.nodeId)), m.task.ip, kHttpPort, 500ms);
      if (!up) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(up) << m.name << " at " << m.task.ip << " does not serve" << logs();
  }

  // The view reaches every agent within about a second; allow a few rounds for it.
  auto converge = [&](const json& groups, const char* label) {
    auto deadline = std::chrono::steady_clock::now() + 8s;
    std::pair<int, std::string> result;
    do {
      result = matrix(groups, members);
      if (result.first == 0) break;
      std::this_thread::sleep_for(500ms);
    } while (std::chrono::steady_clock::now() < deadline);
    std::cout << label << " ('.' allowed, 'X' blocked, '!' wrong):\n" << result.second;
    if (result.first == 0) return;
    std::string details = "block of host-1: " + block1 + "\n";
    for (const Member& m : members) details += m.name + " " + m.task.ip + " " + m.task.id + "\n";
    for (int host = 0; host < 2; ++host) {
      std::string ns = fs::path(cluster_->netnsPath(host)).filename().string();
      details += skiff::testing::run({"ip", "netns", "exec", ns, "nft", "list", "ruleset"}).output;
      details += skiff::testing::run({"ip", "-n", ns, "route"}).output;
    }
    ADD_FAILURE() << label << ":\n" << result.second << details << logs();
  };
  converge(v1, "before the change");

  json v2 = json::array({
      {{"name", "a"}, {"ingress", json::array()}},
      {{"name", "b"},
       {"ingress", {{{"protocol", "tcp"}, {"fromPort", kHttpPort}, {"sourceGroup", "c"}}}}},
      {{"name", "c"},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 9000}, {"sourceCidr", "0.0.0.0/0"}},
         {{"protocol", "all"}, {"sourceGroup", "a"}}}}},
  });
  for (const json& group : v2)
    put("/v1/security-groups/" + group["name"].get<std::string>(), group);
  converge(v2, "after the change");
}

// ---- Issue 7: placement across hosts, zones and failures ----

std::vector<HostSpec> fourHostsInThreeZones() {
  std::vector<HostSpec> hosts(4);
  for (int i = 0; i < 4; ++i) hosts[i].zone = "zone-" + std::to_string(i % 3);
  return hosts;
}

TEST_F(MultiNodeTest, UniqueHostPutsEachTaskOnADistinctHost) {
  ASSERT_NO_FATAL_FAILURE(startCluster(fourHostsInThreeZones()));
  json body = job("unique", 5, {"sleep", "600"});
  body["container"]["hardConstraints"] = {{"uniqueHost", "true"}};
  std::string jobId = submit(body);
  ASSERT_FALSE(jobId.empty());
  auto list = waitStarted(jobId, 4);
  std::set<std::string> nodes;
  for (const Placed& t : list) {
    if (t.state == "Started") nodes.insert(t.nodeId);
  }
  EXPECT_EQ(nodes.size(), 4u);
  // The fifth has no host left and stays pending, with the reason named.
  std::this_thread::sleep_for(1s);
  list = tasks(jobId);
  EXPECT_EQ(count(list, "Started"), 4);
  EXPECT_EQ(count(list, "Accepted"), 1);
  for (const Placed& t : list) {
    if (t.state != "Accepted") continue;
    auto why = client_->call("GET", "/v1/tasks/" + t.id + "/why", nullptr);
    ASSERT_TRUE(why && why->ok());
    EXPECT_NE(why->body.value("summary", "").find("uniqueHost"), std::string::npos)
        << why->body.dump();
  }
}

TEST_F(MultiNodeTest, ZoneBalanceSpreadsTasksEvenlyOverThreeZones) {
  // Zones: host-0 and host-3 in zone-0, host-1 in zone-1, host-2 in zone-2.
  ASSERT_NO_FATAL_FAILURE(startCluster(fourHostsInThreeZones()));
  json body = job("zones", 6, {"sleep", "600"});
  body["container"]["hardConstraints"] = {{"zoneBalance", "true"}};
  std::string jobId = submit(body);
  ASSERT_FALSE(jobId.empty());
  auto list = waitStarted(jobId, 6);
  std::map<std::string, int> perZone;
  for (const Placed& t : list) perZone["zone-" + std::to_string(hostOf(t.nodeId) % 3)]++;
  EXPECT_EQ(perZone, (std::map<std::string, int>{{"zone-0", 2}, {"zone-1", 2}, {"zone-2", 2}}));
}

TEST_F(MultiNodeTest, GangJobThatDoesNotFitStaysPendingWhole) {
  ASSERT_NO_FATAL_FAILURE(startCluster(fourHostsInThreeZones()));
  // Five tasks of 1.5 cores on four 2-core hosts: four would fit, the gang places none.
  json big = job("gang", 5, {"sleep", "600"}, 1.5);
  big["batch"]["gang"] = true;
  std::string bigId = submit(big);
  ASSERT_FALSE(bigId.empty());
  auto begin = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - begin < 3s) {
    auto list = tasks(bigId);
    ASSERT_EQ(list.size(), 5u);
    ASSERT_EQ(count(list, "Accepted"), 5) << logs();
    std::this_thread::sleep_for(200ms);
  }
  auto why = client_->call("GET", "/v1/tasks/" + bigId + "-0-0/why", nullptr);
  ASSERT_TRUE(why && why->ok());
  EXPECT_EQ(why->body.value("gang", false), true) << why->body.dump();

  // A gang that fits is placed whole.
  auto killed = client_->call("POST", "/v1/jobs/" + bigId + "/kill", nullptr);
  ASSERT_TRUE(killed && killed->ok());
  json fits = job("gang", 4, {"sleep", "600"}, 1.5);
  fits["batch"]["gang"] = true;
  std::string fitsId = submit(fits);
  ASSERT_FALSE(fitsId.empty());
  auto list = waitStarted(fitsId, 4);
  std::set<std::string> nodes;
  for (const Placed& t : list) nodes.insert(t.nodeId);
  EXPECT_EQ(nodes.size(), 4u);
}

TEST_F(MultiNodeTest, FlexWorkIsPreemptedByCriticalWork) {
  ASSERT_NO_FATAL_FAILURE(startCluster(fourHostsInThreeZones()));
  // Flex work without a reservation fills every host.
  json flex = job("filler", 4, {"sleep", "600"}, 2);
  flex["batch"]["retryPolicy"] = {{"immediate", {{"retries", 3}}}};
  std::string flexId = submit(flex);
  ASSERT_FALSE(flexId.empty());
  waitStarted(flexId, 4);

  json group = {{"name", "pay"},
                {"applicationName", "pay"},
                {"critical", {{"shape", {{"cpu", 2}, {"memoryMB", 32}}}, {"count", 2}}},
                {"flex", {{"shape", {{"cpu", 1}}}, {"count", 0}}}};
  put("/v1/capacity-groups/pay", group);
  json critical = job("pay", 2, {"sleep", "600"}, 2);
  critical["capacityGroup"] = "pay";
  critical["tier"] = "critical";
  auto begin = std::chrono::steady_clock::now();
  std::string criticalId = submit(critical);
  ASSERT_FALSE(criticalId.empty());
  waitStarted(criticalId, 2, 45s);
  std::cout << "critical tasks started "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - begin)
                   .count()
            << " ms after submission\n";
  // Two flex tasks were evicted; their replacements wait, not charged against retries.
  auto list = tasks(flexId);
  EXPECT_EQ(count(list, "Started"), 2);
  int evicted = 0;
  for (const Placed& t : list) evicted += t.evictions;
  EXPECT_EQ(evicted, 2) << logs();
}

TEST_F(MultiNodeTest, DrainMovesAServiceOneTaskAtATimeWithinItsBudget) {
  ASSERT_NO_FATAL_FAILURE(startCluster({HostSpec{}, HostSpec{}}));
  // Three httpd tasks, ready once they answer HTTP; at most one may be unhealthy.
  json body = job("web", 1, {"httpd", "-f", "-p", "8080", "-h", "/www"});
  body.erase("batch");
  body["container"]["ports"] = {8080};
  body["container"]["readiness"] = {
      {"http", {{"port", 8080}, {"path", "/"}}}, {"intervalMs", 300}, {"timeoutMs", 300}};
  body["service"] = {{"capacity", {{"desired", 3}, {"max", 5}}},
                     {"disruptionBudget", {{"maxUnhealthy", 1}}}};
  std::string jobId = submit(body);
  ASSERT_FALSE(jobId.empty());
  auto endpoints = [&] {
    auto response = client_->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
    return response && response->ok() ? response->body.value("items", json::array())
                                      : json::array();
  };
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (endpoints().size() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(endpoints().size(), 3u) << logs();
  // Drain the host holding most of them (bin packing puts all three on one).
  std::map<std::string, int> perNode;
  for (const Placed& t : tasks(jobId)) {
    if (t.state == "Started") perNode[t.nodeId]++;
  }
  std::string drained = perNode.begin()->first;
  for (const auto& [node, n] : perNode) {
    if (n > perNode[drained]) drained = node;
  }
  int onDrained = perNode[drained];

  // The poller: every 100 ms the endpoints and how many tasks of the drained host are stopping.
  std::atomic<bool> polling{true};
  size_t fewest = 3;
  int mostStopping = 0;
  int mostLive = 0;  // Unfinished tasks: 3 plus the moves in flight.
  int polls = 0;
  std::thread poller([&] {
    auto client = skiffd_->client();
    while (polling) {
      auto listed = client->call("GET", "/v1/jobs/" + jobId + "/endpoints", nullptr);
      auto all = client->call("GET", "/v1/tasks?jobId=" + jobId, nullptr);
      if (listed && listed->ok() && all && all->ok()) {
        fewest = std::min(fewest, listed->body.value("items", json::array()).size());
        int stopping = 0;
        int live = 0;
        for (const json& t : all->body.value("items", json::array())) {
          if (t.value("nodeId", "") == drained && t.value("state", "") == "KillInitiated") {
            ++stopping;
          }
          live += t.value("state", "") != "Finished" ? 1 : 0;
        }
        mostStopping = std::max(mostStopping, stopping);
        mostLive = std::max(mostLive, live);
        ++polls;
      }
      std::this_thread::sleep_for(100ms);
    }
  });
  auto begin = std::chrono::steady_clock::now();
  auto response = client_->call("POST", "/v1/nodes/" + drained + "/drain", nullptr);
  bool moved = false;
  deadline = std::chrono::steady_clock::now() + 90s;
  while (response && response->ok() && !moved && std::chrono::steady_clock::now() < deadline) {
    int live = 0;
    int liveOnDrained = 0;
    for (const Placed& t : tasks(jobId)) {
      if (t.state == "Finished") continue;
      ++live;
      liveOnDrained += t.nodeId == drained ? 1 : 0;
    }
    moved = live == 3 && liveOnDrained == 0 && endpoints().size() == 3;
    if (!moved) std::this_thread::sleep_for(100ms);
  }
  polling = false;
  poller.join();
  ASSERT_TRUE(response && response->ok()) << (response ? response->body.dump() : "");
  ASSERT_TRUE(moved) << logs();
  std::cout << onDrained << " tasks moved off " << drained << " in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - begin)
                   .count()
            << " ms; fewest endpoints " << fewest << ", " << polls << " polls\n";
  EXPECT_GT(polls, 5);
  EXPECT_GE(fewest, 2u) << "maxUnhealthy 1 allows one task down at a time";
  EXPECT_LE(mostStopping, 1) << "one task at a time";
  EXPECT_LE(mostLive, 4) << "one move in flight at a time";
  for (const json& endpoint : endpoints()) EXPECT_NE(endpoint.value("nodeId", ""), drained);
}

TEST_F(MultiNodeTest, LostNodeTasksAreReplacedElsewhereWithin15SecondsAndStaleOnesStopLater) {
  ASSERT_NO_FATAL_FAILURE(startCluster(fourHostsInThreeZones(), {"--node-timeout", "3"}));
  json body = job("survivor", 2, {"sleep", "600"});
  body["container"]["hardConstraints"] = {{"uniqueHost", "true"}};
  std::string jobId = submit(body);
  ASSERT_FALSE(jobId.empty());
  auto list = waitStarted(jobId, 2);
  ASSERT_EQ(list.size(), 2u);
  std::string lostNode = list[0].nodeId;
  std::string lostTask = list[0].id;
  std::string ns = fs::path(cluster_->netnsPath(hostOf(lostNode))).filename().string();
  auto cut = skiff::testing::run({"ip", "-n", ns, "link", "set", "eth0", "down"});
  ASSERT_EQ(cut.exitCode, 0) << cut.output;
  auto begin = std::chrono::steady_clock::now();
  list = waitTasks(
      jobId,
      [&](const std::vector<Placed>& l) {
        int elsewhere = 0;
        for (const Placed& t : l) elsewhere += t.state == "Started" && t.nodeId != lostNode;
        return elsewhere == 2;
      },
      15s);
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - begin);
  std::cout << "replacement running " << elapsed.count() << " ms after the link was cut\n";
  EXPECT_LT(elapsed, 15s);
  auto original = client_->call("GET", "/v1/tasks/" + lostTask, nullptr);
  ASSERT_TRUE(original && original->ok());
  EXPECT_EQ(original->body.value("reason", ""), "lost") << original->body.dump();
  auto node = client_->call("GET", "/v1/nodes/" + lostNode, nullptr);
  ASSERT_TRUE(node && node->ok());
  EXPECT_EQ(node->body.value("state", ""), "Lost");

  // The link comes back: the node is Ready again and its agent stops the stale container (its
  // task is no longer among the node's assignments).
  auto restored = skiff::testing::run({"ip", "-n", ns, "link", "set", "eth0", "up"});
  ASSERT_EQ(restored.exitCode, 0) << restored.output;
  std::string container = agentDir(hostOf(lostNode)) + "/containers/" + lostTask;
  ASSERT_TRUE(fs::exists(container) && !fs::exists(container + "/exit"))
      << "the container of " << lostTask << " should still run while its host is cut off";
  auto deadline = std::chrono::steady_clock::now() + 20s;
  bool ready = false;
  bool stopped = false;
  while (std::chrono::steady_clock::now() < deadline && !(ready && stopped)) {
    node = client_->call("GET", "/v1/nodes/" + lostNode, nullptr);
    ready = node && node->ok() && node->body.value("state", "") == "Ready";
    stopped = fs::exists(container + "/exit") || !fs::exists(container);
    if (!(ready && stopped)) std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(ready) << (node ? node->body.dump() : "") << logs();
  EXPECT_TRUE(stopped) << "the stale container " << lostTask << " still runs" << logs();
}

}  // namespace
}  // namespace skiff::agent
