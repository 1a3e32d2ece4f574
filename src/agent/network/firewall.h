#pragma once

// Security groups and anti-spoofing on one node, in an nftables table the agent owns
// (`ip skiff`, or `ip skiff-NAME` for an agent with an instance name: see `firewallTableName`;
// nothing else touches it and the agent never touches other tables).
//
// Model: a container is a member of the groups its job names. Inbound traffic to a local
// container (forwarded to one of this agent's links) is accepted when it belongs to an
// established connection or when any rule of any of the container's groups matches; everything
// else is dropped. Egress is not filtered. A rule's source is a CIDR or the member addresses of a
// group (cluster-wide, from skiffd). Packets arriving from a container link with a source address
// other than that container's are dropped (forward and input hooks). The rules match this
// agent's links by name (the `links` set), never by a name pattern, so the tables of two agents
// on one host (two all-in-one clusters) each filter only their own containers' traffic.
//
// Layout (set and chain names are derived from a hash of the group name, see `groupKey`):
//   set links      { type ifname }               this agent's host-side container links
//   set endpoints  { type ifname . ipv4_addr }   local links and their one allowed source
//   set m_<key>    { type ipv4_addr }            members of a group, cluster-wide
//   chain g_<key>                                the group's rules (accept on match)
//   chain to_container                           established -> accept; daddr @m_X jump g_X ...;
//                                                drop
// A membership change is therefore one `add element`/`delete element` on one set; a rule change
// rewrites one chain; a new or removed group rebuilds the table in one atomic transaction.

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/network/network_driver.h"
#include "api/network.h"
#include "common/error.h"

struct nft_ctx;

namespace skiff::agent::network {

inline constexpr std::string_view kTableName = "skiff";

// The table of the agent instance `instance`: "skiff" for the default (empty) instance,
// "skiff-NAME" otherwise.
std::string firewallTableName(const std::string& instance);

struct LocalEndpoint {
  std::string hostLink;
  api::Ipv4 address = 0;
  bool operator==(const LocalEndpoint&) const = default;
  auto operator<=>(const LocalEndpoint&) const = default;
};

struct FirewallState {
  std::map<std::string, api::SecurityGroup> groups;    // By name.
  std::map<std::string, std::set<api::Ipv4>> members;  // Group name -> addresses.
  std::set<LocalEndpoint> endpoints;                   // This node's containers.
  bool operator==(const FirewallState&) const = default;
};

// "<16 hex digits>" of a 64-bit FNV-1a hash of the group name: a valid nft identifier part
// whatever the name contains.
std::string groupKey(const std::string& name);

// The whole table `ip TABLE` as one nft script that replaces any previous version atomically.
std::string renderRuleset(const FirewallState& state, std::string_view table = kTableName);

// The commands that turn `from` into `to`: element updates only when the groups' definitions are
// unchanged, otherwise the full ruleset. Empty when nothing changed.
std::string renderDelta(const FirewallState& from, const FirewallState& to,
                        std::string_view table = kTableName);

// Applies nft scripts. The interface lets tests record what would be applied.
class RulesetApplier {
 public:
  virtual ~RulesetApplier() = default;
  virtual Status apply(const std::string& script) = 0;
};

// Applies through libnftables in the network namespace of the thread that created it.
class NftApplier final : public RulesetApplier {
 public:
  static Result<std::unique_ptr<NftApplier>> create();
  ~NftApplier() override;
  Status apply(const std::string& script) override;

 private:
  NftApplier(nft_ctx* ctx, int netnsFd, unsigned long netnsInode)
      : ctx_(ctx), netnsFd_(netnsFd), netnsInode_(netnsInode) {}
  std::mutex mutex_;
  nft_ctx* ctx_;
  int netnsFd_;
  unsigned long netnsInode_;
};

// Keeps the applied state and brings the kernel to a desired one with the smallest change.
class Firewall {
 public:
  // Keeps the table `ip TABLE`.
  explicit Firewall(RulesetApplier& applier, std::string table = std::string(kTableName))
      : applier_(applier), table_(std::move(table)) {}
  // Replaces the table with `state` (start-up: whatever an earlier run left is discarded).
  Status reset(const FirewallState& state);
  // Applies the difference to `state`. On failure falls back to a full reset.
  Status update(const FirewallState& state);
  FirewallState current() const;
  // Removes the table.
  Status remove();
  const std::string& table() const { return table_; }

 private:
  RulesetApplier& applier_;
  const std::string table_;
  mutable std::mutex mutex_;
  FirewallState applied_;
  bool valid_ = false;
};

}  // namespace skiff::agent::network
