// skiffd: the Skiff control plane. Parses flags and wires the store, job manager and API.

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "agent/agent.h"
#include "agent/node_info.h"
#include "common/clock.h"
#include "common/http_server.h"
#include "common/log.h"
#include "controlplane/api_routes.h"
#include "controlplane/identity/identity_routes.h"
#include "controlplane/identity/job_manager_task_directory.h"
#include "controlplane/job_manager.h"
#include "controlplane/scheduler/scheduler.h"
#include "controlplane/store/sqlite_store.h"
#include "controlplane/tokens.h"

namespace {

using namespace skiff;

struct Flags {
  std::string stateDir = "/var/lib/skiff";
  std::string listen = "127.0.0.1:7070";
  std::string portFile;
  std::string logLevel = "info";
  int threads = 0;
  bool withAgent = false;
  std::string agentStateDir = "/var/lib/skiff-agent";
  std::string agentNodeId;
  std::vector<std::string> insecureRegistries;
  double launchedTimeoutSec = 120;
  double startInitiatedTimeoutSec = 600;
  double killInitiatedTimeoutSec = 300;
  double systemRetryDelaySec = 1;
  int64_t maxSystemRetries = 10;
  double nodeTimeoutSec = 30;
  double cpuMetricIntervalSec = 5;
  std::string vpcCidr = controlplane::AddressPlan{}.vpcCidr;
  int nodeBlockPrefix = controlplane::AddressPlan{}.nodeBlockPrefix;
};

Status ensureDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("create state directory " + path, errno));
  }
  return {};
}

