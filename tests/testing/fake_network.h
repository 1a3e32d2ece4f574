#pragma once

// Container networking without namespaces, links or nftables, for the agent's logic tests (no
// root). With these the agent's real NetworkManager allocates addresses, writes the containers'
// /etc/hosts and keeps its firewall state; nothing reaches the kernel.
//   FakeNetworkDriver   endpoints are records; `netnsPath` names a path that does not exist.
//   FakeRulesetApplier  keeps the nftables scripts it was given.
//   openLoopbackListener  a metadata listener on 127.0.0.1 for AgentDeps::metadataListener.

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/network/firewall.h"
#include "agent/network/network_driver.h"

namespace skiff::testing {

class FakeNetworkDriver final : public agent::network::NetworkDriver {
 public:
  // Attaches fail with `error` from now on (nullopt: they succeed again).
  void failAttach(std::optional<Error> error);
  // Ids with an endpoint now.
  std::set<std::string> endpoints() const;
  int attachCount() const;

  Result<agent::network::Endpoint> attach(const agent::network::EndpointSpec& spec) override;
  Status detach(const std::string& id, api::Ipv4 address) override;
  std::vector<std::string> list() override;
  std::string netnsPath(const std::string& id) const override;
  std::string hostLinkName(const std::string& id) const override;
  Status routeBlock(const api::Ipv4Cidr& block, api::Ipv4 via) override;
  Status unrouteBlock(const api::Ipv4Cidr& block) override;

 private:
  mutable std::mutex mutex_;
  std::optional<Error> attachError_;
  std::map<std::string, agent::network::Endpoint> endpoints_;
  int attaches_ = 0;
};

class FakeRulesetApplier final : public agent::network::RulesetApplier {
 public:
  Status apply(const std::string& script) override;
  std::vector<std::string> scripts() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> scripts_;
};

// Binds a TCP listener to 127.0.0.1 on a free port whatever `netnsPath`, `address` and `port`
// say, and returns its descriptor (close-on-exec).
Result<int> openLoopbackListener(const std::string& netnsPath, const std::string& address,
                                 uint16_t port);

}  // namespace skiff::testing
