// The node data plane on real kernels objects: two test hosts in network namespaces
// (testing/netns_cluster.h), a NetworkManager in each (veth links over netlink, the nftables
// table, routes between the hosts' blocks), six container namespaces in three security groups.
// Every ordered pair is probed over TCP and compared with the table the rules imply, before and
// after a rule change; spoofed sources are dropped; a 50 Mbps container measures 50 Mbps with
// iperf3 in both directions. Two agents' managers with different instance names on one host each
// filter only their own containers, and one stopping leaves the other as it was. Root only;
// skipped with the reason otherwise. Everything is removed by the fixture, also when a test fails.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <iostream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/image/fs_util.h"
#include "agent/network/netns.h"
#include "agent/network/network_manager.h"
#include "testing/local_registry.h"
#include "testing/netns_cluster.h"
#include "testing/requirements.h"

namespace skiff::agent::network {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using skiff::testing::NetnsCluster;

constexpr int kTcpPort = 8080;
constexpr int kUdpPort = 9090;

sockaddr_in socketAddress(const std::string& ip, int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &address.sin_addr);
  return address;
}

// Whether a TCP connection from inside `netns` (optionally from `source`) to ip:port completes
// within `timeout`.
bool tcpConnects(const std::string& netns, const std::string& ip, int port,
                 std::chrono::milliseconds timeout = 1000ms) {
  bool connected = false;
  skiff::testing::runInNetns(netns, [&] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in to = socketAddress(ip, port);
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

// A container namespace serving TCP (accept and close) and counting UDP datagrams by source.
class Listener {
 public:
  explicit Listener(std::string netns) : netns_(std::move(netns)) {
    thread_ = std::thread([this] { skiff::testing::runInNetns(netns_, [this] { serve(); }); });
    while (!ready_) std::this_thread::sleep_for(1ms);
  }
  ~Listener() {
    stop_ = true;
    thread_.join();
  }
  int datagramsFrom(const std::string& source) {
    std::lock_guard lock(mutex_);
    return sources_[source];
  }

 private:
  void serve() {
    int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in any = socketAddress("0.0.0.0", kTcpPort);
    ::bind(tcp, reinterpret_cast<sockaddr*>(&any), sizeof any);
    ::listen(tcp, 64);
    any.sin_port = htons(kUdpPort);
    ::bind(udp, reinterpret_cast<sockaddr*>(&any), sizeof any);
    ready_ = true;
    while (!stop_) {
      pollfd fds[2] = {{tcp, POLLIN, 0}, {udp, POLLIN, 0}};
      if (::poll(fds, 2, 50) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int client = ::accept4(tcp, nullptr, nullptr, SOCK_CLOEXEC);
        if (client >= 0) ::close(client);
      }
      if (fds[1].revents & POLLIN) {
        char buffer[64];
        sockaddr_in from{};
        socklen_t length = sizeof from;
        if (::recvfrom(udp, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from),
                       &length) >= 0) {
          char text[INET_ADDRSTRLEN] = {};
          inet_ntop(AF_INET, &from.sin_addr, text, sizeof text);
          std::lock_guard lock(mutex_);
          ++sources_[text];
        }
      }
    }
    ::close(tcp);
    ::close(udp);
  }

  std::string netns_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::map<std::string, int> sources_;
};

// Sends UDP datagrams from inside `netns`, from `source` (which is added to eth0 first when it
// is not the container's own address: a spoofing container).
void sendUdp(const std::string& netns, const std::string& source, const std::string& ip) {
  skiff::testing::runInNetns(netns, [&] {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
    sockaddr_in from = socketAddress(source, 0);
    ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from);
    sockaddr_in to = socketAddress(ip, kUdpPort);
    for (int i = 0; i < 5; ++i) {
      ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      std::this_thread::sleep_for(10ms);
    }
    ::close(fd);
  });
}

struct Container {
  std::string id;
  int host = 0;
  std::string group;
  std::string ip;
  std::string netns;
};

class DataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIFF_REQUIRE_NOTHING_MISSING(NetnsCluster::skipReason());
    auto cluster = NetnsCluster::create(2, "skdp" + std::to_string(getpid()));
    ASSERT_TRUE(cluster) << cluster.error().message();
    cluster_ = std::move(*cluster);
    for (int host = 0; host < 2; ++host) {
      dirs_.push_back(std::make_unique<image::testing::TempDir>("skiff-dataplane"));
      std::unique_ptr<NetworkManager> manager;
      std::string error;
      skiff::testing::runInNetns(cluster_->netnsPath(host), [&] {
        NetworkManagerOptions options;
        options.stateDir = dirs_.back()->path();
        options.server = "http://127.0.0.1:1";  // No skiffd: views are applied by the test.
        options.nodeId = "h" + std::to_string(host);
        auto created = NetworkManager::createDefault(options);
        if (!created) {
          error = created.error().message();
          return;
        }
        json answer = {{"network", {{"block", block(host)}}}};
        if (auto configured = (*created)->configure(answer); !configured) {
          error = configured.error().message();
          return;
        }
        manager = std::move(*created);
      });
      ASSERT_TRUE(manager) << error;
      managers_.push_back(std::move(manager));
    }
  }

  void TearDown() override {
    listeners_.clear();
    for (const Container& c : containers_) managers_[c.host]->detach(c.id);
    for (auto& manager : managers_) manager->stop();
    managers_.clear();
    for (auto& dir : dirs_) image::testing::unmountAll(dir->path());
    cluster_.reset();  // Deletes the hosts and with them their links, routes and tables.
    dirs_.clear();
  }

  static std::string block(int host) { return "10.64." + std::to_string(host) + ".0/24"; }

  void addContainer(const std::string& id, int host, const std::string& group, int64_t mbps = 0) {
    auto attached = managers_[host]->attach(id, {group}, mbps);
    ASSERT_TRUE(attached) << attached.error().message();
    containers_.push_back({id, host, group, attached->address, attached->netnsPath});
    listeners_.push_back(std::make_unique<Listener>(attached->netnsPath));
  }

  // What skiffd would publish: the groups, every container's membership, both nodes.
  json view(const json& groups) const {
    json members = json::object();
    for (const Container& c : containers_) members[c.group].push_back(c.ip);
    json nodes = json::array();
    for (int host = 0; host < 2; ++host) {
      nodes.push_back({{"id", "h" + std::to_string(host)},
                       {"block", block(host)},
                       {"hostAddress", NetnsCluster::hostAddress(host)}});
    }
    return {{"revision", 1}, {"securityGroups", groups}, {"members", members}, {"nodes", nodes}};
  }

  void applyEverywhere(const json& groups) {
    for (auto& manager : managers_) ASSERT_TRUE(manager->applyView(view(groups)));
  }

  // The model: whether a TCP connection from `from` to `to` on kTcpPort is allowed.
  bool expected(const json& groups, const Container& from, const Container& to) const {
    for (const json& document : groups) {
      auto group = api::validateSecurityGroup(document);
      if (!group || group->name != to.group) continue;
      for (const api::SecurityGroupRule& rule : group->ingress) {
        bool source = rule.sourceCidr ? rule.sourceCidr->contains(*api::parseIpv4(from.ip))
                                      : rule.sourceGroup == from.group;
        bool protocol =
            rule.protocol == api::Protocol::kAll ||
            (rule.protocol == api::Protocol::kTcp &&
             (rule.fromPort == 0 || (rule.fromPort <= kTcpPort && kTcpPort <= rule.toPort)));
        if (source && protocol) return true;
      }
    }
    return false;
  }

  // Probes every ordered pair (in parallel) and returns the mismatches as a printed table:
  // '.' allowed, 'X' blocked, '!' where observation and model disagree.
  std::pair<int, std::string> matrix(const json& groups) {
    std::vector<std::future<bool>> probes;
    for (const Container& from : containers_) {
      for (const Container& to : containers_) {
        if (&from == &to) {
          probes.push_back(std::async(std::launch::deferred, [] { return false; }));
          continue;
        }
        probes.push_back(std::async(std::launch::async,
                                    [&] { return tcpConnects(from.netns, to.ip, kTcpPort); }));
      }
    }
    int mismatches = 0;
    std::string table = "      ";
    for (const Container& to : containers_) table += to.id.substr(0, 3) + " ";
    table += "\n";
    size_t index = 0;
    for (const Container& from : containers_) {
      table += from.id.substr(0, 3) + "   ";
      for (const Container& to : containers_) {
        bool observed = probes[index++].get();
        if (&from == &to) {
          table += " -  ";
          continue;
        }
        bool want = expected(groups, from, to);
        if (observed != want) ++mismatches;
        table += std::string(" ") + (observed != want ? '!' : observed ? '.' : 'X') + "  ";
      }
      table += "\n";
    }
    return {mismatches, table};
  }

  std::unique_ptr<NetnsCluster> cluster_;
  std::vector<std::unique_ptr<image::testing::TempDir>> dirs_;
  std::vector<std::unique_ptr<NetworkManager>> managers_;
  std::vector<Container> containers_;
  std::vector<std::unique_ptr<Listener>> listeners_;
};

