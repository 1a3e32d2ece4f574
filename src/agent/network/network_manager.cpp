#include "agent/network/network_manager.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "agent/image/fs_util.h"
#include "agent/network/veth_driver.h"
#include "client/node_api.h"
#include "common/log.h"

namespace skiff::agent::network {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// The host's resolvers without loopback ones (they are unreachable from a container's own
// namespace), as Docker does; public resolvers when nothing is left.
std::string containerResolvConf() {
  std::ifstream in("/etc/resolv.conf");
  std::string line;
  std::string out = "# written by skiff-agent\n";
  bool nameserver = false;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    std::string value;
    words >> key >> value;
    if (key == "nameserver") {
      if (value.starts_with("127.") || value == "::1") continue;
      nameserver = true;
      out += line + "\n";
    } else if (key == "search" || key == "options" || key == "domain") {
      out += line + "\n";
    }
  }
  if (!nameserver) out += "nameserver 8.8.8.8\nnameserver 1.1.1.1\n";
  return out;
}

// Claims the table for as long as the returned socket is open: a unix socket bound to the
// abstract name "skiff-agent/TABLE" in the calling thread's network namespace (the host's). An
// abstract name belongs to one namespace and is released when its holder exits, however it exits,
// so nothing is left to clean up. The holder listens, so the next agent can name it by its pid.
Result<int> claimHostTable(const std::string& table) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string name = "skiff-agent/" + table;
  if (name.size() + 1 > sizeof address.sun_path) {
    return fail(ErrorCode::kInvalidArgument, "table name too long: " + table);
  }
  std::memcpy(address.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract.
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(errnoError("socket", errno));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) == 0 && ::listen(fd, 1) == 0) {
    return fd;
  }
  int error = errno;
  ::close(fd);
  if (error != EADDRINUSE) return std::unexpected(errnoError("claim the table " + table, error));
  std::string holder = "?";
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    ucred peer{};
    socklen_t size = sizeof peer;
    if (::connect(probe, reinterpret_cast<sockaddr*>(&address), length) == 0 &&
        ::getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &peer, &size) == 0) {
      holder = std::to_string(peer.pid);
    }
    ::close(probe);
  }
  return fail(ErrorCode::kFailedPrecondition,
              "another agent (pid " + holder + ") uses the nftables table " + table +
                  " in this network namespace; give each agent on a host its own instance name "
                  "(skiff-agent --instance, skiffd --agent-instance)");
}

}  // namespace

NetworkManager::NetworkManager(NetworkManagerOptions options, std::shared_ptr<NetworkDriver> driver,
                               std::shared_ptr<RulesetApplier> applier)
    : options_(std::move(options)),
      driver_(std::move(driver)),
      applier_(std::move(applier)),
      firewall_(*applier_, firewallTableName(options_.instance)) {}

Result<std::unique_ptr<NetworkManager>> NetworkManager::create(
    NetworkManagerOptions options, std::shared_ptr<NetworkDriver> driver,
    std::shared_ptr<RulesetApplier> applier) {
  int claim = -1;
  auto failWith = [&claim](const Error& error) -> Result<std::unique_ptr<NetworkManager>> {
    if (claim >= 0) ::close(claim);
    return std::unexpected(error);
  };
  if (!applier) {
    auto claimed = claimHostTable(firewallTableName(options.instance));
    if (!claimed) return std::unexpected(claimed.error());
    claim = *claimed;
    auto nft = NftApplier::create();
    if (!nft) return failWith(nft.error());
    applier = std::move(*nft);
  }
  if (!driver) {
    auto veth = VethDriver::create({options.stateDir + "/netns", options.instance});
    if (!veth) return failWith(veth.error());
    driver = std::move(*veth);
  }
  if (auto made = image::fs::makeDirs(options.stateDir + "/network/files", 0755); !made) {
    return failWith(made.error().wrap("network"));
  }
  std::unique_ptr<NetworkManager> manager(
      new NetworkManager(std::move(options), std::move(driver), std::move(applier)));
  manager->tableClaim_ = claim;
  return manager;
}

