#include "agent/network/firewall.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iterator>
#include <thread>

#include <nftables/libnftables.h>

#include "common/hash.h"

namespace skiff::agent::network {
namespace {

std::string setOf(const std::string& group) {
  return "m_" + groupKey(group);
}

std::string chainOf(const std::string& group) {
  return "g_" + groupKey(group);
}

// Every group that needs a member set: defined, referenced by a rule, or with members.
std::set<std::string> setUniverse(const FirewallState& state) {
  std::set<std::string> names;
  for (const auto& [name, group] : state.groups) {
    names.insert(name);
    for (const api::SecurityGroupRule& rule : group.ingress) {
      if (!rule.sourceGroup.empty()) names.insert(rule.sourceGroup);
    }
  }
  for (const auto& [name, members] : state.members) names.insert(name);
  return names;
}

std::set<std::string> linksOf(const FirewallState& state) {
  std::set<std::string> links;
  for (const LocalEndpoint& endpoint : state.endpoints) links.insert(endpoint.hostLink);
  return links;
}

std::string linkElement(const std::string& link) {
  return "\"" + link + "\"";
}

std::string endpointElement(const LocalEndpoint& endpoint) {
  return "\"" + endpoint.hostLink + "\" . " + api::formatIpv4(endpoint.address);
}

template <typename Range, typename Format>
std::string joinElements(const Range& range, Format format) {
  std::string out;
  for (const auto& item : range) {
    if (!out.empty()) out += ", ";
    out += format(item);
  }
  return out;
}

std::string renderRule(const api::SecurityGroupRule& rule) {
  std::string line = "ip saddr ";
  line += rule.sourceCidr ? rule.sourceCidr->toString() : "@" + setOf(rule.sourceGroup);
  std::string_view protocol = api::protocolName(rule.protocol);
  switch (rule.protocol) {
    case api::Protocol::kTcp:
    case api::Protocol::kUdp:
      if (rule.fromPort > 0) {
        line += " " + std::string(protocol) + " dport " + std::to_string(rule.fromPort);
        if (rule.toPort != rule.fromPort) line += "-" + std::to_string(rule.toPort);
      } else {
        line += " meta l4proto " + std::string(protocol);
      }
      break;
    case api::Protocol::kIcmp:
      line += " meta l4proto icmp";
      break;
    case api::Protocol::kAll:
      break;
  }
  return line + " accept";
}

std::string renderGroupChain(const api::SecurityGroup& group) {
  std::string out;
  for (const api::SecurityGroupRule& rule : group.ingress) out += "    " + renderRule(rule) + "\n";
  return out;
}

}  // namespace

std::string groupKey(const std::string& name) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(fnv1a64(name)));
  return text;
}

std::string firewallTableName(const std::string& instance) {
  return instance.empty() ? std::string(kTableName) : std::string(kTableName) + "-" + instance;
}

std::string renderRuleset(const FirewallState& state, std::string_view tableName) {
  std::string table = "ip " + std::string(tableName);
  std::string out = "table " + table + " {}\ndelete table " + table + "\ntable " + table + " {\n";
  out += "  set links {\n    type ifname\n";
  if (!state.endpoints.empty()) {
    out += "    elements = { " + joinElements(linksOf(state), linkElement) + " }\n";
  }
  out += "  }\n";
  out += "  set endpoints {\n    type ifname . ipv4_addr\n";
  if (!state.endpoints.empty()) {
    out += "    elements = { " + joinElements(state.endpoints, endpointElement) + " }\n";
  }
  out += "  }\n";
  for (const std::string& name : setUniverse(state)) {
    out += "  set " + setOf(name) + " {\n    type ipv4_addr\n";
    auto members = state.members.find(name);
    if (members != state.members.end() && !members->second.empty()) {
      out += "    elements = { " + joinElements(members->second, api::formatIpv4) + " }\n";
    }
    out += "  }\n";
  }
  for (const auto& [name, group] : state.groups) {
    out += "  chain " + chainOf(name) + " {\n" + renderGroupChain(group) + "  }\n";
  }
  std::string links = "@links";
  out += "  chain to_container {\n    ct state established,related accept\n";
  for (const auto& [name, group] : state.groups) {
    out += "    ip daddr @" + setOf(name) + " jump " + chainOf(name) + "\n";
  }
  out += "    counter drop\n  }\n";
  out += "  chain forward {\n    type filter hook forward priority filter; policy accept;\n";
  out += "    iifname " + links + " iifname . ip saddr != @endpoints counter drop\n";
  out += "    oifname " + links + " jump to_container\n  }\n";
  out += "  chain input {\n    type filter hook input priority filter; policy accept;\n";
  out += "    iifname " + links + " iifname . ip saddr != @endpoints counter drop\n  }\n";
  out += "}\n";
  return out;
}