int run(const Flags& flags) {
  log::init("skiffd", log::parseLevel(flags.logLevel, log::Level::kInfo));
  auto address = http::parseHostPort(flags.listen);
  if (!address) {
    log::error("bad --listen", {{"error", address.error().message()}});
    return 2;
  }
  if (auto made = ensureDirectory(flags.stateDir); !made) {
    log::error("cannot use the state directory", {{"error", made.error().message()}});
    return 1;
  }
  auto tokens = controlplane::loadOrCreateTokens(flags.stateDir);
  if (!tokens) {
    log::error("cannot set up tokens", {{"error", tokens.error().message()}});
    return 1;
  }
  auto store = store::SqliteStore::open(flags.stateDir + "/skiff.db");
  if (!store) {
    log::error("cannot open the store", {{"error", store.error().message()}});
    return 1;
  }

  boost::asio::io_context io;
  controlplane::ManagerConfig config;
  config.lifecycle.launchedTimeoutMs = static_cast<int64_t>(flags.launchedTimeoutSec * 1000);
  config.lifecycle.startInitiatedTimeoutMs =
      static_cast<int64_t>(flags.startInitiatedTimeoutSec * 1000);
  config.lifecycle.killInitiatedTimeoutMs =
      static_cast<int64_t>(flags.killInitiatedTimeoutSec * 1000);
  config.lifecycle.systemRetryDelayMs = static_cast<int64_t>(flags.systemRetryDelaySec * 1000);
  config.lifecycle.maxSystemRetries = flags.maxSystemRetries;
  config.nodeHeartbeatTimeoutMs = static_cast<int64_t>(flags.nodeTimeoutSec * 1000);
  config.cpuMetricIntervalMs = static_cast<int64_t>(flags.cpuMetricIntervalSec * 1000);
  config.addressPlan = {flags.vpcCidr, flags.nodeBlockPrefix};
  if (auto plan = controlplane::validateAddressPlan(config.addressPlan); !plan) {
    log::error("bad address plan", {{"error", plan.error().message()}});
    return 2;
  }
  controlplane::JobManager manager(io, **store, SystemClock::instance(),
                                   controlplane::scheduler::makeScheduler(SystemClock::instance()),
                                   config);
  if (auto recovered = manager.recover(); !recovered) {
    log::error("cannot recover state", {{"error", recovered.error().message()}});
    return 1;
  }

  std::atomic<bool> stopping = false;
  controlplane::ApiContext api{manager, **store, [&] { return !stopping.load(); }};
  api.joinToken = tokens->join;  // Presented to the agents' log servers.
  auto networkView = controlplane::NetworkView::start(**store);
  if (!networkView) {
    log::error("cannot start the network view", {{"error", networkView.error().message()}});
    return 1;
  }
  api.network = networkView->get();
  http::Router router;
  controlplane::registerRoutes(router, api);

  // Task identity: the signing keys live in STATE_DIR/identity (0700, one 0600 PEM per key).
  auto keys =
      identity::KeyRing::loadOrCreate(flags.stateDir + "/identity", SystemClock::instance());
  if (!keys) {
    log::error("cannot set up the identity signing keys", {{"error", keys.error().message()}});
    return 1;
  }
  identity::IdentityService identityService(**keys, SystemClock::instance());
  identity::SkiffRoleCredentialIssuer credentialIssuer(**keys, SystemClock::instance());
  identity::JobManagerTaskDirectory taskDirectory(manager);
  identity::IdentityApi identityApi{**keys, identityService, credentialIssuer, taskDirectory,
                                    [&](std::string_view authorization) {
                                      return !controlplane::authenticate(
                                          *tokens, http::Access::kAgent, authorization);
                                    }};
  identity::registerIdentityRoutes(router, identityApi);
  http::Server server(io, router, [&](http::Access access, std::string_view authorization) {
    return controlplane::authenticate(*tokens, access, authorization);
  });
  if (auto listening = server.listen(address->first, address->second); !listening) {
    log::error("cannot listen", {{"error", listening.error().message()}});
    return 1;
  }
  if (!flags.portFile.empty()) {
    std::ofstream(flags.portFile) << server.port() << "\n";
  }
  log::info("skiffd serving", {{"listen", address->first + ":" + std::to_string(server.port())},
                               {"stateDir", flags.stateDir},
                               {"version", SKIFF_VERSION}});

  // The embedded node agent talks to this process over the loopback API, like any other agent.
  std::unique_ptr<agent::Agent> localAgent;
  if (flags.withAgent) {
    agent::AgentOptions agentOptions;
    std::string host = address->first;
    if (host == "0.0.0.0" || host == "::" || host == "[::]" || host.empty()) host = "127.0.0.1";
    if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
    agentOptions.server = "http://" + host + ":" + std::to_string(server.port());
    agentOptions.joinToken = tokens->join;
    agentOptions.nodeId = flags.agentNodeId.empty() ? agent::defaultNodeId() : flags.agentNodeId;
    agentOptions.stateDir = flags.agentStateDir;
    agentOptions.monitorPath = agent::defaultMonitorPath();
    agentOptions.insecureRegistries = flags.insecureRegistries;
    agentOptions.pollWait = std::chrono::milliseconds(2000);  // Bounds the shutdown delay.
    agentOptions.logListen = "127.0.0.1:0";  // Only this process reads the local agent's logs.
    if (auto made = ensureDirectory(flags.agentStateDir); !made) {
      log::error("cannot use the agent state directory", {{"error", made.error().message()}});
      return 1;
    }
    agentOptions.resources = agent::detectResources(flags.agentStateDir, {});
    auto created = agent::Agent::create(std::move(agentOptions));
    if (!created) {
      log::error("cannot create the local agent", {{"error", created.error().message()}});
      return 1;
    }
    localAgent = std::move(*created);
    if (auto started = localAgent->start(); !started) {
      log::error("cannot start the local agent", {{"error", started.error().message()}});
      return 1;
    }
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  // The local agent is stopped first, off the io threads and while the API still answers its
  // pending calls; then the server goes down.
  std::thread stopper;
  signals.async_wait([&](const boost::system::error_code&, int signal) {
    log::info("stopping", {{"signal", signal}});
    stopper = std::thread([&] {
      if (localAgent) localAgent->stop();
      boost::asio::post(io, [&] {
        stopping = true;
        server.stop();
        manager.stop();
        io.stop();
      });
    });
  });

  int threads = flags.threads > 0
                    ? flags.threads
                    : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) workers.emplace_back([&] { io.run(); });
  io.run();
  for (auto& worker : workers) worker.join();
  if (stopper.joinable()) stopper.join();
  // Drain the store while the io_context still exists: late commit completions hold its executors.
  store->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"skiffd: the Skiff control plane"};
  app.add_option("--state-dir", flags.stateDir, "Directory for the store and tokens");
  app.add_option("--listen", flags.listen, "HOST:PORT of the REST API");
  app.add_option("--port-file", flags.portFile, "Write the bound port here once serving");
  app.add_option("--log-level", flags.logLevel, "debug, info, warn or error");
  app.add_option("--threads", flags.threads, "Worker threads (default: the number of cores)");
  app.add_flag("--with-agent", flags.withAgent, "Also run a node agent in this process");
  app.add_option("--agent-state-dir", flags.agentStateDir, "State directory of the local agent");
  app.add_option("--agent-node-id", flags.agentNodeId, "Node id of the local agent (hostname)");
  app.add_option("--insecure-registry", flags.insecureRegistries,
                 "HOST:PORT the local agent may pull from over plain HTTP (repeatable)");
  app.add_option("--launched-timeout", flags.launchedTimeoutSec,
                 "Seconds a task may stay Launched");
  app.add_option("--start-initiated-timeout", flags.startInitiatedTimeoutSec,
                 "Seconds a task may stay StartInitiated");
  app.add_option("--kill-initiated-timeout", flags.killInitiatedTimeoutSec,
                 "Seconds a task may stay KillInitiated");
  app.add_option("--system-retry-delay", flags.systemRetryDelaySec,
                 "Seconds before retrying a task after a system error");
  app.add_option("--max-system-retries", flags.maxSystemRetries,
                 "System errors in a row (an unreachable registry) after which a batch task is "
                 "not retried")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--node-timeout", flags.nodeTimeoutSec,
                 "Seconds without a heartbeat before a node is lost");
  app.add_option("--cpu-metric-interval", flags.cpuMetricIntervalSec,
                 "Seconds between the cpu metrics handed to a service's autoscaler")
      ->capture_default_str();
  app.add_option("--vpc-cidr", flags.vpcCidr, "The cluster's container address range")
      ->capture_default_str();
  app.add_option("--node-block-prefix", flags.nodeBlockPrefix,
                 "Prefix length of the address block each node gets from the range")
      ->capture_default_str();
  app.set_version_flag("--version", SKIFF_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return run(flags);
}