Result<std::unique_ptr<NetworkManager>> NetworkManager::createDefault(
    NetworkManagerOptions options) {
  return create(std::move(options), nullptr, nullptr);
}

NetworkManager::~NetworkManager() {
  stop();
  if (tableClaim_ >= 0) ::close(tableClaim_);
}

void NetworkManager::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }
  if (syncThread_.joinable()) syncThread_.join();
  // With no container left, nothing needs the table or the routes: leave the host as found.
  std::unique_lock lock(mutex_);
  firewallSynced_.wait(lock, [&] { return !firewallSyncing_; });
  if (ipam_ && ipam_->allocations().empty()) {
    (void)firewall_.remove();
    for (const api::Ipv4Cidr& block : routes_) (void)driver_->unrouteBlock(block);
    routes_.clear();
  }
  if (!ipam_ || ipam_->allocations().empty()) driver_->releaseHost();
}

Status NetworkManager::configure(const json& answer) {
  std::string block;
  if (answer.is_object() && answer.contains("network") && answer["network"].is_object()) {
    block = answer["network"].value("block", "");
  }
  if (block.empty()) return fail(ErrorCode::kInvalidArgument, "no network block in the answer");
  auto cidr = api::parseCidr(block);
  if (!cidr) return std::unexpected(cidr.error().wrap("network block " + block));
  std::unique_lock lock(mutex_);
  if (block_ == block) return {};
  resolvConf_ = containerResolvConf();
  auto ipam = Ipam::open({options_.stateDir + "/network/ipam.json", *cidr, options_.quarantineMs},
                         *options_.clock);
  if (!ipam) return std::unexpected(ipam.error());
  bool first = ipam_ == nullptr;
  ipam_ = std::move(*ipam);
  block_ = block;
  if (pendingKeep_) {
    // Addresses of tasks that ended while the agent was down go to quarantine.
    for (const auto& [id, address] : ipam_->allocations()) {
      if (!pendingKeep_->contains(id)) (void)ipam_->release(id);
    }
    pendingKeep_.reset();
  }
  if (first) {
    SKIFF_TRY_STATUS(firewall_.reset(desiredLocked()), "firewall");
    syncThread_ = std::thread([this] { syncLoop(); });
  }
  log::info("network configured", {{"block", block}});
  return {};
}

FirewallState NetworkManager::desiredLocked() const {
  FirewallState state;
  state.groups = groups_;
  state.members = members_;
  if (ipam_) {
    for (const auto& [taskId, address] : ipam_->allocations()) {
      state.endpoints.insert({driver_->hostLinkName(taskId), address});
      auto groups = localGroups_.find(taskId);
      if (groups == localGroups_.end()) continue;
      for (const std::string& group : groups->second) state.members[group].insert(address);
    }
  }
  return state;
}

Status NetworkManager::syncFirewall(std::unique_lock<std::mutex>& lock) {
  // Group commit: the first caller becomes the syncer and applies the state as it is then; callers
  // that arrive meanwhile wait and are covered by the next round. Dozens of containers starting
  // at once cost a few nft transactions instead of one each behind the lock.
  uint64_t ticket = ++firewallRequested_;
  while (firewallApplied_ < ticket) {
    if (firewallSyncing_) {
      firewallSynced_.wait(lock);
      continue;
    }
    firewallSyncing_ = true;
    uint64_t covers = firewallRequested_;
    FirewallState desired = desiredLocked();
    lock.unlock();
    Status status = firewall_.update(desired);  // Only the syncer touches firewall_.
    lock.lock();
    firewallSyncing_ = false;
    firewallApplied_ = covers;
    firewallStatus_ = status;
    firewallSynced_.notify_all();
  }
  return firewallStatus_;
}