std::string renderDelta(const FirewallState& from, const FirewallState& to,
                        std::string_view tableName) {
  if (from == to) return "";
  if (from.groups != to.groups || setUniverse(from) != setUniverse(to)) {
    return renderRuleset(to, tableName);
  }
  std::string table = "ip " + std::string(tableName);
  std::string out;
  auto elements = [&](const char* verb, const std::string& set, const std::string& list) {
    if (!list.empty())
      out += std::string(verb) + " element " + table + " " + set + " { " + list + " }\n";
  };
  std::vector<LocalEndpoint> gone;
  std::vector<LocalEndpoint> added;
  std::set_difference(from.endpoints.begin(), from.endpoints.end(), to.endpoints.begin(),
                      to.endpoints.end(), std::back_inserter(gone));
  std::set_difference(to.endpoints.begin(), to.endpoints.end(), from.endpoints.begin(),
                      from.endpoints.end(), std::back_inserter(added));
  std::set<std::string> linksBefore = linksOf(from);
  std::set<std::string> linksAfter = linksOf(to);
  std::vector<std::string> linksGone;
  std::vector<std::string> linksAdded;
  std::set_difference(linksBefore.begin(), linksBefore.end(), linksAfter.begin(), linksAfter.end(),
                      std::back_inserter(linksGone));
  std::set_difference(linksAfter.begin(), linksAfter.end(), linksBefore.begin(), linksBefore.end(),
                      std::back_inserter(linksAdded));
  elements("delete", "endpoints", joinElements(gone, endpointElement));
  elements("delete", "links", joinElements(linksGone, linkElement));
  elements("add", "links", joinElements(linksAdded, linkElement));
  elements("add", "endpoints", joinElements(added, endpointElement));
  static const std::set<api::Ipv4> kNone;
  for (const std::string& name : setUniverse(to)) {
    auto before = from.members.find(name);
    auto after = to.members.find(name);
    const auto& old = before == from.members.end() ? kNone : before->second;
    const auto& now = after == to.members.end() ? kNone : after->second;
    std::vector<api::Ipv4> removed;
    std::vector<api::Ipv4> joined;
    std::set_difference(old.begin(), old.end(), now.begin(), now.end(),
                        std::back_inserter(removed));
    std::set_difference(now.begin(), now.end(), old.begin(), old.end(), std::back_inserter(joined));
    elements("delete", setOf(name), joinElements(removed, api::formatIpv4));
    elements("add", setOf(name), joinElements(joined, api::formatIpv4));
  }
  return out;
}

namespace {

// The inode of the calling thread's network namespace (0 when unknown).
ino_t currentNetns() {
  struct stat st {};
  return ::stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

}  // namespace

Result<std::unique_ptr<NftApplier>> NftApplier::create() {
  int netns = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (netns < 0) return std::unexpected(errnoError("open own network namespace", errno));
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) {
    ::close(netns);
    return fail(ErrorCode::kIo, "libnftables: cannot create a context");
  }
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  return std::unique_ptr<NftApplier>(new NftApplier(ctx, netns, currentNetns()));
}

NftApplier::~NftApplier() {
  nft_ctx_free(ctx_);
  ::close(netnsFd_);
}

Status NftApplier::apply(const std::string& script) {
  std::lock_guard lock(mutex_);
  auto run = [&]() -> Status {
    int rc = nft_run_cmd_from_buffer(ctx_, script.c_str());
    const char* error = nft_ctx_get_error_buffer(ctx_);
    if (rc != 0) {
      std::string message = error != nullptr ? error : "";
      if (message.size() > 2000) message = message.substr(0, 2000) + "...";
      return fail(ErrorCode::kIo, "nftables: " + message);
    }
    return {};
  };
  // libnftables opens (and on some errors reopens) its netlink socket in the namespace of the
  // thread that runs the command, so commands run in the creator's namespace: directly when the
  // caller is there (the agent's case), else on a short-lived thread that joins it.
  if (currentNetns() == netnsInode_) return run();
  Status result = fail(ErrorCode::kInternal, "not run");
  std::thread worker([&] {
    if (::setns(netnsFd_, CLONE_NEWNET) != 0) {
      result = std::unexpected(errnoError("join the firewall's namespace", errno));
      return;
    }
    result = run();
  });
  worker.join();
  return result;
}

Status Firewall::reset(const FirewallState& state) {
  std::lock_guard lock(mutex_);
  valid_ = false;
  SKIFF_TRY_STATUS(applier_.apply(renderRuleset(state, table_)), "firewall");
  applied_ = state;
  valid_ = true;
  return {};
}

Status Firewall::update(const FirewallState& state) {
  {
    std::lock_guard lock(mutex_);
    if (valid_) {
      std::string delta = renderDelta(applied_, state, table_);
      if (delta.empty()) return {};
      if (applier_.apply(delta)) {
        applied_ = state;
        return {};
      }
    }
  }
  return reset(state);
}

FirewallState Firewall::current() const {
  std::lock_guard lock(mutex_);
  return applied_;
}

Status Firewall::remove() {
  std::lock_guard lock(mutex_);
  valid_ = false;
  std::string table = "ip " + table_;
  return applier_.apply("table " + table + " {}\ndelete table " + table + "\n");
}

}  // namespace skiff::agent::network
