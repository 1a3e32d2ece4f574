#include "agent/network/netlink.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>

#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

namespace skiff::agent::network {
namespace {

// libnl objects are reference counted; these put them back when a scope ends.
struct LinkPtr {
  rtnl_link* p;
  ~LinkPtr() {
    if (p) rtnl_link_put(p);
  }
};
struct AddrPtr {
  nl_addr* p;
  ~AddrPtr() {
    if (p) nl_addr_put(p);
  }
};

Error nlError(const std::string& what, int err) {
  return Error(
      err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND ? ErrorCode::kNotFound : ErrorCode::kIo,
      what + ": " + nl_geterror(err));
}

nl_addr* ipv4Addr(api::Ipv4 address, int prefix) {
  uint32_t network = htonl(address);
  nl_addr* addr = nl_addr_build(AF_INET, &network, sizeof network);
  if (addr) nl_addr_set_prefixlen(addr, prefix);
  return addr;
}

nl_addr* macAddr(const MacAddress& mac) {
  return nl_addr_build(AF_LLC, mac.data(), mac.size());
}

}  // namespace

TbfSpec tbfForMbps(int64_t mbps) {
  uint64_t rate = static_cast<uint64_t>(std::max<int64_t>(mbps, 1)) * 1'000'000 / 8;
  TbfSpec spec;
  spec.bytesPerSecond = rate;
  spec.burstBytes = static_cast<uint32_t>(std::clamp<uint64_t>(rate / 100, 64 << 10, 64 << 20));
  spec.limitBytes = static_cast<uint32_t>(std::clamp<uint64_t>(rate / 20, 128 << 10, 256 << 20));
  return spec;
}

Result<std::unique_ptr<RouteSocket>> RouteSocket::open() {
  nl_sock* socket = nl_socket_alloc();
  if (socket == nullptr) return fail(ErrorCode::kIo, "netlink: out of memory");
  if (int err = nl_connect(socket, NETLINK_ROUTE); err < 0) {
    nl_socket_free(socket);
    return std::unexpected(nlError("netlink connect", err));
  }
  return std::unique_ptr<RouteSocket>(new RouteSocket(socket));
}

RouteSocket::~RouteSocket() {
  nl_socket_free(socket_);
}

Status RouteSocket::addVethPair(const std::string& hostName, const MacAddress& hostMac,
                                const std::string& peerName, int peerNetnsFd) {
  LinkPtr link{rtnl_link_veth_alloc()};
  if (link.p == nullptr) return fail(ErrorCode::kIo, "netlink: out of memory");
  rtnl_link_set_name(link.p, hostName.c_str());
  AddrPtr mac{macAddr(hostMac)};
  rtnl_link_set_addr(link.p, mac.p);
  rtnl_link* peer = rtnl_link_veth_get_peer(link.p);
  rtnl_link_set_name(peer, peerName.c_str());
  rtnl_link_set_ns_fd(peer, peerNetnsFd);
  rtnl_link_put(peer);
  if (int err = rtnl_link_add(socket_, link.p, NLM_F_CREATE | NLM_F_EXCL); err < 0) {
    return std::unexpected(nlError("create veth " + hostName, err));
  }
  // Up only once both ends exist: a veth created up fails with ENOTCONN on recent kernels.
  return setUp(hostName);
}

Result<int> RouteSocket::ifindex(const std::string& name) {
  rtnl_link* found = nullptr;
  if (int err = rtnl_link_get_kernel(socket_, 0, name.c_str(), &found); err < 0) {
    return std::unexpected(nlError("link " + name, err));
  }
  int index = rtnl_link_get_ifindex(found);
  rtnl_link_put(found);
  return index;
}

Status RouteSocket::deleteLink(const std::string& name) {
  LinkPtr link{rtnl_link_alloc()};
  rtnl_link_set_name(link.p, name.c_str());
  int err = rtnl_link_delete(socket_, link.p);
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND) {
    return std::unexpected(nlError("delete link " + name, err));
  }
  return {};
}

Status RouteSocket::setUp(const std::string& name) {
  rtnl_link* found = nullptr;
  if (int err = rtnl_link_get_kernel(socket_, 0, name.c_str(), &found); err < 0) {
    return std::unexpected(nlError("link " + name, err));
  }
  LinkPtr current{found};
  LinkPtr change{rtnl_link_alloc()};
  rtnl_link_set_flags(change.p, IFF_UP);
  if (int err = rtnl_link_change(socket_, current.p, change.p, 0); err < 0) {
    return std::unexpected(nlError("set " + name + " up", err));
  }
  return {};
}

Result<MacAddress> RouteSocket::macAddress(const std::string& name) {
  rtnl_link* found = nullptr;
  if (int err = rtnl_link_get_kernel(socket_, 0, name.c_str(), &found); err < 0) {
    return std::unexpected(nlError("link " + name, err));
  }
  LinkPtr link{found};
  nl_addr* addr = rtnl_link_get_addr(link.p);
  MacAddress mac{};
  if (addr == nullptr || nl_addr_get_len(addr) != mac.size()) {
    return fail(ErrorCode::kIo, "link " + name + " has no MAC address");
  }
  std::copy_n(static_cast<const uint8_t*>(nl_addr_get_binary_addr(addr)), mac.size(), mac.data());
  return mac;
}

Result<std::vector<std::string>> RouteSocket::linksWithPrefix(const std::string& prefix) {
  nl_cache* cache = nullptr;
  if (int err = rtnl_link_alloc_cache(socket_, AF_UNSPEC, &cache); err < 0) {
    return std::unexpected(nlError("list links", err));
  }
  std::vector<std::string> names;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr;
       object = nl_cache_get_next(object)) {
    const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(object));
    if (name != nullptr && std::string_view(name).starts_with(prefix)) names.emplace_back(name);
  }
  nl_cache_free(cache);
  return names;
}