Status NetworkManager::writeFiles(const std::string& taskId, const std::string& address) {
  // Plain writes without fsync: the files are derived state, rewritten at every start, and an
  // fsync each cost milliseconds on the container start path.
  std::string dir = options_.stateDir + "/network/files/" + taskId;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return std::unexpected(errnoError("create " + dir, errno));
  }
  std::string hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
                      address + "\t" + taskId + "\n";
  for (const auto& [name, content] :
       {std::pair<std::string, const std::string&>{"hosts", hosts},
        std::pair<std::string, const std::string&>{"resolv.conf", resolvConf_}}) {
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return std::unexpected(errnoError("create " + path, errno));
    ssize_t written = ::write(fd, content.data(), content.size());
    ::close(fd);
    if (written != static_cast<ssize_t>(content.size())) {
      return fail(ErrorCode::kIo, "write " + path);
    }
  }
  return {};
}

Result<Attachment> NetworkManager::attach(const std::string& taskId,
                                          const std::vector<std::string>& groups,
                                          int64_t bandwidthMbps) {
  api::Ipv4 address;
  {
    std::lock_guard lock(mutex_);
    if (!ipam_) return fail(ErrorCode::kUnavailable, "the node has no address block yet");
  }
  // When every free address is in quarantine, wait for the first to come out (a burst of short
  // tasks can get there) rather than fail the task; give up after `addressWaitMs`.
  int64_t giveUpAt = options_.clock->nowMs() + options_.addressWaitMs;
  while (true) {
    std::unique_lock lock(mutex_);
    auto allocated = ipam_->allocate(taskId);
    if (allocated) {
      address = *allocated;
      localGroups_[taskId] = groups;
      break;
    }
    int64_t now = options_.clock->nowMs();
    int64_t freeAt = std::numeric_limits<int64_t>::max();
    for (const auto& [quarantined, until] : ipam_->quarantined()) freeAt = std::min(freeAt, until);
    if (allocated.error().code() != ErrorCode::kUnavailable || freeAt > giveUpAt ||
        now >= giveUpAt) {
      return std::unexpected(allocated.error());
    }
    lock.unlock();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::clamp<int64_t>(freeAt - now, 1, 100)));
  }
  auto undo = [&](const Error& error) -> Result<Attachment> {
    detach(taskId);
    return std::unexpected(error);
  };
  // A namespace left by an attempt that died half way is removed first.
  (void)driver_->detach(taskId, address);
  auto endpoint = driver_->attach({taskId, address, bandwidthMbps});
  if (!endpoint) return undo(endpoint.error());
  std::string text = api::formatIpv4(address);
  if (auto written = writeFiles(taskId, text); !written) return undo(written.error());
  {
    std::unique_lock lock(mutex_);
    if (auto synced = syncFirewall(lock); !synced) return undo(synced.error());
  }
  std::string dir = options_.stateDir + "/network/files/" + taskId;
  return Attachment{text,
                    endpoint->netnsPath,
                    {{dir + "/hosts", "/etc/hosts"}, {dir + "/resolv.conf", "/etc/resolv.conf"}}};
}

void NetworkManager::detach(const std::string& taskId) {
  api::Ipv4 address = 0;
  {
    std::lock_guard lock(mutex_);
    if (ipam_) address = ipam_->addressOf(taskId).value_or(0);
  }
  // Outside the lock: deleting a link and a namespace takes milliseconds, and other containers'
  // starts must not queue behind it. The address stays allocated until the link is gone.
  if (auto detached = driver_->detach(taskId, address); !detached) {
    log::warn("network detach", {{"taskId", taskId}, {"error", detached.error().message()}});
  }
  std::error_code ec;
  std::filesystem::remove_all(options_.stateDir + "/network/files/" + taskId, ec);
  std::unique_lock lock(mutex_);
  localGroups_.erase(taskId);
  if (ipam_) {
    if (auto released = ipam_->release(taskId); !released) {
      log::warn("address release", {{"taskId", taskId}, {"error", released.error().message()}});
    }
  }
  if (auto synced = syncFirewall(lock); !synced) {
    log::warn("firewall update", {{"error", synced.error().message()}});
  }
}