TEST_F(DataPlaneTest, ReachabilityMatrixMatchesSecurityGroupsBeforeAndAfterARuleChange) {
  // Six containers, three groups, each group on both hosts.
  const char* groups[] = {"a", "b", "c"};
  for (int i = 0; i < 6; ++i) {
    addContainer(std::string(groups[i / 2]) + std::to_string(i) + "-task", i % 2, groups[i / 2]);
  }
  json v1 = json::array({
      {{"name", "a"},
       {"ingress", {{{"protocol", "tcp"}, {"fromPort", 8080}, {"sourceGroup", "a"}}}}},
      {{"name", "b"},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 8000}, {"toPort", 8100}, {"sourceGroup", "a"}}}}},
      {{"name", "c"}, {"ingress", {{{"protocol", "all"}, {"sourceCidr", "10.64.1.0/24"}}}}},
  });
  applyEverywhere(v1);
  auto [before, beforeTable] = matrix(v1);
  std::cout << "before the change ('.' allowed, 'X' blocked, '!' wrong):\n" << beforeTable;
  EXPECT_EQ(before, 0) << "before the change:\n" << beforeTable;

  json v2 = json::array({
      {{"name", "a"}, {"ingress", json::array()}},
      {{"name", "b"},
       {"ingress", {{{"protocol", "tcp"}, {"fromPort", 8080}, {"sourceGroup", "c"}}}}},
      {{"name", "c"},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 9000}, {"sourceCidr", "0.0.0.0/0"}},
         {{"protocol", "all"}, {"sourceGroup", "a"}}}}},
  });
  applyEverywhere(v2);
  auto [after, afterTable] = matrix(v2);
  std::cout << "after the change:\n" << afterTable;
  EXPECT_EQ(after, 0) << "after the change:\n" << afterTable;
}

TEST_F(DataPlaneTest, SpoofedSourceAddressesAreDropped) {
  addContainer("sender-task", 1, "a");
  addContainer("receiver-task", 0, "open");
  addContainer("local-receiver-task", 1, "open");
  json groups = json::array(
      {{{"name", "open"}, {"ingress", {{{"protocol", "all"}, {"sourceCidr", "0.0.0.0/0"}}}}}});
  applyEverywhere(groups);
  const Container& sender = containers_[0];
  for (size_t target = 1; target < containers_.size(); ++target) {
    const Container& receiver = containers_[target];
    sendUdp(sender.netns, sender.ip, receiver.ip);
    // Another container's address, and an address no one holds.
    sendUdp(sender.netns, containers_[3 - target].ip, receiver.ip);
    sendUdp(sender.netns, "10.64.1.200", receiver.ip);
    std::this_thread::sleep_for(200ms);
    EXPECT_GT(listeners_[target]->datagramsFrom(sender.ip), 0) << receiver.id;
    EXPECT_EQ(listeners_[target]->datagramsFrom(containers_[3 - target].ip), 0) << receiver.id;
    EXPECT_EQ(listeners_[target]->datagramsFrom("10.64.1.200"), 0) << receiver.id;
  }
}

