#include "agent/network/veth_driver.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "agent/image/fs_util.h"
#include "agent/network/netns.h"
#include "common/hash.h"

namespace skiff::agent::network {
namespace {

// Every host-side link gets the same locally administered MAC (as Calico does): containers
// address the gateway through it and never need to learn per-link addresses.
constexpr MacAddress kHostMac{0xee, 0xee, 0xee, 0xee, 0xee, 0xee};
constexpr const char* kContainerLink = "eth0";

}  // namespace

std::string hostLinkNameFor(const std::string& id, const std::string& instance) {
  uint64_t hash = fnv1a64(instance.empty() ? id : instance + "/" + id);
  char text[16];
  std::snprintf(text, sizeof text, "%012llx",
                static_cast<unsigned long long>(hash & 0xffffffffffffull));
  return std::string(kHostLinkPrefix) + text;
}

Result<std::unique_ptr<VethDriver>> VethDriver::create(VethDriverOptions options) {
  SKIFF_TRY_STATUS(prepareNetnsDir(options.netnsDir), "veth driver");
  // Containers' traffic is routed through this host (the calling thread's namespace).
  if (std::ofstream forward("/proc/sys/net/ipv4/ip_forward"); !(forward << "1\n" << std::flush)) {
    return fail(ErrorCode::kIo, "cannot enable IPv4 forwarding");
  }
  auto host = RouteSocket::open();
  if (!host) return std::unexpected(host.error().wrap("veth driver"));
  return std::unique_ptr<VethDriver>(new VethDriver(std::move(options), std::move(*host)));
}

std::string VethDriver::netnsPath(const std::string& id) const {
  return options_.netnsDir + "/" + id;
}

Status VethDriver::configureInside(RouteSocket& inside, const EndpointSpec& spec) {
  SKIFF_TRY_STATUS(inside.setUp("lo"), "loopback");
  SKIFF_TRY_STATUS(inside.setUp(kContainerLink), "container link");
  auto index = inside.ifindex(kContainerLink);
  if (!index) return std::unexpected(index.error());
  SKIFF_TRY_STATUS(inside.addAddress(*index, {spec.address, 32}), "container address");
  SKIFF_TRY_STATUS(inside.replaceRoute({{kGatewayAddress, 32}, *index, std::nullopt}),
                   "gateway route");
  SKIFF_TRY_STATUS(inside.replaceRoute({{0, 0}, *index, kGatewayAddress}), "default route");
  SKIFF_TRY_STATUS(inside.addPermanentNeighbor(*index, kGatewayAddress, kHostMac), "gateway");
  if (spec.bandwidthMbps > 0) {
    SKIFF_TRY_STATUS(inside.setTbf(*index, tbfForMbps(spec.bandwidthMbps)), "egress shaping");
  }
  return {};
}

Result<Endpoint> VethDriver::attach(const EndpointSpec& spec) {
  Endpoint endpoint{spec.id, spec.address, netnsPath(spec.id), hostLinkName(spec.id)};
  auto created = createNetns(endpoint.netnsPath);
  if (!created) return std::unexpected(created.error().wrap("network namespace"));
  auto undo = [&](const Error& error) -> Result<Endpoint> {
    {
      std::lock_guard lock(mutex_);
      (void)host_->deleteLink(endpoint.hostLink);
      (void)host_->deleteRoute({spec.address, 32});
    }
    (void)deleteNetns(endpoint.netnsPath);
    return std::unexpected(error);
  };
  Status linked;
  {
    std::lock_guard lock(mutex_);
    linked = host_->addVethPair(endpoint.hostLink, kHostMac, kContainerLink, created->fd);
  }
  ::close(created->fd);
  if (!linked) return undo(linked.error());
  if (auto inside = configureInside(*created->socket, spec); !inside) {
    return undo(inside.error().wrap("inside the container"));
  }
  std::lock_guard lock(mutex_);
  auto index = host_->ifindex(endpoint.hostLink);
  if (!index) return undo(index.error());
  if (auto routed = host_->replaceRoute({{spec.address, 32}, *index, std::nullopt}); !routed) {
    return undo(routed.error().wrap("host route"));
  }
  if (spec.bandwidthMbps > 0) {
    if (auto shaped = host_->setTbf(*index, tbfForMbps(spec.bandwidthMbps)); !shaped) {
      return undo(shaped.error().wrap("ingress shaping"));
    }
  }
  return endpoint;
}

Status VethDriver::detach(const std::string& id, api::Ipv4 address) {
  {
    std::lock_guard lock(mutex_);
    // Deleting one end removes the pair and, with it, the /32 route through it.
    SKIFF_TRY_STATUS(host_->deleteLink(hostLinkName(id)), "detach");
    if (address != 0) (void)host_->deleteRoute({address, 32});
  }
  return deleteNetns(netnsPath(id));
}

Status VethDriver::routeBlock(const api::Ipv4Cidr& block, api::Ipv4 via) {
  std::lock_guard lock(mutex_);
  return host_->replaceRoute({block, 0, via});
}

Status VethDriver::unrouteBlock(const api::Ipv4Cidr& block) {
  std::lock_guard lock(mutex_);
  return host_->deleteRoute(block);
}

std::vector<std::string> VethDriver::list() {
  return image::fs::listDir(options_.netnsDir);
}

void VethDriver::releaseHost() {
  if (!list().empty()) return;
  // MNT_DETACH: a namespace file bound there by a process still starting is not waited for.
  (void)releaseNetnsDir(options_.netnsDir);
}

}  // namespace skiff::agent::network
