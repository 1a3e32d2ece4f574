#include "agent/network/ipam.h"

#include <filesystem>
#include <set>

#include <gtest/gtest.h>

#include "testing/local_registry.h"

namespace skiff::agent::network {
namespace {

api::Ipv4 ip(const char* text) {
  return *api::parseIpv4(text);
}

class IpamTest : public ::testing::Test {
 protected:
  IpamOptions options(const char* block = "10.64.1.0/29", int64_t quarantineMs = 60'000) {
    return {dir_.path() + "/ipam.json", *api::parseCidr(block), quarantineMs};
  }
  image::testing::TempDir dir_{"skiff-ipam-test"};
  ManualClock clock_;
};

TEST_F(IpamTest, SameOwnerGetsSameAddressAndNetworkAndBroadcastAreNeverUsed) {
  auto ipam = Ipam::open(options(), clock_);
  ASSERT_TRUE(ipam) << ipam.error().message();
  std::set<api::Ipv4> seen;
  for (int i = 0; i < 6; ++i) {
    auto address = (*ipam)->allocate("task-" + std::to_string(i));
    ASSERT_TRUE(address) << address.error().message();
    EXPECT_GT(*address, ip("10.64.1.0"));
    EXPECT_LT(*address, ip("10.64.1.7"));
    seen.insert(*address);
  }
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ(*(*ipam)->allocate("task-2"), *(*ipam)->addressOf("task-2"));
  auto full = (*ipam)->allocate("task-6");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ErrorCode::kUnavailable);
}

TEST_F(IpamTest, ReleasedAddressIsQuarantinedUntilThePeriodEnds) {
  auto ipam = Ipam::open(options("10.64.1.0/30", 30'000), clock_);  // Two usable addresses.
  ASSERT_TRUE(ipam);
  api::Ipv4 a = *(*ipam)->allocate("a");
  api::Ipv4 b = *(*ipam)->allocate("b");
  ASSERT_TRUE((*ipam)->release("a"));
  EXPECT_EQ((*ipam)->quarantined().at(a), clock_.nowMs() + 30'000);
  // The only free address is in quarantine: nothing to give.
  auto blocked = (*ipam)->allocate("c");
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code(), ErrorCode::kUnavailable);
  clock_.advanceMs(29'999);
  EXPECT_FALSE((*ipam)->allocate("c"));
  clock_.advanceMs(1);
  auto reused = (*ipam)->allocate("c");
  ASSERT_TRUE(reused) << reused.error().message();
  EXPECT_EQ(*reused, a);
  EXPECT_NE(*reused, b);
}

TEST_F(IpamTest, HandsOutRoundRobinSoAFreshAddressIsPreferredOverARecentlyFreedOne) {
  auto ipam = Ipam::open(options("10.64.1.0/29", 0), clock_);
  ASSERT_TRUE(ipam);
  api::Ipv4 first = *(*ipam)->allocate("a");
  ASSERT_TRUE((*ipam)->release("a"));
  api::Ipv4 second = *(*ipam)->allocate("b");
  EXPECT_EQ(second, first + 1);
}

TEST_F(IpamTest, AllocationsAndQuarantineSurviveReopening) {
  api::Ipv4 kept;
  api::Ipv4 released;
  {
    auto ipam = Ipam::open(options(), clock_);
    ASSERT_TRUE(ipam);
    kept = *(*ipam)->allocate("kept");
    released = *(*ipam)->allocate("released");
    ASSERT_TRUE((*ipam)->release("released"));
  }  // As after kill -9: nothing but the file remains.
  auto reopened = Ipam::open(options(), clock_);
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ((*reopened)->addressOf("kept"), kept);
  EXPECT_EQ((*reopened)->quarantined().count(released), 1u);
  for (int i = 0; i < 4; ++i) {
    auto address = (*reopened)->allocate("new-" + std::to_string(i));
    ASSERT_TRUE(address);
    EXPECT_NE(*address, released);
    EXPECT_NE(*address, kept);
  }
}

TEST_F(IpamTest, RefusesBlocksWithoutTwoUsableAddresses) {
  auto ipam = Ipam::open(options("10.64.1.0/31"), clock_);
  ASSERT_FALSE(ipam);
  EXPECT_EQ(ipam.error().code(), ErrorCode::kInvalidArgument);
}

TEST(Cidr, ParsesFormatsAndSplitsBlocks) {
  auto cidr = api::parseCidr("10.64.0.0/16");
  ASSERT_TRUE(cidr);
  EXPECT_EQ(cidr->toString(), "10.64.0.0/16");
  EXPECT_TRUE(cidr->contains(ip("10.64.255.255")));
  EXPECT_FALSE(cidr->contains(ip("10.65.0.0")));
  EXPECT_EQ(api::subBlock(*cidr, 24, 3)->toString(), "10.64.3.0/24");
  EXPECT_FALSE(api::subBlock(*cidr, 24, 256));
  EXPECT_FALSE(api::parseCidr("10.64.0.1/16"));  // Host bits set.
  EXPECT_FALSE(api::parseCidr("10.64.0.0/33"));
  EXPECT_FALSE(api::parseCidr("10.064.0.0/16"));
  EXPECT_FALSE(api::parseCidr("256.0.0.0/8"));
  EXPECT_EQ(api::parseCidr("1.2.3.4")->prefix, 32);
}

}  // namespace
}  // namespace skiff::agent::network