// Runs iperf3 from `client` against `server` and returns the received rate in Mbps.
double iperfMbps(const Container& client, const Container& server, bool reverse) {
  std::vector<std::string> argv = {
      "nsenter", "--net=" + client.netns, "--", "iperf3", "-c", server.ip, "-t", "4", "-O", "1",
      "-J"};
  if (reverse) argv.push_back("-R");
  auto result = skiff::testing::run(argv);
  json report = json::parse(result.output, nullptr, false);
  if (!report.is_object() || !report.contains("end")) {
    ADD_FAILURE() << "iperf3 failed: " << result.output.substr(0, 2000);
    return 0;
  }
  return report["end"]["sum_received"].value("bits_per_second", 0.0) / 1e6;
}

TEST_F(DataPlaneTest, BandwidthIsShapedToNetworkMbpsInBothDirections) {
  SKIFF_REQUIRE_NOTHING_MISSING(skiff::testing::missingProgram("iperf3"));
  addContainer("limited-task", 0, "open", 50);
  addContainer("peer-task", 1, "open", 0);
  json groups = json::array(
      {{{"name", "open"}, {"ingress", {{{"protocol", "all"}, {"sourceCidr", "0.0.0.0/0"}}}}}});
  applyEverywhere(groups);
  const Container& limited = containers_[0];
  const Container& peer = containers_[1];
  auto server = cluster_->spawnIn(limited.netns, {"iperf3", "-s", "-p", "5201"});
  ASSERT_TRUE(server);
  for (int i = 0; i < 50 && !tcpConnects(peer.netns, limited.ip, 5201, 100ms); ++i) {
    std::this_thread::sleep_for(50ms);
  }
  double into = iperfMbps(peer, limited, false);  // Peer sends; host side tbf shapes.
  double outOf = iperfMbps(peer, limited, true);  // Limited sends; its own eth0 tbf shapes.
  std::cout << "into the container: " << into << " Mbps, out of it: " << outOf << " Mbps\n";
  RecordProperty("intoMbps", std::to_string(into));
  RecordProperty("outOfMbps", std::to_string(outOf));
  EXPECT_NEAR(into, 50.0, 5.0);
  EXPECT_NEAR(outOf, 50.0, 5.0);
  cluster_->stop(*server);
}

