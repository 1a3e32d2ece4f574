#include "controlplane/daemon.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "common/clock.h"
#include "common/http_server.h"
#include "common/log.h"
#include "controlplane/api_routes.h"
#include "controlplane/identity/identity_routes.h"
#include "controlplane/identity/job_manager_task_directory.h"
#include "controlplane/job_manager.h"
#include "controlplane/scheduler/scheduler.h"
#include "controlplane/store/open.h"
#include "controlplane/tokens.h"

namespace skiff::controlplane {
namespace {

// How a process on this host reaches a server listening on `host`.
std::string loopbackAddress(std::string host, uint16_t port) {
  if (host == "0.0.0.0" || host == "::" || host == "[::]" || host.empty()) host = "127.0.0.1";
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(port);
}

}  // namespace

Status ensureDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("create state directory " + path, errno));
  }
  return {};
}

int runDaemon(const DaemonOptions& options, Companion* companion) {
  log::init("skiffd", log::parseLevel(options.logLevel, log::Level::kInfo));
  auto address = http::parseHostPort(options.listen);
  if (!address) {
    log::error("bad --listen", {{"error", address.error().message()}});
    return 2;
  }
  if (auto spec = store::checkSpec(options.store); !spec) {
    log::error("bad --store", {{"error", spec.error().message()}});
    return 2;
  }
  if (auto made = ensureDirectory(options.stateDir); !made) {
    log::error("cannot use the state directory", {{"error", made.error().message()}});
    return 1;
  }
  auto tokens = loadOrCreateTokens(options.stateDir);
  if (!tokens) {
    log::error("cannot set up tokens", {{"error", tokens.error().message()}});
    return 1;
  }
  auto store = store::open(options.store, options.stateDir);
  if (!store) {
    log::error("cannot open the store", {{"error", store.error().message()}});
    return 1;
  }

  boost::asio::io_context io;
  ManagerConfig config;
  config.lifecycle.launchedTimeoutMs = static_cast<int64_t>(options.launchedTimeoutSec * 1000);
  config.lifecycle.startInitiatedTimeoutMs =
      static_cast<int64_t>(options.startInitiatedTimeoutSec * 1000);
  config.lifecycle.killInitiatedTimeoutMs =
      static_cast<int64_t>(options.killInitiatedTimeoutSec * 1000);
  config.lifecycle.systemRetryDelayMs = static_cast<int64_t>(options.systemRetryDelaySec * 1000);
  config.lifecycle.maxSystemRetries = options.maxSystemRetries;
  config.nodeHeartbeatTimeoutMs = static_cast<int64_t>(options.nodeTimeoutSec * 1000);
  config.cpuMetricIntervalMs = static_cast<int64_t>(options.cpuMetricIntervalSec * 1000);
  config.addressPlan = {options.vpcCidr, options.nodeBlockPrefix};
  if (auto plan = validateAddressPlan(config.addressPlan); !plan) {
    log::error("bad address plan", {{"error", plan.error().message()}});
    return 2;
  }
  JobManager manager(io, **store, SystemClock::instance(),
                     scheduler::makeScheduler(SystemClock::instance()), config);
  if (auto recovered = manager.recover(); !recovered) {
    log::error("cannot recover state", {{"error", recovered.error().message()}});
    return 1;
  }

  std::atomic<bool> stopping = false;
  ApiContext api{manager, **store, [&] { return !stopping.load(); }};
  api.joinToken = tokens->join;  // Presented to the agents' log servers.
  auto networkView = NetworkView::start(**store);
  if (!networkView) {
    log::error("cannot start the network view", {{"error", networkView.error().message()}});
    return 1;
  }
  api.network = networkView->get();
  http::Router router;
  registerRoutes(router, api);

  // Task identity: the signing keys live in STATE_DIR/identity (0700, one 0600 PEM per key).
  auto keys =
      identity::KeyRing::loadOrCreate(options.stateDir + "/identity", SystemClock::instance());
  if (!keys) {
    log::error("cannot set up the identity signing keys", {{"error", keys.error().message()}});
    return 1;
  }
  identity::IdentityService identityService(**keys, SystemClock::instance());
  identity::SkiffRoleCredentialIssuer credentialIssuer(**keys, SystemClock::instance());
  identity::JobManagerTaskDirectory taskDirectory(manager);
  identity::IdentityApi identityApi{**keys, identityService, credentialIssuer, taskDirectory,
                                    [&](std::string_view authorization) {
                                      return !authenticate(*tokens, http::Access::kAgent,
                                                           authorization);
                                    }};
  identity::registerIdentityRoutes(router, identityApi);
  http::Server server(io, router, [&](http::Access access, std::string_view authorization) {
    return authenticate(*tokens, access, authorization);
  });
  if (auto listening = server.listen(address->first, address->second); !listening) {
    log::error("cannot listen", {{"error", listening.error().message()}});
    return 1;
  }
  if (!options.portFile.empty()) {
    std::ofstream(options.portFile) << server.port() << "\n";
  }
  log::info("skiffd serving", {{"listen", address->first + ":" + std::to_string(server.port())},
                               {"stateDir", options.stateDir},
                               {"store", options.store},
                               {"version", SKIFF_VERSION}});

  // The companion talks to this process over the loopback API, like any other client.
  if (companion != nullptr) {
    ServingEndpoint endpoint{loopbackAddress(address->first, server.port()), tokens->join};
    if (auto started = companion->start(endpoint); !started) {
      log::error("cannot start", {{"error", started.error().message()}});
      return 1;
    }
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  // The companion is stopped first, off the io threads and while the API still answers its
  // pending calls; then the server goes down.
  std::thread stopper;
  signals.async_wait([&](const boost::system::error_code&, int signal) {
    log::info("stopping", {{"signal", signal}});
    stopper = std::thread([&] {
      if (companion != nullptr) companion->stop();
      boost::asio::post(io, [&] {
        stopping = true;
        server.stop();
        manager.stop();
        io.stop();
      });
    });
  });

  // The store's writer is a thread of its own that every acknowledged write waits for: leave it
  // a core. On 2 cores one I/O thread took ~20 % less CPU per submission and acknowledged more
  // than two, which spent the difference handing requests between threads (docs/benchmarks.md).
  int threads = options.threads > 0
                    ? options.threads
                    : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()) - 1);
  std::vector<std::thread> workers;
  for (int i = 1; i < threads; ++i) workers.emplace_back([&] { io.run(); });
  io.run();
  for (auto& worker : workers) worker.join();
  if (stopper.joinable()) stopper.join();
  // Drain the store while the io_context still exists: late commit completions hold its executors.
  store->reset();
  return 0;
}

}  // namespace skiff::controlplane
