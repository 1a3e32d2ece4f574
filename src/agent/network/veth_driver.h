#pragma once

// NetworkDriver on a routed veth pair per container, made entirely through rtnetlink
// (netlink.h): no `ip` process per container. Bandwidth is shaped by a tbf qdisc on each end
// (host side: traffic toward the container; container side: traffic it sends, which the
// container cannot change without CAP_NET_ADMIN).

#include <memory>
#include <mutex>
#include <string>

#include "agent/network/netlink.h"
#include "agent/network/network_driver.h"

namespace skiff::agent::network {

struct VethDriverOptions {
  std::string netnsDir;  // Where namespace files are bound; made a shared mount point.
  std::string instance;  // The agent's instance name; salts the host link names.
};

class VethDriver final : public NetworkDriver {
 public:
  // Prepares `netnsDir` and opens a route socket in the calling thread's namespace (the host).
  static Result<std::unique_ptr<VethDriver>> create(VethDriverOptions options);

  Result<Endpoint> attach(const EndpointSpec& spec) override;
  Status detach(const std::string& id, api::Ipv4 address) override;
  std::vector<std::string> list() override;
  std::string netnsPath(const std::string& id) const override;
  std::string hostLinkName(const std::string& id) const override {
    return hostLinkNameFor(id, options_.instance);
  }
  Status routeBlock(const api::Ipv4Cidr& block, api::Ipv4 via) override;
  Status unrouteBlock(const api::Ipv4Cidr& block) override;
  // Unmounts the namespace directory's bind mount when no namespace file is left in it.
  void releaseHost() override;

 private:
  VethDriver(VethDriverOptions options, std::unique_ptr<RouteSocket> host)
      : options_(std::move(options)), host_(std::move(host)) {}
  Status configureInside(RouteSocket& inside, const EndpointSpec& spec);

  VethDriverOptions options_;
  std::mutex mutex_;  // Guards host_.
  std::unique_ptr<RouteSocket> host_;
};

}  // namespace skiff::agent::network
