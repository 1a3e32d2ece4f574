#pragma once

// How a container's network namespace is wired to the node. `NetworkDriver` is the interface;
// `VethDriver` (veth_driver.h) is the implementation Skiff uses (see docs/networking.md for why
// veth and not ipvlan).
//
// An endpoint is one container's namespace, bound at `netnsDir/ID` so it outlives the agent and
// the OCI runtime joins it by path. Inside it: `lo` up and `eth0` holding the container's
// address as a /32, with a default route through the link-local gateway 169.254.1.1 (a
// permanent neighbor entry pointing at the host side, so no ARP is needed). On the host: the
// other end (`hostLinkName(ID)`) and a /32 route to the address through it.

#include <cstdint>
#include <string>
#include <vector>

#include "api/network.h"
#include "common/error.h"

namespace skiff::agent::network {

// The gateway address every container routes through (answered by the host side).
inline constexpr api::Ipv4 kGatewayAddress = (169u << 24) | (254u << 16) | (1u << 8) | 1u;
// Every host-side link name starts with this (the firewall matches on it).
inline constexpr std::string_view kHostLinkPrefix = "skv";

struct EndpointSpec {
  std::string id;  // Task id; names the namespace file.
  api::Ipv4 address = 0;
  int64_t bandwidthMbps = 0;  // Shaped in both directions; 0: unlimited.
};

struct Endpoint {
  std::string id;
  api::Ipv4 address = 0;
  std::string netnsPath;
  std::string hostLink;
};

class NetworkDriver {
 public:
  virtual ~NetworkDriver() = default;
  // Creates the namespace and its link. On failure nothing is left behind.
  virtual Result<Endpoint> attach(const EndpointSpec& spec) = 0;
  // Removes the namespace, links and routes of `id`. Idempotent.
  virtual Status detach(const std::string& id, api::Ipv4 address) = 0;
  // Ids of the endpoints whose namespace exists (for re-adoption after a restart).
  virtual std::vector<std::string> list() = 0;
  virtual std::string netnsPath(const std::string& id) const = 0;
  virtual std::string hostLinkName(const std::string& id) const = 0;
  // Routes another node's address block through that node's address (added or replaced).
  virtual Status routeBlock(const api::Ipv4Cidr& block, api::Ipv4 via) = 0;
  virtual Status unrouteBlock(const api::Ipv4Cidr& block) = 0;
  // Undoes what the driver set up on the host for its endpoints (VethDriver: the bind mount of
  // its namespace directory) when no endpoint is left; called when the agent stops.
  virtual void releaseHost() {}
};

// "skv" + 12 hex digits of a hash of the id (of "INSTANCE/ID" for an agent with an instance
// name): unique enough per node and within IFNAMSIZ, and different for two agents on one host
// even when their clusters give two tasks the same id.
std::string hostLinkNameFor(const std::string& id, const std::string& instance = "");

}  // namespace skiff::agent::network
