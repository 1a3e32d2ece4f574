#include "agent/metadata/netns_listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <libmnl/libmnl.h>
#include <net/if.h>

namespace skiff::agent::metadata {
namespace {

// Sends one request and waits for its acknowledgement. Returns the kernel's errno on a NACK.
Status netlinkRequest(nlmsghdr* message, const std::string& what) {
  mnl_socket* socket = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (socket == nullptr) return std::unexpected(errnoError("netlink socket", errno));
  if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(socket);
    return std::unexpected(errnoError("netlink bind", err));
  }
  unsigned int portId = mnl_socket_get_portid(socket);
  message->nlmsg_seq = static_cast<uint32_t>(std::time(nullptr));
  int err = 0;
  if (mnl_socket_sendto(socket, message, message->nlmsg_len) < 0) {
    err = errno;
  } else {
    std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
    ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
    if (received < 0) {
      err = errno;
    } else if (mnl_cb_run(buffer.data(), static_cast<size_t>(received), message->nlmsg_seq, portId,
                          nullptr, nullptr) < 0) {
      err = errno;
    }
  }
  mnl_socket_close(socket);
  if (err != 0) return std::unexpected(errnoError(what, err));
  return {};
}

Status setLinkUp(unsigned int index) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* message = mnl_nlmsg_put_header(buffer.data());
  message->nlmsg_type = RTM_NEWLINK;
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* info = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(message, sizeof(ifinfomsg)));
  info->ifi_family = AF_UNSPEC;
  info->ifi_index = static_cast<int>(index);
  info->ifi_flags = IFF_UP;
  info->ifi_change = IFF_UP;
  return netlinkRequest(message, "set lo up");
}

}  // namespace

Status runInNetns(const std::string& netnsPath, const std::function<Status()>& fn) {
  Status result;
  // A fresh thread, so the caller's namespace never changes; the thread's namespace dies with it.
  std::thread worker([&] {
    int fd = ::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result = std::unexpected(errnoError("open " + netnsPath, errno));
      return;
    }
    int rc = ::setns(fd, CLONE_NEWNET);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      result = std::unexpected(errnoError("enter network namespace " + netnsPath, err));
      return;
    }
    result = fn();
  });
  worker.join();
  return result;
}

Status addLoopbackAddress(const std::string& ipv4) {
  in_addr address{};
  if (::inet_pton(AF_INET, ipv4.c_str(), &address) != 1) {
    return fail(ErrorCode::kInvalidArgument, "not an IPv4 address: " + ipv4);
  }
  unsigned int index = ::if_nametoindex("lo");
  if (index == 0) return std::unexpected(errnoError("find lo", errno));
  SKIFF_TRY_STATUS(setLinkUp(index), "loopback");

  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* message = mnl_nlmsg_put_header(buffer.data());
  message->nlmsg_type = RTM_NEWADDR;
  // NLM_F_REPLACE makes a repeat (an agent restart re-attaching) succeed.
  message->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
  auto* info = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(message, sizeof(ifaddrmsg)));
  info->ifa_family = AF_INET;
  info->ifa_prefixlen = 32;
  info->ifa_scope = RT_SCOPE_HOST;
  info->ifa_index = index;
  mnl_attr_put_u32(message, IFA_LOCAL, address.s_addr);
  mnl_attr_put_u32(message, IFA_ADDRESS, address.s_addr);
  return netlinkRequest(message, "add " + ipv4 + "/32 to lo");
}

Result<int> listenInNetns(const std::string& netnsPath, const std::string& ipv4, uint16_t port) {
  int listener = -1;
  auto made = runInNetns(netnsPath, [&]() -> Status {
    SKIFF_TRY_STATUS(addLoopbackAddress(ipv4), "metadata address");
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return std::unexpected(errnoError("socket", errno));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    ::inet_pton(AF_INET, ipv4.c_str(), &address.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(fd, SOMAXCONN) != 0) {
      int err = errno;
      ::close(fd);
      return std::unexpected(errnoError("listen on " + ipv4 + ":" + std::to_string(port), err));
    }
    listener = fd;
    return {};
  });
  if (!made) return std::unexpected(made.error());
  return listener;
}

}  // namespace skiff::agent::metadata