void NetworkManager::keepOnly(const std::set<std::string>& taskIds) {
  std::set<std::string> stale;
  for (const std::string& id : driver_->list()) {
    if (!taskIds.contains(id)) stale.insert(id);
  }
  {
    std::lock_guard lock(mutex_);
    if (ipam_) {
      for (const auto& [id, address] : ipam_->allocations()) {
        if (!taskIds.contains(id)) stale.insert(id);
      }
    } else {
      pendingKeep_ = taskIds;
    }
  }
  for (const std::string& id : stale) {
    log::info("removing the network of a task that is gone", {{"taskId", id}});
    detach(id);
  }
}

std::optional<std::string> NetworkManager::addressOf(const std::string& taskId) const {
  std::lock_guard lock(mutex_);
  if (!ipam_) return std::nullopt;
  auto address = ipam_->addressOf(taskId);
  if (!address) return std::nullopt;
  return api::formatIpv4(*address);
}

void NetworkManager::syncRoutesLocked(const json& nodes) {
  std::map<api::Ipv4Cidr, api::Ipv4> wanted;
  for (const json& node : nodes) {
    if (!node.is_object() || node.value("id", "") == options_.nodeId) continue;
    auto block = api::parseCidr(node.value("block", ""));
    auto via = api::parseIpv4(node.value("hostAddress", ""));
    // A node seen from loopback (skiffd --with-agent) is this machine: nothing to route.
    if (!block || !via || block_ == block->toString() || (*via >> 24) == 127) continue;
    wanted[*block] = *via;
  }
  for (auto it = routes_.begin(); it != routes_.end();) {
    if (wanted.contains(*it)) {
      ++it;
      continue;
    }
    (void)driver_->unrouteBlock(*it);
    it = routes_.erase(it);
  }
  for (const auto& [block, via] : wanted) {
    if (auto routed = driver_->routeBlock(block, via); !routed) {
      log::warn("route to node block",
                {{"block", block.toString()}, {"error", routed.error().message()}});
      continue;
    }
    routes_.insert(block);
  }
}

Status NetworkManager::applyView(const json& view) {
  if (!view.is_object()) return fail(ErrorCode::kInvalidArgument, "network view: not an object");
  std::map<std::string, api::SecurityGroup> groups;
  json groupList = view.value("securityGroups", json::array());
  json memberMap = view.value("members", json::object());
  json nodes = view.value("nodes", json::array());
  for (const json& item : groupList) {
    auto group = api::validateSecurityGroup(item);
    if (!group) {
      log::warn("ignoring an invalid security group", {{"group", item.dump()}});
      continue;
    }
    groups[group->name] = std::move(*group);
  }
  std::map<std::string, std::set<api::Ipv4>> members;
  for (const auto& [name, list] : memberMap.items()) {
    auto& set = members[name];
    if (!list.is_array()) continue;
    for (const json& address : list) {
      if (!address.is_string()) continue;
      if (auto ip = api::parseIpv4(address.get<std::string>())) set.insert(*ip);
    }
  }
  std::unique_lock lock(mutex_);
  groups_ = std::move(groups);
  members_ = std::move(members);
  syncRoutesLocked(nodes);
  return syncFirewall(lock);
}

void NetworkManager::syncLoop() {
  client::ClientOptions clientOptions;
  clientOptions.connectTimeoutMs = 5000;
  clientOptions.requestTimeoutMs = options_.pollWait.count() + 30'000;
  clientOptions.userAgent = "skiff-agent/" SKIFF_VERSION;
  client::NodeApi client(options_.server, options_.token, clientOptions);
  int64_t revision = 0;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    auto response = client.pollNetwork(revision, options_.pollWait);
    if (response && response->ok() && response->body.is_object()) {
      int64_t next = response->body.value("revision", revision);
      if (next != revision) {
        if (auto applied = applyView(response->body); !applied) {
          log::warn("network view", {{"error", applied.error().message()}});
        }
        revision = next;
      }
      continue;
    }
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, 1s, [&] { return stopping_; });
  }
}

}  // namespace skiff::agent::network
