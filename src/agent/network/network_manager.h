#pragma once

// The agent's container networking: addresses (Ipam), namespaces and links (NetworkDriver),
// security groups and anti-spoofing (Firewall), and routes to the other nodes' blocks.
//
// Life cycle:
//   - `configure` with skiffd's registration answer (`network.block`, the node's address block)
//     opens the address allocator, enables IPv4 forwarding, installs the firewall table and starts
//     the sync thread. Until then `attach` fails with kUnavailable.
//   - `attach` before a container starts: an address, a namespace wired to the host, and
//     /etc/hosts and /etc/resolv.conf files to bind into it. The container's own firewall
//     elements (its anti-spoof entry, its groups' sets) are in place when it returns.
//   - `detach` when the task ends: everything is removed and the address quarantined.
//   - `keepOnly` after a restart: endpoints of tasks the agent no longer runs are removed.
//
// The sync thread long-polls skiffd's `GET /v1/network?afterRevision=R&waitMs=W` (security
// groups, cluster-wide group membership, every node's block and address) and applies each change
// as the smallest nftables update, plus a route per other node's block through its address.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/network/firewall.h"
#include "agent/network/ipam.h"
#include "agent/network/network_driver.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::network {

struct NetworkManagerOptions {
  std::string stateDir;  // The agent's state directory (network/ and netns/ live under it).
  std::string server;    // skiffd, for the sync long poll.
  std::string token;
  std::string nodeId;
  // The agent's instance name (agent/instance.h): names the nftables table (`firewallTableName`)
  // and salts the host link names, so two agents on one host never touch each other's.
  std::string instance;
  // Released addresses wait this long before reuse (ipam.h). Long enough for every cache of the
  // old holder that Skiff feeds (security-group sets, endpoint lists: both under 1 s) to forget it.
  int64_t quarantineMs = 15'000;
  // How long attach waits for an address to leave quarantine when none is free.
  int64_t addressWaitMs = 5'000;
  std::chrono::milliseconds pollWait{5000};
  const Clock* clock = &SystemClock::instance();
};

struct FileMount {
  std::string source;       // Host path.
  std::string destination;  // Path in the container.
};

struct Attachment {
  std::string address;
  std::string netnsPath;
  std::vector<FileMount> files;  // /etc/hosts, /etc/resolv.conf.
};

class NetworkManager {
 public:
  // A null `driver` or `applier` gets the production one: VethDriver under `stateDir/netns`,
  // libnftables.
  static Result<std::unique_ptr<NetworkManager>> create(NetworkManagerOptions options,
                                                        std::shared_ptr<NetworkDriver> driver,
                                                        std::shared_ptr<RulesetApplier> applier);
  // The production wiring: create(options, nullptr, nullptr). With the production applier the
  // manager also claims the nftables table in the calling thread's network namespace for its
  // life (an abstract unix socket "skiff-agent/TABLE"), so a second agent with the same instance
  // name there fails with kFailedPrecondition, naming the first one's pid, instead of replacing
  // its rules.
  static Result<std::unique_ptr<NetworkManager>> createDefault(NetworkManagerOptions options);
  ~NetworkManager();

  // Applies a registration answer. Idempotent for the same block.
  Status configure(const nlohmann::json& registrationAnswer);
  Result<Attachment> attach(const std::string& taskId, const std::vector<std::string>& groups,
                            int64_t bandwidthMbps);
  void detach(const std::string& taskId);
  void keepOnly(const std::set<std::string>& taskIds);
  // Applies one answer of GET /v1/network (also used by tests without a sync thread).
  Status applyView(const nlohmann::json& view);
  // Stops the sync thread. Endpoints and rules stay while containers run; with none left the
  // table, the routes to other nodes and the driver's host mounts are removed.
  void stop();

  std::optional<std::string> addressOf(const std::string& taskId) const;
  FirewallState firewallState() const { return firewall_.current(); }

 private:
  NetworkManager(NetworkManagerOptions options, std::shared_ptr<NetworkDriver> driver,
                 std::shared_ptr<RulesetApplier> applier);
  FirewallState desiredLocked() const;
  // Caller holds `lock` on mutex_; it is released while nft runs and held again on return.
  Status syncFirewall(std::unique_lock<std::mutex>& lock);
  void syncRoutesLocked(const nlohmann::json& nodes);
  void syncLoop();
  Status writeFiles(const std::string& taskId, const std::string& address);

  NetworkManagerOptions options_;
  std::shared_ptr<NetworkDriver> driver_;
  std::shared_ptr<RulesetApplier> applier_;
  Firewall firewall_;

  mutable std::mutex mutex_;  // Guards everything below except firewall_.
  // Firewall updates (syncFirewall): firewall_ is used by one syncer at a time, without mutex_.
  std::condition_variable firewallSynced_;
  bool firewallSyncing_ = false;
  uint64_t firewallRequested_ = 0;
  uint64_t firewallApplied_ = 0;
  Status firewallStatus_;
  std::condition_variable changed_;
  std::unique_ptr<Ipam> ipam_;
  std::string block_;
  std::string resolvConf_;  // What containers get as /etc/resolv.conf (from the host's).
  // The last view from skiffd.
  std::map<std::string, api::SecurityGroup> groups_;
  std::map<std::string, std::set<api::Ipv4>> members_;
  std::set<api::Ipv4Cidr> routes_;  // Other nodes' blocks routed through them.
  // Tasks to keep, when keepOnly ran before the address state was open.
  std::optional<std::set<std::string>> pendingKeep_;
  // Local containers' groups, known before skiffd publishes them.
  std::map<std::string, std::vector<std::string>> localGroups_;
  bool stopping_ = false;
  std::thread syncThread_;
  // createDefault's claim on the table (see `createDefault`), held until destruction.
  int tableClaim_ = -1;
};

}  // namespace skiff::agent::network
