#pragma once

// Container addresses from this node's block (given by skiffd at registration).
//
// Each task gets one address; an owner that asks again gets the same one. A released address is
// quarantined for `quarantineMs` before it can be handed out again, so that a peer, a proxy cache
// or a connection-tracking entry that still remembers the old holder cannot reach the new one.
// Addresses are handed out round robin (the one after the last given), which spreads reuse further.
// The block's first (network) and last (broadcast) addresses are never used.
//
// Persistence: every change is written to `statePath` (temporary file + rename, no fsync) before
// the call returns, so kill -9 of the agent loses no allocation and no quarantine. A power loss
// may lose the last changes; every container of the node is gone then too.
//
// Thread-safe.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/network.h"
#include "common/clock.h"
#include "common/error.h"

namespace skiff::agent::network {

struct IpamOptions {
  std::string statePath;  // JSON file; created on the first change.
  api::Ipv4Cidr block;    // At most /30 (two usable addresses).
  int64_t quarantineMs = 60'000;
};

class Ipam {
 public:
  // Loads `statePath` when it exists. Allocations outside a changed block are kept (their
  // containers still run) but new ones come from the new block.
  static Result<std::unique_ptr<Ipam>> open(IpamOptions options, const Clock& clock);

  // The owner's address, allocating one when it has none. kUnavailable when every usable address
  // is taken or quarantined.
  Result<api::Ipv4> allocate(const std::string& owner);
  // Frees the owner's address into quarantine. No-op for an unknown owner.
  Status release(const std::string& owner);
  std::optional<api::Ipv4> addressOf(const std::string& owner) const;
  std::map<std::string, api::Ipv4> allocations() const;
  // Addresses in quarantine and when each becomes free again (ms since the epoch).
  std::map<api::Ipv4, int64_t> quarantined() const;
  const api::Ipv4Cidr& block() const { return options_.block; }

 private:
  Ipam(IpamOptions options, const Clock& clock) : options_(std::move(options)), clock_(clock) {}
  Status saveLocked() const;

  IpamOptions options_;
  const Clock& clock_;
  mutable std::mutex mutex_;
  std::map<std::string, api::Ipv4> byOwner_;
  std::map<api::Ipv4, std::string> byAddress_;
  std::map<api::Ipv4, int64_t> quarantine_;  // Address -> free again at (ms).
  api::Ipv4 cursor_ = 0;                     // The last address handed out.
};

}  // namespace skiff::agent::network