// Two all-in-one clusters on one host: their agents' managers (instances "a" and "b", their own
// blocks) share the host namespace. Each table filters only its own links, both clusters give a
// task the same id without their links colliding, a third manager with a taken instance name is
// refused, and one stopping leaves the other's table, links and mounts as they were.
TEST(TwoInstancesOnOneHost, EachFiltersOnlyItsOwnContainersAndOneStoppingLeavesTheOther) {
  SKIFF_REQUIRE_NOTHING_MISSING(NetnsCluster::skipReason());
  auto cluster = NetnsCluster::create(1, "sk2i" + std::to_string(getpid()));
  ASSERT_TRUE(cluster) << cluster.error().message();
  std::string host = (*cluster)->netnsPath(0);
  std::map<std::string, std::unique_ptr<image::testing::TempDir>> dirs;
  std::map<std::string, std::unique_ptr<NetworkManager>> managers;
  std::string refused;
  ASSERT_TRUE(skiff::testing::runInNetns(host, [&] {
    int octet = 64;
    for (const std::string instance : {"a", "b"}) {
      dirs[instance] = std::make_unique<image::testing::TempDir>("skiff-instance-" + instance);
      NetworkManagerOptions options;
      options.stateDir = dirs[instance]->path();
      options.server = "http://127.0.0.1:1";
      options.nodeId = "node";
      options.instance = instance;
      auto created = NetworkManager::createDefault(options);
      if (!created) return;
      json answer = {{"network", {{"block", "10." + std::to_string(octet++) + ".0.0/24"}}}};
      if (!(*created)->configure(answer)) return;
      managers[instance] = std::move(*created);
    }
    NetworkManagerOptions again;
    again.stateDir = dirs["a"]->path() + "/third";
    again.instance = "a";
    auto third = NetworkManager::createDefault(again);
    refused = third ? "" : third.error().message();
  }));
  auto cleanup = [&] {
    for (auto& [instance, manager] : managers) {
      manager->detach("task-1");
      manager->stop();
    }
    managers.clear();
    for (auto& [instance, dir] : dirs) image::testing::unmountAll(dir->path());
  };
  ASSERT_EQ(managers.size(), 2u);
  EXPECT_NE(refused.find("(pid " + std::to_string(getpid()) + ") uses the nftables table skiff-a"),
            std::string::npos)
      << refused;

  std::map<std::string, Container> containers;
  std::vector<std::unique_ptr<Listener>> listeners;
  json groups = json::array(
      {{{"name", "open"}, {"ingress", {{{"protocol", "all"}, {"sourceCidr", "0.0.0.0/0"}}}}}});
  for (auto& [instance, manager] : managers) {
    auto attached = manager->attach("task-1", {"open"}, 0);  // The same task id in both.
    if (!attached) {
      ADD_FAILURE() << instance << ": " << attached.error().message();
      cleanup();
      return;
    }
    containers[instance] = {"task-1", 0, "open", attached->address, attached->netnsPath};
    listeners.push_back(std::make_unique<Listener>(attached->netnsPath));
    json view = {{"revision", 1},
                 {"securityGroups", groups},
                 {"members", {{"open", {attached->address}}}},
                 {"nodes", json::array()}};
    EXPECT_TRUE(manager->applyView(view));
  }
  const Container& a = containers["a"];
  const Container& b = containers["b"];
  // Traffic between them crosses both tables: each checks only its own link, so the
  // destination's groups decide (both open here).
  EXPECT_TRUE(tcpConnects(a.netns, b.ip, kTcpPort));
  EXPECT_TRUE(tcpConnects(b.netns, a.ip, kTcpPort));
  FirewallState stateB = managers["b"]->firewallState();
  std::string mountsB;
  for (const std::string& point : image::fs::mountsUnder(dirs["b"]->path())) mountsB += point + " ";

  managers["a"]->detach("task-1");
  managers["a"]->stop();
  managers.erase("a");
  auto tableA = skiff::testing::run({"ip", "netns", "exec", host.substr(host.rfind('/') + 1), "nft",
                                     "list", "table", "ip", "skiff-a"});
  EXPECT_NE(tableA.exitCode, 0) << tableA.output;
  EXPECT_TRUE(image::fs::mountsUnder(dirs["a"]->path()).empty());
  // The table is free again for an agent with a's name, and b's is still taken.
  std::string claims;
  skiff::testing::runInNetns(host, [&] {
    for (const std::string instance : {"a", "b"}) {
      NetworkManagerOptions options;
      options.stateDir = dirs["a"]->path() + "/again-" + instance;
      options.instance = instance;
      auto again = NetworkManager::createDefault(options);
      claims += instance + (again ? ": free " : ": taken ");
    }
  });
  EXPECT_EQ(claims, "a: free b: taken ");

  auto tableB = skiff::testing::run({"ip", "netns", "exec", host.substr(host.rfind('/') + 1), "nft",
                                     "list", "table", "ip", "skiff-b"});
  EXPECT_EQ(tableB.exitCode, 0) << tableB.output;
  EXPECT_EQ(managers["b"]->firewallState(), stateB);
  std::string mountsAfter;
  for (const std::string& point : image::fs::mountsUnder(dirs["b"]->path())) {
    mountsAfter += point + " ";
  }
  EXPECT_EQ(mountsAfter, mountsB);
  EXPECT_TRUE(tcpConnects(host, b.ip, kTcpPort));
  listeners.clear();
  cleanup();
  EXPECT_TRUE(image::fs::mountsUnder(dirs["b"]->path()).empty());
}

}  // namespace
}  // namespace skiff::agent::network
