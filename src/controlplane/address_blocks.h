#pragma once

// Container address blocks: skiffd splits the cluster's VPC range into equal blocks and gives
// each node one at its first registration (kept across re-registrations and restarts: it is part
// of the stored node record). The node's agent hands out container addresses from its block.

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "api/network.h"
#include "common/error.h"

namespace skiff::controlplane {

struct AddressPlan {
  // 1,024 nodes of 1,022 container addresses each: a node starting ~70 short tasks a second
  // (the agent's pace here) must not run out of addresses while released ones sit in quarantine.
  std::string vpcCidr = "10.64.0.0/12";
  int nodeBlockPrefix = 22;
};

// Checks the plan (flags): the range parses and the block prefix is inside it and at most /30.
Status validateAddressPlan(const AddressPlan& plan);

// The block for a node that holds `current` ("" when new); `taken(block)` says whether another
// node holds it. `current` is kept when it still belongs to the plan and no one else has it;
// otherwise the lowest free block at index `*searchFrom` or later (0 when null), and
// `*searchFrom` moves past it: blocks are never given back, so a caller that keeps it scans each
// block once over all registrations instead of once per registration. kUnavailable when the range
// is exhausted.
Result<std::string> chooseAddressBlock(const AddressPlan& plan, const std::string& current,
                                       const std::function<bool(const std::string&)>& taken,
                                       uint64_t* searchFrom = nullptr);

// The same with the set of every other node's block.
Result<std::string> chooseAddressBlock(const AddressPlan& plan, const std::string& current,
                                       const std::set<std::string>& taken);

}  // namespace skiff::controlplane
