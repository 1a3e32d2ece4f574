#pragma once

// The all-in-one node: a node agent run inside skiffd (`skiffd --with-agent`), the way Mesos's
// src/local runs a master and its agents in one process.
//
// `EmbeddedAgent` is a daemon `Companion` (controlplane/daemon.h): `start` launches the agent
// once the API serves, against that API over loopback with the join token, like any other
// agent; `stop` shuts it down before the API stops. Its containers keep running, as with a
// standalone skiff-agent.

#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "common/error.h"
#include "controlplane/daemon.h"

namespace skiff::local {

struct EmbeddedAgentOptions {
  // The agent's instance name (agent/instance.h): two all-in-one clusters on one host each need
  // their own, besides their own state directories and `--vpc-cidr`.
  std::string instance;
  std::string stateDir;                         // Empty: /var/lib/skiff-agent[-INSTANCE].
  std::string nodeId;                           // Empty: the hostname.
  std::vector<std::string> insecureRegistries;  // "HOST:PORT" allowed over plain HTTP.
  // The node's zone attribute and region label, as skiff-agent's `--zone` and `--region` set
  // them; the metadata service answers `placement/availability-zone` and `placement/region`.
  std::string zone;
  std::string region;
};

// The embedded agent's options for a skiffd reached at `endpoint`, resources not yet detected.
// The state directory and cgroup parent are the instance's defaults unless set.
agent::AgentOptions embeddedAgentOptions(const EmbeddedAgentOptions& options,
                                         const controlplane::ServingEndpoint& endpoint);

class EmbeddedAgent final : public controlplane::Companion {
 public:
  explicit EmbeddedAgent(EmbeddedAgentOptions options);
  ~EmbeddedAgent() override;

  // Launches the agent: creates its state directory, detects the node's resources, starts it.
  Status start(const controlplane::ServingEndpoint& endpoint) override;
  // Shuts the agent down; returns once its threads have ended.
  void stop() override;

 private:
  EmbeddedAgentOptions options_;
  std::unique_ptr<agent::Agent> agent_;
};

}  // namespace skiff::local
