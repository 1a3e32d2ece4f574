#include "local/embedded_agent.h"

#include <chrono>

#include "agent/instance.h"
#include "agent/node_info.h"

namespace skiff::local {

agent::AgentOptions embeddedAgentOptions(const EmbeddedAgentOptions& options,
                                         const controlplane::ServingEndpoint& endpoint) {
  agent::AgentOptions agentOptions;
  agentOptions.server = endpoint.address;
  agentOptions.joinToken = endpoint.joinToken;
  agentOptions.nodeId = options.nodeId.empty() ? agent::defaultNodeId() : options.nodeId;
  agentOptions.instance = options.instance;
  agentOptions.stateDir =
      options.stateDir.empty() ? agent::defaultStateDir(options.instance) : options.stateDir;
  agentOptions.cgroupParent = agent::defaultCgroupParent(options.instance);
  agentOptions.monitorPath = agent::defaultMonitorPath();
  agentOptions.insecureRegistries = options.insecureRegistries;
  agentOptions.attributes.zone = options.zone;
  if (!options.region.empty()) {
    agentOptions.attributes.labels[std::string(agent::kRegionLabel)] = options.region;
  }
  agentOptions.pollWait = std::chrono::milliseconds(2000);  // Bounds the shutdown delay.
  agentOptions.logListen = "127.0.0.1:0";  // Only this process reads the local agent's logs.
  return agentOptions;
}

EmbeddedAgent::EmbeddedAgent(EmbeddedAgentOptions options) : options_(std::move(options)) {}

EmbeddedAgent::~EmbeddedAgent() = default;

Status EmbeddedAgent::start(const controlplane::ServingEndpoint& endpoint) {
  agent::AgentOptions agentOptions = embeddedAgentOptions(options_, endpoint);
  if (auto made = controlplane::ensureDirectory(agentOptions.stateDir); !made) {
    return std::unexpected(made.error().wrap("the local agent's state directory"));
  }
  agentOptions.resources = agent::detectResources(agentOptions.stateDir, {});
  auto created = agent::Agent::create(std::move(agentOptions));
  if (!created) return std::unexpected(created.error().wrap("the local agent"));
  agent_ = std::move(*created);
  if (auto started = agent_->start(); !started) {
    return std::unexpected(started.error().wrap("the local agent"));
  }
  return {};
}

void EmbeddedAgent::stop() {
  if (agent_) agent_->stop();
}

}  // namespace skiff::local
