#include "agent/network/firewall.h"

#include <gtest/gtest.h>

#include "api/network.h"

namespace skiff::agent::network {
namespace {

using nlohmann::json;

api::SecurityGroup group(const json& document) {
  auto parsed = api::validateSecurityGroup(document);
  EXPECT_TRUE(parsed) << (parsed ? "" : parsed.error().front().toString());
  return parsed ? *parsed : api::SecurityGroup{};
}

FirewallState sample() {
  FirewallState state;
  state.groups["web"] = group(
      {{"name", "web"},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 80}, {"sourceCidr", "0.0.0.0/0"}},
         {{"protocol", "tcp"}, {"fromPort", 8000}, {"toPort", 8100}, {"sourceGroup", "ops"}}}}});
  state.groups["db"] = group({{"name", "db"},
                              {"ingress",
                               {{{"protocol", "all"}, {"sourceGroup", "web"}},
                                {{"protocol", "icmp"}, {"sourceCidr", "10.0.0.0/8"}},
                                {{"protocol", "udp"}, {"sourceCidr", "10.1.0.0/16"}}}}});
  state.members["web"] = {*api::parseIpv4("10.64.0.2"), *api::parseIpv4("10.64.1.2")};
  state.members["db"] = {*api::parseIpv4("10.64.0.3")};
  state.endpoints.insert({"skv000000000001", *api::parseIpv4("10.64.0.2")});
  return state;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(FirewallRuleset, RendersGroupsAsChainsAndMembersAsSets) {
  std::string script = renderRuleset(sample());
  std::string web = groupKey("web");
  std::string db = groupKey("db");
  std::string ops = groupKey("ops");
  EXPECT_TRUE(contains(script, "table ip skiff {}\ndelete table ip skiff\n")) << script;
  EXPECT_TRUE(contains(script, "set m_" + web +
                                   " {\n    type ipv4_addr\n    elements = { "
                                   "10.64.0.2, 10.64.1.2 }"))
      << script;
  // A group only referenced as a source still gets its (empty) set.
  EXPECT_TRUE(contains(script, "set m_" + ops + " {\n    type ipv4_addr\n  }")) << script;
  EXPECT_TRUE(contains(script, "ip saddr 0.0.0.0/0 tcp dport 80 accept")) << script;
  EXPECT_TRUE(contains(script, "ip saddr @m_" + ops + " tcp dport 8000-8100 accept")) << script;
  EXPECT_TRUE(contains(script, "ip saddr @m_" + web + " accept")) << script;
  EXPECT_TRUE(contains(script, "ip saddr 10.0.0.0/8 meta l4proto icmp accept")) << script;
  EXPECT_TRUE(contains(script, "ip saddr 10.1.0.0/16 meta l4proto udp accept")) << script;
  EXPECT_TRUE(contains(script, "ip daddr @m_" + db + " jump g_" + db)) << script;
  EXPECT_TRUE(contains(script, "elements = { \"skv000000000001\" . 10.64.0.2 }")) << script;
  // The rules match this agent's own links, never a name pattern another agent's links share.
  EXPECT_TRUE(
      contains(script, "set links {\n    type ifname\n    elements = { \"skv000000000001\" }"))
      << script;
  EXPECT_TRUE(contains(script, "iifname @links iifname . ip saddr != @endpoints counter drop"))
      << script;
  EXPECT_TRUE(contains(script, "oifname @links jump to_container")) << script;
  EXPECT_FALSE(contains(script, "skv*")) << script;
  // Default deny after the group jumps.
  EXPECT_LT(script.find("jump g_"), script.find("counter drop\n  }\n  chain forward"));
}

TEST(FirewallRuleset, MembershipChangeIsOneSetUpdate) {
  FirewallState before = sample();
  FirewallState after = before;
  after.members["web"].insert(*api::parseIpv4("10.64.2.9"));
  after.members["db"].clear();
  std::string delta = renderDelta(before, after);
  EXPECT_EQ(delta, "delete element ip skiff m_" + groupKey("db") +
                       " { 10.64.0.3 }\nadd element ip skiff m_" + groupKey("web") +
                       " { 10.64.2.9 }\n");
  EXPECT_EQ(renderDelta(after, after), "");
}

TEST(FirewallRuleset, EndpointChangesAreElementUpdates) {
  FirewallState before = sample();
  FirewallState after = before;
  after.endpoints.insert({"skv000000000002", *api::parseIpv4("10.64.0.3")});
  EXPECT_EQ(renderDelta(before, after),
            "add element ip skiff links { \"skv000000000002\" }\n"
            "add element ip skiff endpoints { \"skv000000000002\" . 10.64.0.3 }\n");
  EXPECT_EQ(renderDelta(after, before),
            "delete element ip skiff endpoints { \"skv000000000002\" . 10.64.0.3 }\n"
            "delete element ip skiff links { \"skv000000000002\" }\n");
}

