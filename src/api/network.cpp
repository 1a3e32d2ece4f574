#include "api/network.h"

#include <charconv>

#include "api/names.h"

namespace skiff::api {
namespace {

using json = nlohmann::json;

// Parses a decimal in [0, max] without sign or leading zeros.
std::optional<int> parseSmall(std::string_view text, int max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > max) {
    return std::nullopt;
  }
  return value;
}

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

}  // namespace

std::optional<Ipv4> parseIpv4(std::string_view text) {
  Ipv4 address = 0;
  for (int part = 0; part < 4; ++part) {
    size_t dot = part < 3 ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return std::nullopt;
    auto value = parseSmall(text.substr(0, dot), 255);
    if (!value) return std::nullopt;
    address = (address << 8) | static_cast<Ipv4>(*value);
    text.remove_prefix(part < 3 ? dot + 1 : dot);
  }
  return address;
}

std::string formatIpv4(Ipv4 address) {
  return std::to_string(address >> 24) + "." + std::to_string((address >> 16) & 0xff) + "." +
         std::to_string((address >> 8) & 0xff) + "." + std::to_string(address & 0xff);
}

std::string Ipv4Cidr::toString() const {
  return formatIpv4(base) + "/" + std::to_string(prefix);
}

Result<Ipv4Cidr> parseCidr(std::string_view text) {
  std::string_view addressText = text;
  int prefix = 32;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    addressText = text.substr(0, slash);
    auto parsed = parseSmall(text.substr(slash + 1), 32);
    if (!parsed) return fail(ErrorCode::kInvalidArgument, "prefix length must be 0..32");
    prefix = *parsed;
  }
  auto address = parseIpv4(addressText);
  if (!address) return fail(ErrorCode::kInvalidArgument, "not an IPv4 address");
  Ipv4Cidr cidr{*address, prefix};
  if ((*address & cidr.mask()) != *address) {
    return fail(ErrorCode::kInvalidArgument, "host bits must be zero");
  }
  return cidr;
}

std::optional<Ipv4Cidr> subBlock(const Ipv4Cidr& range, int prefix, uint64_t index) {
  if (prefix < range.prefix || prefix > 32) return std::nullopt;
  uint64_t count = uint64_t{1} << (prefix - range.prefix);
  if (index >= count) return std::nullopt;
  return Ipv4Cidr{range.base + static_cast<Ipv4>(index << (32 - prefix)), prefix};
}

std::string_view protocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kTcp:
      return "tcp";
    case Protocol::kUdp:
      return "udp";
    case Protocol::kIcmp:
      return "icmp";
    case Protocol::kAll:
      return "all";
  }
  return "all";
}

bool isValidSecurityGroupName(std::string_view name) {
  return validName(name);
}