Status RouteSocket::addAddress(int ifindex, const api::Ipv4Cidr& address) {
  rtnl_addr* addr = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(addr, ifindex);
  AddrPtr local{ipv4Addr(address.base, address.prefix)};
  rtnl_addr_set_local(addr, local.p);
  int err = rtnl_addr_add(socket_, addr, NLM_F_REPLACE);
  rtnl_addr_put(addr);
  if (err < 0) return std::unexpected(nlError("add address " + address.toString(), err));
  return {};
}

Status RouteSocket::replaceRoute(const RouteSpec& spec) {
  rtnl_route* route = rtnl_route_alloc();
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_protocol(route, kRouteProtocol);
  rtnl_route_set_type(route, RTN_UNICAST);
  rtnl_route_set_scope(route, spec.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  AddrPtr dst{ipv4Addr(spec.destination.base, spec.destination.prefix)};
  rtnl_route_set_dst(route, dst.p);
  rtnl_nexthop* hop = rtnl_route_nh_alloc();
  if (spec.ifindex > 0) rtnl_route_nh_set_ifindex(hop, spec.ifindex);
  AddrPtr gateway{spec.gateway ? ipv4Addr(*spec.gateway, 32) : nullptr};
  if (gateway.p) rtnl_route_nh_set_gateway(hop, gateway.p);
  rtnl_route_add_nexthop(route, hop);
  int err = rtnl_route_add(socket_, route, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_route_put(route);
  if (err < 0) return std::unexpected(nlError("route " + spec.destination.toString(), err));
  return {};
}

Status RouteSocket::deleteRoute(const api::Ipv4Cidr& destination) {
  rtnl_route* route = rtnl_route_alloc();
  rtnl_route_set_family(route, AF_INET);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_protocol(route, kRouteProtocol);
  rtnl_route_set_scope(route, RT_SCOPE_NOWHERE);
  AddrPtr dst{ipv4Addr(destination.base, destination.prefix)};
  rtnl_route_set_dst(route, dst.p);
  int err = rtnl_route_delete(socket_, route, 0);
  rtnl_route_put(route);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR) {
    return std::unexpected(nlError("delete route " + destination.toString(), err));
  }
  return {};
}

Result<std::vector<api::Ipv4Cidr>> RouteSocket::ownRoutes() {
  nl_cache* cache = nullptr;
  if (int err = rtnl_route_alloc_cache(socket_, AF_INET, 0, &cache); err < 0) {
    return std::unexpected(nlError("list routes", err));
  }
  std::vector<api::Ipv4Cidr> routes;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* route = reinterpret_cast<rtnl_route*>(object);
    if (rtnl_route_get_protocol(route) != kRouteProtocol ||
        rtnl_route_get_table(route) != RT_TABLE_MAIN) {
      continue;
    }
    nl_addr* dst = rtnl_route_get_dst(route);
    if (dst == nullptr || nl_addr_get_len(dst) != 4) continue;
    uint32_t network;
    std::copy_n(static_cast<const uint8_t*>(nl_addr_get_binary_addr(dst)), 4,
                reinterpret_cast<uint8_t*>(&network));
    routes.push_back({ntohl(network), static_cast<int>(nl_addr_get_prefixlen(dst))});
  }
  nl_cache_free(cache);
  return routes;
}

Status RouteSocket::addPermanentNeighbor(int ifindex, api::Ipv4 address, const MacAddress& mac) {
  rtnl_neigh* neigh = rtnl_neigh_alloc();
  rtnl_neigh_set_ifindex(neigh, ifindex);
  AddrPtr dst{ipv4Addr(address, 32)};
  rtnl_neigh_set_dst(neigh, dst.p);
  AddrPtr lladdr{macAddr(mac)};
  rtnl_neigh_set_lladdr(neigh, lladdr.p);
  rtnl_neigh_set_state(neigh, NUD_PERMANENT);
  int err = rtnl_neigh_add(socket_, neigh, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_neigh_put(neigh);
  if (err < 0) return std::unexpected(nlError("neighbor " + api::formatIpv4(address), err));
  return {};
}

Status RouteSocket::setTbf(int ifindex, const TbfSpec& spec) {
  rtnl_qdisc* qdisc = rtnl_qdisc_alloc();
  rtnl_tc_set_ifindex(TC_CAST(qdisc), ifindex);
  rtnl_tc_set_parent(TC_CAST(qdisc), TC_H_ROOT);
  rtnl_tc_set_handle(TC_CAST(qdisc), TC_HANDLE(1, 0));
  int err = rtnl_tc_set_kind(TC_CAST(qdisc), "tbf");
  if (err >= 0) {
    // libnl takes the rate as an int of bytes per second.
    int rate = static_cast<int>(std::min<uint64_t>(spec.bytesPerSecond, INT32_MAX));
    rtnl_qdisc_tbf_set_limit(qdisc, static_cast<int>(spec.limitBytes));
    rtnl_qdisc_tbf_set_rate(qdisc, rate, static_cast<int>(spec.burstBytes), 0);
    err = rtnl_qdisc_add(socket_, qdisc, NLM_F_CREATE | NLM_F_REPLACE);
  }
  rtnl_qdisc_put(qdisc);
  if (err < 0) return std::unexpected(nlError("tbf qdisc", err));
  return {};
}

}  // namespace skiff::agent::network