TEST(FirewallRuleset, AnInstanceHasItsOwnTable) {
  EXPECT_EQ(firewallTableName(""), "skiff");
  EXPECT_EQ(firewallTableName("b"), "skiff-b");
  std::string script = renderRuleset(sample(), firewallTableName("b"));
  EXPECT_TRUE(contains(script, "table ip skiff-b {}\ndelete table ip skiff-b\n")) << script;
  EXPECT_FALSE(contains(script, "table ip skiff {")) << script;
  FirewallState after = sample();
  after.members["db"].clear();
  EXPECT_EQ(renderDelta(sample(), after, "skiff-b"),
            "delete element ip skiff-b m_" + groupKey("db") + " { 10.64.0.3 }\n");
}

TEST(FirewallRuleset, AnInstanceSaltsTheHostLinkNames) {
  EXPECT_EQ(hostLinkNameFor("job-1-0"), hostLinkNameFor("job-1-0", ""));
  EXPECT_NE(hostLinkNameFor("job-1-0"), hostLinkNameFor("job-1-0", "b"));
  EXPECT_NE(hostLinkNameFor("job-1-0", "a"), hostLinkNameFor("job-1-0", "b"));
  EXPECT_EQ(hostLinkNameFor("job-1-0", "b").size(), 15u);
  EXPECT_TRUE(hostLinkNameFor("job-1-0", "b").starts_with("skv"));
}

TEST(FirewallRuleset, RuleChangeRebuildsTheTableAtomically) {
  FirewallState before = sample();
  FirewallState after = before;
  after.groups["web"].ingress.pop_back();
  std::string delta = renderDelta(before, after);
  EXPECT_EQ(delta, renderRuleset(after));
}

TEST(FirewallRuleset, GroupKeysAreStableAndDistinct) {
  EXPECT_EQ(groupKey("web"), groupKey("web"));
  EXPECT_NE(groupKey("web"), groupKey("Web"));
  EXPECT_EQ(groupKey("a.b_c-d").size(), 16u);
}

class RecordingApplier : public RulesetApplier {
 public:
  Status apply(const std::string& script) override {
    scripts.push_back(script);
    if (failNext) {
      failNext = false;
      return fail(ErrorCode::kIo, "injected");
    }
    return {};
  }
  std::vector<std::string> scripts;
  bool failNext = false;
};

TEST(Firewall, UpdateFallsBackToAFullResetWhenADeltaFails) {
  RecordingApplier applier;
  Firewall firewall(applier);
  ASSERT_TRUE(firewall.reset(sample()));
  FirewallState next = sample();
  next.members["db"].insert(*api::parseIpv4("10.64.3.3"));
  applier.failNext = true;
  ASSERT_TRUE(firewall.update(next));
  ASSERT_EQ(applier.scripts.size(), 3u);
  EXPECT_EQ(applier.scripts[2], renderRuleset(next));
  EXPECT_EQ(firewall.current(), next);
}

TEST(SecurityGroupValidation, NamesEveryBrokenFieldWithItsRule) {
  auto parsed = api::validateSecurityGroup(
      {{"name", "bad name"},
       {"extra", 1},
       {"ingress",
        {{{"protocol", "tcp"}, {"fromPort", 90}, {"toPort", 80}, {"sourceCidr", "10.0.0.1/8"}},
         {{"protocol", "icmp"}, {"fromPort", 1}, {"sourceGroup", "web"}},
         {{"protocol", "sctp"}, {"sourceCidr", "10.0.0.0/8"}, {"sourceGroup", "web"}},
         {{"protocol", "udp"}, {"fromPort", 70000}, {"sourceGroup", "x y"}}}}});
  ASSERT_FALSE(parsed);
  std::vector<std::string> fields;
  for (const auto& error : parsed.error()) fields.push_back(error.field);
  std::vector<std::string> expected = {"extra",
                                       "name",
                                       "ingress[0].toPort",
                                       "ingress[0].sourceCidr",
                                       "ingress[1].fromPort",
                                       "ingress[2].protocol",
                                       "ingress[2]",
                                       "ingress[3].fromPort",
                                       "ingress[3].sourceGroup"};
  EXPECT_EQ(fields, expected);
}

TEST(SecurityGroupValidation, CanonicalFormRoundTrips) {
  api::SecurityGroup original = sample().groups["web"];
  auto again = api::validateSecurityGroup(api::toJson(original));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, original);
  EXPECT_EQ(again->ingress[0].toPort, 80);  // toPort defaults to fromPort.
}

}  // namespace
}  // namespace skiff::agent::network
