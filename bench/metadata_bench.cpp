// Metadata proxy throughput and latency: many clients asking for role credentials
// (GET /latest/meta-data/iam/security-credentials/ROLE with an IMDSv2 token), as AWS SDKs do.
//
//   metadata_bench [--clients 32] [--seconds 10] [--tasks 1] [--io-threads 2]
//                  [--new-connection] [--netns] [--rate N]
//
// Default: the proxy serves each task on a loopback listener (no root). --netns: each task gets
// a real network namespace, the listener is created inside it at 169.254.169.254:80 (the
// production path) and the client threads enter the namespaces. Credentials come from an
// in-process provider, so this measures the proxy (cache hits), not skiffd. Prints one JSON line.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "agent/metadata/metadata_proxy.h"
#include "agent/metadata/netns_listener.h"
#include "bench_util.h"

namespace {

using skiff::bench::percentile;

using namespace skiff;
using namespace skiff::agent::metadata;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using Steady = std::chrono::steady_clock;

class StaticProvider final : public IdentityProvider {
 public:
  Result<RoleCredentials> roleCredentials(const TaskMetadata& task) override {
    int64_t now = SystemClock::instance().nowMs();
    nlohmann::json document = {{"Code", "Success"},
                               {"LastUpdated", formatIso8601(now)},
                               {"Type", "AWS-HMAC"},
                               {"AccessKeyId", "ASIABENCHMARK0000000"},
                               {"SecretAccessKey", std::string(40, 's')},
                               {"Token", std::string(600, 't')},
                               {"Expiration", formatIso8601(now + 3'600'000)}};
    return parseRoleCredentials(document, task.iamRole, now);
  }
  Result<IdentityToken> taskIdentity(const TaskMetadata&) override {
    int64_t now = SystemClock::instance().nowMs();
    return IdentityToken{std::string(500, 'j'), now, now + 3'600'000};
  }
};

struct Target {
  std::string ip;
  uint16_t port = 0;
  std::string netns;  // Empty: the host namespace.
  std::string role;
};

struct ClientResult {
  std::vector<double> latenciesMs;
  int64_t errors = 0;
};

bool sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

// One client: a token, then credential requests until `deadline`.
// With `interval` > 0 the client is paced (open loop): request k is due at start + k * interval
// and its latency is counted from then, so a stall is not hidden by the requests it delayed.
void runClient(const Target& target, Steady::time_point deadline, bool newConnection,
               std::chrono::nanoseconds interval, ClientResult& result) {
  asio::io_context io;
  asio::ip::tcp::endpoint endpoint(asio::ip::make_address(target.ip), target.port);
  std::unique_ptr<asio::ip::tcp::socket> socket;
  boost::beast::flat_buffer buffer;
  auto connect = [&] {
    socket = std::make_unique<asio::ip::tcp::socket>(io);
    socket->connect(endpoint);
    socket->set_option(asio::ip::tcp::no_delay(true));
    buffer.clear();
  };
  auto exchange = [&](bhttp::request<bhttp::string_body>& request) {
    bhttp::write(*socket, request);
    bhttp::response<bhttp::string_body> response;
    bhttp::read(*socket, buffer, response);
    return response;
  };
  try {
    connect();
    bhttp::request<bhttp::string_body> put{bhttp::verb::put, "/latest/api/token", 11};
    put.set(bhttp::field::host, target.ip);
    put.set("X-aws-ec2-metadata-token-ttl-seconds", "21600");
    put.prepare_payload();
    std::string token = exchange(put).body();
    bhttp::request<bhttp::string_body> get{
        bhttp::verb::get, "/latest/meta-data/iam/security-credentials/" + target.role, 11};
    get.set(bhttp::field::host, target.ip);
    get.set("X-aws-ec2-metadata-token", token);
    get.keep_alive(!newConnection);
    get.prepare_payload();
    auto due = Steady::now();
    while (Steady::now() < deadline) {
      auto start = Steady::now();
      if (interval.count() > 0) {
        due += interval;
        std::this_thread::sleep_until(due);
        start = due;
      }
      if (newConnection) connect();
      auto response = exchange(get);
      double ms = std::chrono::duration<double, std::milli>(Steady::now() - start).count();
      if (response.result_int() != 200) {
        ++result.errors;
        continue;
      }
      result.latenciesMs.push_back(ms);
    }
  } catch (const std::exception& e) {
    ++result.errors;
    std::fprintf(stderr, "client: %s\n", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 32;
  int seconds = 10;
  int tasks = 1;
  int ioThreads = 2;
  bool newConnection = false;
  bool useNetns = false;
  double rate = 0;
  CLI::App app{"metadata proxy benchmark"};
  app.add_option("--clients", clients, "Concurrent client connections");
  app.add_option("--seconds", seconds, "Measurement time");
  app.add_option("--tasks", tasks, "Tasks (listeners); clients are spread over them");
  app.add_option("--io-threads", ioThreads, "Proxy I/O threads");
  app.add_flag("--new-connection", newConnection, "One TCP connection per request");
  app.add_flag("--netns", useNetns, "Real network namespaces (root)");
  app.add_option("--rate", rate, "Total requests per second, paced (default: as fast as possible)");
  CLI11_PARSE(app, argc, argv);

  MetadataProxyOptions options;
  options.ioThreads = ioThreads;
  auto proxy = MetadataProxy::create(options, std::make_shared<StaticProvider>());
  if (!proxy) {
    std::fprintf(stderr, "%s\n", proxy.error().message().c_str());
    return 1;
  }
  std::vector<Target> targets;
  std::vector<std::string> namespaces;
  for (int i = 0; i < tasks; ++i) {
    TaskMetadata task;
    task.taskId = "bench-task-" + std::to_string(i);
    task.iamRole = "bench-role-" + std::to_string(i);
    task.ipv4 = "10.64.0." + std::to_string(i + 2);
    task.nodeId = "bench-node";
    Target target{"127.0.0.1", 0, "", task.iamRole};
    if (useNetns) {
      std::string name = "skmdbench" + std::to_string(::getpid() % 10000) + "-" + std::to_string(i);
      sh("ip netns del " + name);
      if (!sh("ip netns add " + name)) {
        std::fprintf(stderr, "cannot create network namespace %s (root?)\n", name.c_str());
        return 1;
      }
      namespaces.push_back(name);
      target = {"169.254.169.254", 80, "/run/netns/" + name, task.iamRole};
      if (auto added = (*proxy)->addTask(task, target.netns); !added) {
        std::fprintf(stderr, "%s\n", added.error().message().c_str());
        return 1;
      }
    } else {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
      ::listen(fd, SOMAXCONN);
      socklen_t length = sizeof(address);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
      target.port = ntohs(address.sin_port);
      if (auto adopted = (*proxy)->adoptListener(task, fd); !adopted) {
        std::fprintf(stderr, "%s\n", adopted.error().message().c_str());
        return 1;
      }
    }
    targets.push_back(target);
  }
  // Let the prefetch land so every request is a cache hit, as in steady state.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  std::vector<ClientResult> results(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  auto start = Steady::now();
  auto deadline = start + std::chrono::seconds(seconds);
  std::chrono::nanoseconds interval(rate > 0 ? static_cast<int64_t>(1e9 * clients / rate) : 0);
  for (int i = 0; i < clients; ++i) {
    const Target& target = targets[static_cast<size_t>(i) % targets.size()];
    ClientResult& result = results[static_cast<size_t>(i)];
    threads.emplace_back([&target, &result, deadline, newConnection, interval] {
      if (target.netns.empty()) {
        runClient(target, deadline, newConnection, interval, result);
        return;
      }
      auto ran = runInNetns(target.netns, [&]() -> Status {
        runClient(target, deadline, newConnection, interval, result);
        return {};
      });
      if (!ran) ++result.errors;
    });
  }
  for (auto& thread : threads) thread.join();
  double elapsed = std::chrono::duration<double>(Steady::now() - start).count();
  proxy->reset();
  for (const auto& name : namespaces) sh("ip netns del " + name);

  std::vector<double> all;
  int64_t errors = 0;
  for (auto& result : results) {
    all.insert(all.end(), result.latenciesMs.begin(), result.latenciesMs.end());
    errors += result.errors;
  }
  std::sort(all.begin(), all.end());
  nlohmann::json out = {{"clients", clients},
                        {"tasks", tasks},
                        {"ioThreads", ioThreads},
                        {"newConnection", newConnection},
                        {"netns", useNetns},
                        {"targetRate", rate},
                        {"seconds", elapsed},
                        {"requests", all.size()},
                        {"errors", errors},
                        {"requestsPerSec", static_cast<double>(all.size()) / elapsed},
                        {"p50Ms", percentile(all, 0.50)},
                        {"p90Ms", percentile(all, 0.90)},
                        {"p99Ms", skiff::bench::p99OrNull<nlohmann::json>(all)},
                        {"maxMs", all.empty() ? 0 : all.back()}};
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 ? 0 : 1;
}
