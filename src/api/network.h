#pragma once

// The network model shared by skiffd, the agent and the CLI: IPv4 addresses and CIDR blocks, and
// security groups (named sets of ingress rules; see docs/networking.md).
//
// A security group's wire form (JSON or YAML):
//   name: web                      # letters, digits, '.', '_' or '-', at most 128
//   description: front end         # optional, at most 1024 bytes
//   ingress:                       # at most kMaxRules rules; none denies all inbound traffic
//     - protocol: tcp              # tcp | udp | icmp | all
//       fromPort: 80               # tcp/udp only, 1..65535; both absent: every port
//       toPort: 80                 # >= fromPort; absent: fromPort
//       sourceCidr: 10.0.0.0/8     # exactly one of sourceCidr and sourceGroup
//     - protocol: all
//       sourceGroup: web           # members of another (or the same) group

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"
#include "common/error.h"

namespace skiff::api {

// Host byte order.
using Ipv4 = uint32_t;

// "a.b.c.d" with each part 0..255 and no leading zeros beyond a single 0; nullopt otherwise.
std::optional<Ipv4> parseIpv4(std::string_view text);
std::string formatIpv4(Ipv4 address);

struct Ipv4Cidr {
  Ipv4 base = 0;  // Host bits are zero.
  int prefix = 32;

  uint64_t size() const { return uint64_t{1} << (32 - prefix); }
  Ipv4 mask() const { return prefix == 0 ? 0 : ~Ipv4{0} << (32 - prefix); }
  bool contains(Ipv4 address) const { return (address & mask()) == base; }
  bool contains(const Ipv4Cidr& other) const {
    return other.prefix >= prefix && contains(other.base);
  }
  bool operator==(const Ipv4Cidr&) const = default;
  auto operator<=>(const Ipv4Cidr&) const = default;
  std::string toString() const;
};

// "a.b.c.d/n" (n 0..32) or a bare address (/32). Host bits must be zero.
Result<Ipv4Cidr> parseCidr(std::string_view text);

// The `index`-th block of length `prefix` inside `range`; nullopt when out of range.
std::optional<Ipv4Cidr> subBlock(const Ipv4Cidr& range, int prefix, uint64_t index);

enum class Protocol { kTcp, kUdp, kIcmp, kAll };
std::string_view protocolName(Protocol protocol);

struct SecurityGroupRule {
  Protocol protocol = Protocol::kTcp;
  int fromPort = 0;  // 0 with toPort 0: every port (always so for icmp and all).
  int toPort = 0;
  std::optional<Ipv4Cidr> sourceCidr;
  std::string sourceGroup;  // Set when sourceCidr is not.

  bool operator==(const SecurityGroupRule&) const = default;
};

struct SecurityGroup {
  std::string name;
  std::string description;
  std::vector<SecurityGroupRule> ingress;

  bool operator==(const SecurityGroup&) const = default;
};

struct SecurityGroupLimits {
  static constexpr size_t kMaxRules = 100;
  static constexpr size_t kMaxDescriptionBytes = 1024;
};

// Checks every rule of `document` and reports each violation with its field path
// ("ingress[2].toPort"). Unknown fields are errors.
std::expected<SecurityGroup, FieldErrors> validateSecurityGroup(const nlohmann::json& document);

// The canonical wire form (what validateSecurityGroup accepts).
nlohmann::json toJson(const SecurityGroup& group);

// Whether `name` is a valid security group name (the job file's rule).
bool isValidSecurityGroupName(std::string_view name);

}  // namespace skiff::api
