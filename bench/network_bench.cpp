// Networking benchmarks (docs/benchmarks.md, "Networking"). Root; runs in network namespaces of
// its own, so the host's network is never touched.
//
//   network_bench setup [--runs N]
//       Network setup added to a container start: NetworkManager::attach (namespace, veth pair,
//       addresses, routes, neighbor, firewall elements; with and without tbf shaping) and detach,
//       against the same wiring done with `ip` commands (10 execs), in one run.
//   network_bench propagation --skiffd PATH [--members 1000] [--nodes 2] [--changes 10]
//       A security-group rule change to enforced on every node: a real skiffd with N agents'
//       network managers (each in its own host namespace, long-polling /v1/network), a job of
//       MEMBERS tasks in the group (their addresses reported as agents do), then timed changes of
//       the group's rules from the PUT to the new rule being in every node's nftables table.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "agent/network/network_manager.h"
#include "bench_util.h"
#include "client/client.h"

namespace {

using skiff::bench::percentile;

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace net = skiff::agent::network;

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Percentiles by nearest rank; the p99 only from kMinSamplesForP99 samples or more.
void print(const std::string& name, const std::vector<double>& values) {
  char p99Text[32] = "n/a (< 100 samples)";
  if (std::optional<double> p99 = skiff::bench::p99(values)) {
    std::snprintf(p99Text, sizeof p99Text, "%8.3f ms", *p99);
  }
  std::printf("%-34s n=%-4zu p50=%8.3f ms  p90=%8.3f ms  p99=%s\n", name.c_str(), values.size(),
              percentile(values, 0.5), percentile(values, 0.9), p99Text);
}

int sh(const std::string& command) {
  return std::system(command.c_str());
}

// A temporary state directory, removed at exit.
std::string tempDir(const std::string& prefix) {
  std::string path = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(path.data()) == nullptr) std::exit(1);
  return path;
}

void cleanupDir(const std::string& dir) {
  sh("umount -l " + dir + "/netns >/dev/null 2>&1; rm -rf " + dir);
}

int runSetup(int runs) {
  // A fresh "host" namespace for the whole process: nothing touches the real host.
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare");
    return 1;
  }
  sh("ip link set lo up");
  std::string dir = tempDir("skiff-netbench");
  net::NetworkManagerOptions options;
  options.stateDir = dir;
  options.server = "http://127.0.0.1:1";
  options.nodeId = "bench";
  options.quarantineMs = 0;
  auto manager = net::NetworkManager::createDefault(options);
  if (!manager || !(*manager)->configure({{"network", {{"block", "10.64.0.0/22"}}}})) {
    std::fprintf(stderr, "network manager: %s\n",
                 manager ? "configure failed" : manager.error().message().c_str());
    return 1;
  }
  // All attaches first, then all detaches, as a node filling up and draining: a teardown's
  // asynchronous kernel work (namespace cleanup, RCU) then does not land in the next start.
  auto measure = [&](const std::string& name, int64_t mbps) {
    std::vector<double> attach;
    std::vector<double> detach;
    std::vector<std::string> ids;
    for (int i = 0; i < runs; ++i) {
      std::string id = "bench-" + std::to_string(mbps) + "-" + std::to_string(i);
      auto start = Clock::now();
      auto attached = (*manager)->attach(id, {"default"}, mbps);
      attach.push_back(ms(Clock::now() - start));
      if (!attached) {
        std::fprintf(stderr, "attach: %s\n", attached.error().message().c_str());
        std::exit(1);
      }
      ids.push_back(id);
    }
    for (const std::string& id : ids) {
      auto start = Clock::now();
      (*manager)->detach(id);
      detach.push_back(ms(Clock::now() - start));
    }
    print(name + " attach", attach);
    print(name + " detach", detach);
  };
  measure("netlink", 0);
  measure("netlink + tbf both ways", 128);

  // The same wiring with iproute2, one exec per step.
  std::vector<double> ipExecs;
  for (int i = 0; i < std::max(runs / 4, 10); ++i) {
    std::string ns = "skb" + std::to_string(i);
    std::string veth = "skb" + std::to_string(i) + "h";
    std::string ip = "10.65.0." + std::to_string(2 + i % 250);
    std::string commands[] = {
        "ip netns add " + ns,
        "ip link add " + veth + " type veth peer name eth0 netns " + ns,
        "ip -n " + ns + " link set lo up",
        "ip -n " + ns + " link set eth0 up",
        "ip -n " + ns + " addr add " + ip + "/32 dev eth0",
        "ip -n " + ns + " route add 169.254.1.1 dev eth0 scope link",
        "ip -n " + ns + " route add default via 169.254.1.1 dev eth0",
        "ip -n " + ns + " neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent",
        "ip link set " + veth + " up",
        "ip route add " + ip + "/32 dev " + veth,
    };
    auto start = Clock::now();
    for (const std::string& command : commands) {
      if (sh(command) != 0) {
        std::fprintf(stderr, "failed: %s\n", command.c_str());
        return 1;
      }
    }
    ipExecs.push_back(ms(Clock::now() - start));
    sh("ip link del " + veth + "; ip netns del " + ns);
  }
  print("iproute2 (10 execs) setup", ipExecs);
  (*manager)->stop();
  manager->reset();
  cleanupDir(dir);
  return 0;
}

