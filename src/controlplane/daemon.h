#pragma once

// skiffd's process: opens the state directory, recovers the job manager, serves the REST API and
// runs until SIGINT or SIGTERM.
//
// `runDaemon` owns everything it starts and returns the process exit code: 0 after a clean stop,
// 1 when the state directory, store, tokens or listening socket cannot be set up, 2 for bad
// options. A component that shares the process (an embedded node agent, src/local) is handed in
// as a `Companion`: it starts once the API is serving, and stops first, off the I/O threads and
// while the API still answers, before the server goes down.

#include <cstdint>
#include <string>

#include "common/error.h"
#include "controlplane/address_blocks.h"

namespace skiff::controlplane {

struct DaemonOptions {
  std::string stateDir = "/var/lib/skiff";
  // "sqlite" (STATE_DIR/skiff.db) or "etcd://HOST:PORT[,HOST:PORT...]"; see store/open.h.
  std::string store = "sqlite";
  std::string listen = "127.0.0.1:7070";  // HOST:PORT; port 0 picks a free one.
  std::string portFile;                   // Written with the bound port once serving; optional.
  std::string logLevel = "info";
  int threads = 0;  // I/O threads; 0: one less than the number of cores (at least 1).
  double launchedTimeoutSec = 120;
  double startInitiatedTimeoutSec = 600;
  double killInitiatedTimeoutSec = 300;
  double systemRetryDelaySec = 1;
  int64_t maxSystemRetries = 10;
  double nodeTimeoutSec = 30;
  double cpuMetricIntervalSec = 5;
  std::string vpcCidr = AddressPlan{}.vpcCidr;
  int nodeBlockPrefix = AddressPlan{}.nodeBlockPrefix;
};

// What a companion needs to reach the API it runs beside.
struct ServingEndpoint {
  // "http://HOST:PORT" toward the bound socket: a wildcard listen host becomes the loopback
  // address, an IPv6 host is bracketed.
  std::string address;
  std::string joinToken;  // The agents' join token.
};

class Companion {
 public:
  virtual ~Companion() = default;
  // Called once the API serves; a failure stops the daemon with exit code 1.
  virtual Status start(const ServingEndpoint& endpoint) = 0;
  // Called once on shutdown, from a thread of its own, after a successful `start`. May block.
  virtual void stop() = 0;
};

// Runs skiffd until a stop signal; see the file comment. `companion` may be null.
int runDaemon(const DaemonOptions& options, Companion* companion = nullptr);

// Creates `path` (0700) unless it exists.
Status ensureDirectory(const std::string& path);

}  // namespace skiff::controlplane