std::expected<SecurityGroup, FieldErrors> validateSecurityGroup(const json& document) {
  FieldErrors errors;
  SecurityGroup group;
  if (!document.is_object()) return std::unexpected(FieldErrors{{"", "must be an object"}});
  for (const auto& [key, value] : document.items()) {
    if (key != "name" && key != "description" && key != "ingress") {
      errors.push_back({key, "unknown field"});
    }
  }
  if (!document.contains("name") || !document["name"].is_string()) {
    errors.push_back({"name", "is required and must be a string"});
  } else {
    group.name = document["name"].get<std::string>();
    if (!isValidSecurityGroupName(group.name)) {
      errors.push_back({"name", "must be 1 to 128 letters, digits, '.', '_' or '-' (got " +
                                    describe(document["name"]) + ")"});
    }
  }
  if (document.contains("description")) {
    const json& description = document["description"];
    if (!description.is_string()) {
      errors.push_back({"description", "must be a string"});
    } else if (description.get_ref<const std::string&>().size() >
               SecurityGroupLimits::kMaxDescriptionBytes) {
      errors.push_back({"description", "must be at most 1024 bytes"});
    } else {
      group.description = description.get<std::string>();
    }
  }
  if (document.contains("ingress") && !document["ingress"].is_null()) {
    const json& ingress = document["ingress"];
    if (!ingress.is_array()) {
      errors.push_back({"ingress", "must be a list"});
    } else if (ingress.size() > SecurityGroupLimits::kMaxRules) {
      errors.push_back(
          {"ingress", "must have at most 100 rules (got " + std::to_string(ingress.size()) + ")"});
    } else {
      for (size_t i = 0; i < ingress.size(); ++i) {
        std::string path = "ingress[" + std::to_string(i) + "]";
        const json& item = ingress[i];
        if (!item.is_object()) {
          errors.push_back({path, "must be an object"});
          continue;
        }
        size_t before = errors.size();
        SecurityGroupRule rule;
        for (const auto& [key, value] : item.items()) {
          if (key != "protocol" && key != "fromPort" && key != "toPort" && key != "sourceCidr" &&
              key != "sourceGroup") {
            errors.push_back({path + "." + key, "unknown field"});
          }
        }
        std::string protocol = item.contains("protocol") && item["protocol"].is_string()
                                   ? item["protocol"].get<std::string>()
                                   : "";
        if (protocol == "tcp") {
          rule.protocol = Protocol::kTcp;
        } else if (protocol == "udp") {
          rule.protocol = Protocol::kUdp;
        } else if (protocol == "icmp") {
          rule.protocol = Protocol::kIcmp;
        } else if (protocol == "all") {
          rule.protocol = Protocol::kAll;
        } else {
          errors.push_back(
              {path + ".protocol",
               "is required and must be one of tcp, udp, icmp, all" +
                   (item.contains("protocol") ? " (got " + describe(item["protocol"]) + ")"
                                              : std::string())});
        }
        bool ported = rule.protocol == Protocol::kTcp || rule.protocol == Protocol::kUdp;
        auto port = [&](const char* key) -> std::optional<int> {
          if (!item.contains(key)) return std::nullopt;
          const json& value = item[key];
          if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
              value.get<int64_t>() > 65535) {
            errors.push_back({path + "." + key, "must be an integer between 1 and 65535 (got " +
                                                    describe(value) + ")"});
            return std::nullopt;
          }
          if (!ported) {
            errors.push_back({path + "." + key, "is only allowed for tcp and udp"});
            return std::nullopt;
          }
          return static_cast<int>(value.get<int64_t>());
        };
        auto from = port("fromPort");
        auto to = port("toPort");
        if (ported) {
          if (to && !from) {
            errors.push_back({path + ".fromPort", "is required when toPort is set"});
          } else if (from) {
            rule.fromPort = *from;
            rule.toPort = to.value_or(*from);
            if (rule.toPort < rule.fromPort) {
              errors.push_back({path + ".toPort", "must be at least fromPort (got " +
                                                      std::to_string(rule.toPort) + " < " +
                                                      std::to_string(rule.fromPort) + ")"});
            }
          }
        }
        bool hasCidr = item.contains("sourceCidr");
        bool hasGroup = item.contains("sourceGroup");
        if (hasCidr == hasGroup) {
          errors.push_back({path, "needs exactly one of sourceCidr and sourceGroup"});
        } else if (hasCidr) {
          const json& value = item["sourceCidr"];
          auto cidr = value.is_string() ? parseCidr(value.get<std::string>())
                                        : fail(ErrorCode::kInvalidArgument, "must be a string");
          if (!cidr) {
            errors.push_back({path + ".sourceCidr",
                              "must be an IPv4 CIDR such as 10.0.0.0/8: " + cidr.error().message() +
                                  " (got " + describe(value) + ")"});
          } else {
            rule.sourceCidr = *cidr;
          }
        } else {
          const json& value = item["sourceGroup"];
          if (!value.is_string() || !isValidSecurityGroupName(value.get<std::string>())) {
            errors.push_back({path + ".sourceGroup",
                              "must be a security group name (got " + describe(value) + ")"});
          } else {
            rule.sourceGroup = value.get<std::string>();
          }
        }
        if (errors.size() == before) group.ingress.push_back(std::move(rule));
      }
    }
  }
  if (!errors.empty()) return std::unexpected(std::move(errors));
  return group;
}

json toJson(const SecurityGroup& group) {
  json ingress = json::array();
  for (const SecurityGroupRule& rule : group.ingress) {
    json item = {{"protocol", protocolName(rule.protocol)}};
    if (rule.fromPort > 0) {
      item["fromPort"] = rule.fromPort;
      item["toPort"] = rule.toPort;
    }
    if (rule.sourceCidr) {
      item["sourceCidr"] = rule.sourceCidr->toString();
    } else {
      item["sourceGroup"] = rule.sourceGroup;
    }
    ingress.push_back(std::move(item));
  }
  json out = {{"name", group.name}, {"ingress", std::move(ingress)}};
  if (!group.description.empty()) out["description"] = group.description;
  return out;
}

}  // namespace skiff::api