// ---- propagation ----

struct Skiffd {
  pid_t pid = -1;
  std::string dir;
  int port = 0;
  ~Skiffd() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (!dir.empty()) sh("rm -rf " + dir);
  }
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text;
}

int runPropagation(const std::string& skiffdPath, int members, int nodes, int changes) {
  Skiffd skiffd;
  skiffd.dir = tempDir("skiff-netbench-cp");
  skiffd.pid = ::fork();
  if (skiffd.pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    ::execl(skiffdPath.c_str(), skiffdPath.c_str(), "--state-dir", skiffd.dir.c_str(), "--listen",
            "127.0.0.1:0", "--port-file", (skiffd.dir + "/port").c_str(), "--log-level", "error",
            "--node-block-prefix", "20", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 200 && readFile(skiffd.dir + "/port").empty(); ++i) {
    std::this_thread::sleep_for(50ms);
  }
  skiffd.port = std::atoi(readFile(skiffd.dir + "/port").c_str());
  if (skiffd.port == 0) {
    std::fprintf(stderr, "skiffd did not start\n");
    return 1;
  }
  std::string address = "http://127.0.0.1:" + std::to_string(skiffd.port);
  std::string admin = readFile(skiffd.dir + "/admin.token");
  std::string join = readFile(skiffd.dir + "/join.token");
  skiff::client::ApiClient api(address, admin);
  skiff::client::ApiClient agent(address, join);

  // A node that "runs" the members: skiffd places the tasks there and we report their addresses
  // (its /20 block holds 4,094, above the scheduler's address cap for 1,000).
  json node = {{"id", "members"},
               {"resources",
                {{"cpu", 100000},
                 {"memoryMB", 100000000},
                 {"diskMB", 100000000},
                 {"networkMbps", 1000000000}}}};
  auto registered = agent.call("POST", "/v1/nodes", &node);
  if (!registered || !registered->ok()) {
    std::fprintf(stderr, "register failed\n");
    return 1;
  }
  json group = {{"name", "bench"},
                {"ingress", {{{"protocol", "tcp"}, {"fromPort", 1000}, {"sourceGroup", "bench"}}}}};
  api.call("PUT", "/v1/security-groups/bench", &group);
  json job = {{"applicationName", "netbench"},
              {"owner", {{"teamEmail", "bench@example.com"}}},
              {"container",
               {{"image", "busybox:latest"},
                {"resources", {{"cpu", 0.01}, {"memoryMB", 16}, {"diskMB", 1}}},
                {"securityProfile", {{"securityGroups", {"bench"}}}}}},
              {"batch", {{"size", members}}}};
  auto created = api.call("POST", "/v1/jobs", &job);
  if (!created || !created->ok()) {
    std::fprintf(stderr, "job: %s\n", created ? created->body.dump().c_str() : "no answer");
    return 1;
  }
  // Collect the assignments and report each task Started with an address.
  std::vector<std::string> taskIds;
  int64_t revision = 0;
  auto deadline = Clock::now() + 60s;
  while (static_cast<int>(taskIds.size()) < members && Clock::now() < deadline) {
    auto answer = agent.call(
        "GET",
        "/v1/nodes/members/assignments?afterRevision=" + std::to_string(revision) + "&waitMs=2000",
        nullptr);
    if (!answer || !answer->ok()) continue;
    revision = answer->body.value("revision", revision);
    taskIds.clear();
    for (const json& assignment : answer->body["assignments"]) {
      taskIds.push_back(assignment["task"]["id"].get<std::string>());
    }
  }
  json updates = json::array();
  for (size_t i = 0; i < taskIds.size(); ++i) {
    std::string ip = "10.99." + std::to_string(i / 250) + "." + std::to_string(2 + i % 250);
    updates.push_back({{"taskId", taskIds[i]}, {"seq", 1}, {"state", "StartInitiated"}});
    updates.push_back({{"taskId", taskIds[i]}, {"seq", 2}, {"state", "Started"}, {"ip", ip}});
  }
  json body = {{"updates", updates}};
  agent.call("POST", "/v1/nodes/members/taskStatus", &body);
  std::printf("members placed and reported: %zu\n", taskIds.size());
  if (static_cast<int>(taskIds.size()) < members) {
    std::fprintf(stderr, "only %zu of %d members were placed\n", taskIds.size(), members);
    return 1;
  }

  // The enforcing nodes, each in its own namespace; removed on every way out.
  std::vector<std::unique_ptr<net::NetworkManager>> managers;
  std::vector<std::string> dirs;
  struct Cleanup {
    std::vector<std::unique_ptr<net::NetworkManager>>& managers;
    std::vector<std::string>& dirs;
    ~Cleanup() {
      for (auto& manager : managers) manager->stop();
      managers.clear();
      for (const std::string& dir : dirs) cleanupDir(dir);
    }
  } cleanup{managers, dirs};
  for (int n = 0; n < nodes; ++n) {
    dirs.push_back(tempDir("skiff-netbench-node"));
    std::thread([&, n] {
      if (::unshare(CLONE_NEWNET) != 0) return;
      net::NetworkManagerOptions options;
      options.stateDir = dirs.back();
      options.server = address;
      options.token = join;
      options.nodeId = "enforcer-" + std::to_string(n);
      options.pollWait = 5000ms;
      // The driver and the nftables context bind to this thread's namespace; configure() runs
      // below so the sync thread stays in the caller's, where skiffd listens.
      auto manager = net::NetworkManager::createDefault(options);
      if (manager) managers.push_back(std::move(*manager));
    }).join();
    json answer = {{"network", {{"block", "10.98." + std::to_string(n) + ".0/24"}}}};
    if (managers.size() == static_cast<size_t>(n + 1) && !managers.back()->configure(answer)) {
      std::fprintf(stderr, "configure failed\n");
      return 1;
    }
  }
  if (static_cast<int>(managers.size()) != nodes) {
    std::fprintf(stderr, "network managers did not start\n");
    return 1;
  }
  auto enforcedEverywhere = [&](int port, size_t memberCount) {
    for (auto& manager : managers) {
      auto state = manager->firewallState();
      auto it = state.groups.find("bench");
      if (it == state.groups.end() || it->second.ingress.empty() ||
          it->second.ingress[0].fromPort != port || state.members["bench"].size() < memberCount) {
        return false;
      }
    }
    return true;
  };
  deadline = Clock::now() + 30s;
  while (!enforcedEverywhere(1000, taskIds.size()) && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  std::vector<double> latencies;
  for (int change = 0; change < changes; ++change) {
    int port = 2000 + change;
    group["ingress"][0]["fromPort"] = port;
    auto start = Clock::now();
    auto put = api.call("PUT", "/v1/security-groups/bench", &group);
    if (!put || !put->ok()) return 1;
    while (!enforcedEverywhere(port, taskIds.size())) {
      if (Clock::now() - start > 10s) {
        std::fprintf(stderr, "change %d not enforced within 10 s\n", change);
        auto view = agent.call("GET", "/v1/network?afterRevision=0&waitMs=0", nullptr);
        if (view) {
          std::fprintf(stderr, "view: revision %lld, %zu members, groups %s\n",
                       static_cast<long long>(view->body.value("revision", int64_t{0})),
                       view->body["members"].value("bench", json::array()).size(),
                       view->body["securityGroups"].dump().c_str());
        }
        for (auto& manager : managers) {
          auto state = manager->firewallState();
          std::fprintf(stderr, "node: %zu groups, %zu bench members\n", state.groups.size(),
                       state.members["bench"].size());
        }
        return 1;
      }
      std::this_thread::sleep_for(200us);
    }
    latencies.push_back(ms(Clock::now() - start));
    std::this_thread::sleep_for(100ms);
  }
  print("rule change -> enforced on " + std::to_string(nodes) + " nodes (" +
            std::to_string(taskIds.size()) + " members)",
        latencies);
  // Membership changes: a member finishes, its address leaves the group's set on every node.
  std::vector<double> leaves;
  for (int change = 0; change < changes && change < static_cast<int>(taskIds.size()); ++change) {
    size_t expected = taskIds.size() - static_cast<size_t>(change) - 1;
    json finished = {{"updates",
                      {{{"taskId", taskIds[static_cast<size_t>(change)]},
                        {"seq", 3},
                        {"state", "Finished"},
                        {"reason", "normal"},
                        {"exitCode", 0}}}}};
    auto start = Clock::now();
    auto reported = agent.call("POST", "/v1/nodes/members/taskStatus", &finished);
    if (!reported || !reported->ok()) return 1;
    auto settled = [&] {
      for (auto& manager : managers) {
        if (manager->firewallState().members["bench"].size() != expected) return false;
      }
      return true;
    };
    while (!settled()) {
      if (Clock::now() - start > 10s) {
        std::fprintf(stderr, "membership change %d not enforced within 10 s\n", change);
        return 1;
      }
      std::this_thread::sleep_for(200us);
    }
    leaves.push_back(ms(Clock::now() - start));
    std::this_thread::sleep_for(100ms);
  }
  print("member leaves -> set updated on " + std::to_string(nodes) + " nodes", leaves);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Skiff networking benchmarks");
  app.require_subcommand(1);
  int runs = 200;
  auto* setup = app.add_subcommand("setup", "Network setup cost per container start");
  setup->add_option("--runs", runs);
  std::string skiffd;
  int members = 1000;
  int nodes = 2;
  int changes = 10;
  auto* propagation = app.add_subcommand("propagation", "Security-group change to enforcement");
  propagation->add_option("--skiffd", skiffd)->required();
  propagation->add_option("--members", members);
  propagation->add_option("--nodes", nodes);
  propagation->add_option("--changes", changes);
  CLI11_PARSE(app, argc, argv);
  if (*setup) return runSetup(runs);
  return runPropagation(skiffd, members, nodes, changes);
}
