#include "local/skiffd_flags.h"

#include <CLI/CLI.hpp>

namespace skiff::local {

void addSkiffdFlags(CLI::App& app, SkiffdFlags& flags) {
  controlplane::DaemonOptions& daemon = flags.daemon;
  app.add_option("--state-dir", daemon.stateDir, "Directory for the store and tokens");
  app.add_option("--store", daemon.store,
                 "Where skiffd keeps its state: sqlite (STATE_DIR/skiff.db) or "
                 "etcd://HOST:PORT[,HOST:PORT...] (etcd 3.4+ members' client URLs, plain HTTP)")
      ->capture_default_str();
  app.add_option("--listen", daemon.listen, "HOST:PORT of the REST API");
  app.add_option("--port-file", daemon.portFile, "Write the bound port here once serving");
  app.add_option("--log-level", daemon.logLevel, "debug, info, warn or error");
  app.add_option("--threads", daemon.threads,
                 "I/O threads (default: one less than the number of cores, at least 1)");
  app.add_flag("--with-agent", flags.withAgent, "Also run a node agent in this process");
  app.add_option("--agent-instance", flags.agent.instance,
                 "Instance name of the local agent: names its nftables table (skiff-NAME), "
                 "cgroup parent (/skiff-NAME) and default state directory, so two all-in-one "
                 "clusters can share a host (give each its own --state-dir, --listen and "
                 "--vpc-cidr too)");
  app.add_option("--agent-state-dir", flags.agent.stateDir,
                 "State directory of the local agent (default: /var/lib/skiff-agent, or "
                 "/var/lib/skiff-agent-NAME with --agent-instance NAME)");
  app.add_option("--agent-node-id", flags.agent.nodeId, "Node id of the local agent (hostname)");
  app.add_option("--insecure-registry", flags.agent.insecureRegistries,
                 "HOST:PORT the local agent may pull from over plain HTTP (repeatable)");
  app.add_option("--zone", flags.agent.zone, "Zone attribute of the local agent's node");
  app.add_option("--region", flags.agent.region,
                 "Region of the local agent's node (its region label)");
  app.add_option("--launched-timeout", daemon.launchedTimeoutSec,
                 "Seconds a task may stay Launched");
  app.add_option("--start-initiated-timeout", daemon.startInitiatedTimeoutSec,
                 "Seconds a task may stay StartInitiated");
  app.add_option("--kill-initiated-timeout", daemon.killInitiatedTimeoutSec,
                 "Seconds a task may stay KillInitiated");
  app.add_option("--system-retry-delay", daemon.systemRetryDelaySec,
                 "Seconds before retrying a task after a system error");
  app.add_option("--max-system-retries", daemon.maxSystemRetries,
                 "System errors in a row (an unreachable registry) after which a batch task is "
                 "not retried")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--node-timeout", daemon.nodeTimeoutSec,
                 "Seconds without a heartbeat before a node is lost");
  app.add_option("--cpu-metric-interval", daemon.cpuMetricIntervalSec,
                 "Seconds between the cpu metrics handed to a service's autoscaler")
      ->capture_default_str();
  app.add_option("--vpc-cidr", daemon.vpcCidr, "The cluster's container address range")
      ->capture_default_str();
  app.add_option("--node-block-prefix", daemon.nodeBlockPrefix,
                 "Prefix length of the address block each node gets from the range")
      ->capture_default_str();
  app.set_version_flag("--version", SKIFF_VERSION);
}

}  // namespace skiff::local
