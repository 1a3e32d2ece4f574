#pragma once

// The few rtnetlink operations the container network needs, on libnl-route-3. One `RouteSocket`
// talks to the network namespace it was created in (a netlink socket stays bound to the
// namespace of its creator), so the agent holds one for the host and opens one per container
// namespace while it configures it. Not thread-safe; give each thread its own socket.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/network.h"
#include "common/error.h"

struct nl_sock;

namespace skiff::agent::network {

using MacAddress = std::array<uint8_t, 6>;

// Marks the routes Skiff adds, so it can find (and prune) its own after a restart.
inline constexpr uint8_t kRouteProtocol = 0x53;

struct RouteSpec {
  api::Ipv4Cidr destination;
  int ifindex = 0;                   // 0: resolved through the gateway.
  std::optional<api::Ipv4> gateway;  // Absent: a link-scope route on `ifindex`.
};

struct TbfSpec {
  uint64_t bytesPerSecond = 0;
  uint32_t burstBytes = 0;
  uint32_t limitBytes = 0;  // Queue length.
};

class RouteSocket {
 public:
  // A socket in the calling thread's network namespace.
  static Result<std::unique_ptr<RouteSocket>> open();
  ~RouteSocket();
  RouteSocket(const RouteSocket&) = delete;
  RouteSocket& operator=(const RouteSocket&) = delete;

  // Creates a veth pair: `hostName` here (with `hostMac`, up) and `peerName` directly in the
  // namespace behind `peerNetnsFd` (down; the caller sets it up from inside).
  Status addVethPair(const std::string& hostName, const MacAddress& hostMac,
                     const std::string& peerName, int peerNetnsFd);
  // kNotFound when there is no such link.
  Result<int> ifindex(const std::string& name);
  Status deleteLink(const std::string& name);  // No error when it does not exist.
  Status setUp(const std::string& name);
  Result<MacAddress> macAddress(const std::string& name);
  // Names of the links whose name starts with `prefix`.
  Result<std::vector<std::string>> linksWithPrefix(const std::string& prefix);

  Status addAddress(int ifindex, const api::Ipv4Cidr& address);
  // Adds or replaces (protocol kRouteProtocol, main table).
  Status replaceRoute(const RouteSpec& route);
  Status deleteRoute(const api::Ipv4Cidr& destination);
  // Destinations of the routes with protocol kRouteProtocol in the main table.
  Result<std::vector<api::Ipv4Cidr>> ownRoutes();
  Status addPermanentNeighbor(int ifindex, api::Ipv4 address, const MacAddress& mac);
  // A tbf root qdisc (replacing any root qdisc) on the link.
  Status setTbf(int ifindex, const TbfSpec& spec);

 private:
  explicit RouteSocket(nl_sock* socket) : socket_(socket) {}
  nl_sock* socket_;
};

// A tbf shaping `mbps` megabits per second with a burst of 10 ms of traffic (at least 64 KiB,
// so GSO segments pass without being split) and a queue of 50 ms (at least 128 KiB).
TbfSpec tbfForMbps(int64_t mbps);

}  // namespace skiff::agent::network
