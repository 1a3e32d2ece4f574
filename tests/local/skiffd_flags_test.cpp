// skiffd's command line: the all-in-one node's flags reach the embedded agent's options and the
// node attributes it registers with.

#include "local/skiffd_flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include "agent/instance.h"
#include "agent/node_info.h"
#include "local/embedded_agent.h"

namespace skiff::local {
namespace {

SkiffdFlags parse(std::vector<std::string> args) {
  SkiffdFlags flags;
  CLI::App app;
  addSkiffdFlags(app, flags);
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first.
  app.parse(args);
  return flags;
}

TEST(SkiffdFlagsTest, ZoneAndRegionBecomeTheNodesAttributes) {
  SkiffdFlags flags = parse({"--with-agent", "--agent-node-id", "node-a", "--zone", "eu-west-1b",
                             "--region", "eu-west-1"});
  ASSERT_TRUE(flags.withAgent);
  agent::AgentOptions options =
      embeddedAgentOptions(flags.agent, {"http://127.0.0.1:7070", "join-token"});
  EXPECT_EQ(options.nodeId, "node-a");
  EXPECT_EQ(options.server, "http://127.0.0.1:7070");
  EXPECT_EQ(options.joinToken, "join-token");
  EXPECT_EQ(options.attributes.zone, "eu-west-1b");
  EXPECT_EQ(agent::regionOf(options.attributes), "eu-west-1");

  nlohmann::json body = agent::registrationBody(options.nodeId, {}, options.attributes);
  EXPECT_EQ(body["attributes"]["zone"], "eu-west-1b");
  EXPECT_EQ(body["attributes"]["labels"]["region"], "eu-west-1");
}

TEST(SkiffdFlagsTest, WithoutZoneOrRegionTheNodeHasNeither) {
  SkiffdFlags flags = parse({"--with-agent"});
  agent::AgentOptions options = embeddedAgentOptions(flags.agent, {"http://127.0.0.1:7070", ""});
  EXPECT_FALSE(options.nodeId.empty());  // The hostname.
  EXPECT_EQ(options.attributes.zone, "");
  EXPECT_TRUE(options.attributes.labels.empty());
  nlohmann::json body = agent::registrationBody(options.nodeId, {}, options.attributes);
  EXPECT_FALSE(body["attributes"].contains("zone"));
}

TEST(SkiffdFlagsTest, WithoutAnInstanceTheAgentKeepsTheSingleClusterNames) {
  SkiffdFlags flags = parse({"--with-agent"});
  agent::AgentOptions options = embeddedAgentOptions(flags.agent, {"http://127.0.0.1:7070", ""});
  EXPECT_EQ(options.instance, "");
  EXPECT_EQ(options.stateDir, "/var/lib/skiff-agent");
  EXPECT_EQ(options.cgroupParent, "/skiff");
}

TEST(SkiffdFlagsTest, AnAgentInstanceNamesTheStateDirAndCgroupParent) {
  SkiffdFlags flags = parse({"--with-agent", "--agent-instance", "second"});
  agent::AgentOptions options = embeddedAgentOptions(flags.agent, {"http://127.0.0.1:7071", ""});
  EXPECT_EQ(options.instance, "second");
  EXPECT_EQ(options.stateDir, "/var/lib/skiff-agent-second");
  EXPECT_EQ(options.cgroupParent, "/skiff-second");
  flags = parse({"--with-agent", "--agent-instance", "second", "--agent-state-dir", "/srv/a"});
  EXPECT_EQ(embeddedAgentOptions(flags.agent, {"http://127.0.0.1:7071", ""}).stateDir, "/srv/a");
}

TEST(SkiffdFlagsTest, InstanceNamesAreCheckedBeforeTheyNameAnything) {
  EXPECT_TRUE(agent::validateInstance(""));
  EXPECT_TRUE(agent::validateInstance("b"));
  EXPECT_TRUE(agent::validateInstance("cluster-2"));
  EXPECT_FALSE(agent::validateInstance("-b"));
  EXPECT_FALSE(agent::validateInstance("B"));
  EXPECT_FALSE(agent::validateInstance("a/b"));
  EXPECT_FALSE(agent::validateInstance("a b"));
  EXPECT_FALSE(agent::validateInstance(std::string(33, 'a')));
}

TEST(SkiffdFlagsTest, ControlPlaneFlagsReachTheDaemonOptions) {
  SkiffdFlags flags = parse({"--state-dir", "/tmp/s", "--listen", "0.0.0.0:0", "--node-timeout",
                             "7", "--vpc-cidr", "10.0.0.0/16"});
  EXPECT_FALSE(flags.withAgent);
  EXPECT_EQ(flags.daemon.stateDir, "/tmp/s");
  EXPECT_EQ(flags.daemon.listen, "0.0.0.0:0");
  EXPECT_EQ(flags.daemon.nodeTimeoutSec, 7);
  EXPECT_EQ(flags.daemon.vpcCidr, "10.0.0.0/16");
  EXPECT_EQ(flags.daemon.store, "sqlite");
  flags = parse({"--store", "etcd://127.0.0.1:2379,127.0.0.1:22379"});
  EXPECT_EQ(flags.daemon.store, "etcd://127.0.0.1:2379,127.0.0.1:22379");
}

}  // namespace
}  // namespace skiff::local
