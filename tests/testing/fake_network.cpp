#include "testing/fake_network.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace skiff::testing {

namespace network = agent::network;

void FakeNetworkDriver::failAttach(std::optional<Error> error) {
  std::lock_guard lock(mutex_);
  attachError_ = std::move(error);
}

std::set<std::string> FakeNetworkDriver::endpoints() const {
  std::lock_guard lock(mutex_);
  std::set<std::string> ids;
  for (const auto& [id, endpoint] : endpoints_) ids.insert(id);
  return ids;
}

int FakeNetworkDriver::attachCount() const {
  std::lock_guard lock(mutex_);
  return attaches_;
}

Result<network::Endpoint> FakeNetworkDriver::attach(const network::EndpointSpec& spec) {
  std::lock_guard lock(mutex_);
  ++attaches_;
  if (attachError_) return std::unexpected(*attachError_);
  network::Endpoint endpoint{spec.id, spec.address, "/nonexistent/netns/" + spec.id,
                             network::hostLinkNameFor(spec.id)};
  endpoints_[spec.id] = endpoint;
  return endpoint;
}

Status FakeNetworkDriver::detach(const std::string& id, api::Ipv4) {
  std::lock_guard lock(mutex_);
  endpoints_.erase(id);
  return {};
}

std::vector<std::string> FakeNetworkDriver::list() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> ids;
  for (const auto& [id, endpoint] : endpoints_) ids.push_back(id);
  return ids;
}

std::string FakeNetworkDriver::netnsPath(const std::string& id) const {
  return "/nonexistent/netns/" + id;
}

std::string FakeNetworkDriver::hostLinkName(const std::string& id) const {
  return network::hostLinkNameFor(id);
}

Status FakeNetworkDriver::routeBlock(const api::Ipv4Cidr&, api::Ipv4) {
  return {};
}

Status FakeNetworkDriver::unrouteBlock(const api::Ipv4Cidr&) {
  return {};
}

Status FakeRulesetApplier::apply(const std::string& script) {
  std::lock_guard lock(mutex_);
  scripts_.push_back(script);
  return {};
}

std::vector<std::string> FakeRulesetApplier::scripts() const {
  std::lock_guard lock(mutex_);
  return scripts_;
}

Result<int> openLoopbackListener(const std::string&, const std::string&, uint16_t) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(errnoError("socket", errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 16) != 0) {
    int error = errno;
    ::close(fd);
    return std::unexpected(errnoError("listen on 127.0.0.1", error));
  }
  return fd;
}

}  // namespace skiff::testing
