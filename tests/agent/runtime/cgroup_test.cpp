#include "agent/runtime/cgroup.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "testing/requirements.h"

namespace skiff::agent::runtime {
namespace {

// This machine's layout: v1 hierarchies plus a cgroup2 mount at /sys/fs/cgroup/unified.
constexpr const char* kHybrid =
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

constexpr const char* kV1 =
    "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory\n"
    "27 24 0:24 / /sys/fs/cgroup/hugetlb rw,nosuid shared:11 - cgroup cgroup rw,hugetlb\n";

constexpr const char* kV2 =
    "30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

TEST(CgroupDetect, Hybrid) {
  auto layout = detectCgroupLayout(kHybrid);
  ASSERT_TRUE(layout) << layout.error().message();
  EXPECT_EQ(layout->mode, CgroupMode::kHybrid);
  EXPECT_EQ(layout->v2Mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(layout->v1Mounts.at("memory"), "/sys/fs/cgroup/memory");
  EXPECT_TRUE(layout->hasV1Controller("name=systemd"));
  EXPECT_FALSE(layout->hasV1Controller("hugetlb"));
  // crun refuses hybrid hosts without a v1 hugetlb hierarchy; runc is the fallback.
  EXPECT_TRUE(crunIncompatibility(*layout).has_value());
  auto oom = oomCounterFile(*layout, "/skiff/c1");
  ASSERT_TRUE(oom);
  EXPECT_EQ(*oom, "/sys/fs/cgroup/memory/skiff/c1/memory.oom_control");
}

TEST(CgroupDetect, HybridWithHugetlbIsFineForCrun) {
  std::string text =
      std::string(kHybrid) + "42 31 0:39 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb\n";
  auto layout = detectCgroupLayout(text);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->mode, CgroupMode::kHybrid);
  EXPECT_FALSE(crunIncompatibility(*layout).has_value());
}

TEST(CgroupDetect, PureV1WithCoMountedControllers) {
  auto layout = detectCgroupLayout(kV1);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->mode, CgroupMode::kV1);
  EXPECT_EQ(layout->v1Mounts.at("cpu"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(layout->v1Mounts.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_FALSE(crunIncompatibility(*layout).has_value());
  EXPECT_EQ(cgroupDirs(*layout, "/skiff/x").size(), 3u);
}

TEST(CgroupDetect, PureV2) {
  auto layout = detectCgroupLayout(kV2);
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->mode, CgroupMode::kV2);
  EXPECT_EQ(layout->v2Mount, "/sys/fs/cgroup");
  auto oom = oomCounterFile(*layout, "/skiff/c1");
  ASSERT_TRUE(oom);
  EXPECT_EQ(*oom, "/sys/fs/cgroup/skiff/c1/memory.events");
}

TEST(CgroupDetect, NoCgroupsIsAnError) {
  auto layout = detectCgroupLayout("22 28 0:21 / /sys rw - sysfs sysfs rw\n");
  ASSERT_FALSE(layout);
  EXPECT_EQ(layout.error().code(), ErrorCode::kFailedPrecondition);
}

TEST(CgroupDetect, EscapedMountPointAndGarbageLines) {
  auto layout =
      detectCgroupLayout("garbage\n\n31 23 0:28 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(layout);
  EXPECT_EQ(layout->v2Mount, "/sys/fs/my cgroup");
}

TEST(CgroupDetect, ThisHost) {
  auto layout = detectHostCgroupLayout();
  SKIFF_REQUIRE(layout, "no usable cgroup hierarchy: " << layout.error().message());
  SUCCEED() << "host cgroup mode: " << cgroupModeName(layout->mode);
}

TEST(CgroupDetect, HugetlbGoesBesideTheOtherV1Hierarchies) {
  auto hybrid = detectCgroupLayout(kHybrid);
  ASSERT_TRUE(hybrid);
  EXPECT_EQ(v1MountPointFor(*hybrid, "hugetlb"), "/sys/fs/cgroup/hugetlb");
  auto v2 = detectCgroupLayout(kV2);
  ASSERT_TRUE(v2);
  EXPECT_EQ(v1MountPointFor(*v2, "hugetlb"), "");
  auto refused = mountV1Hierarchy(*hybrid, "not-a-controller");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
}

TEST(OomCounter, ParsesV1AndV2) {
  EXPECT_EQ(parseOomKillCount("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2u);
  EXPECT_EQ(parseOomKillCount("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"), 1u);
  EXPECT_EQ(parseOomKillCount("oom_kill_disable 0\nunder_oom 0\n"), std::nullopt);
  EXPECT_EQ(parseOomKillCount("oom_kill x\n"), std::nullopt);
}

TEST(FavorDynmods, RemountDataKeepsTheOtherSuperblockOptions) {
  EXPECT_EQ(favorDynmodsRemountData("rw"), "favordynmods");
  EXPECT_EQ(favorDynmodsRemountData("rw,nsdelegate,memory_recursiveprot"),
            "nsdelegate,memory_recursiveprot,favordynmods");
  EXPECT_EQ(favorDynmodsRemountData("rw,nsdelegate,favordynmods"), std::nullopt)
      << "already set: no remount";
}

TEST(CpuUsage, ParsesTheUsageLineOfCpuStat) {
  constexpr std::string_view kCpuStat =
      "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\n";
  EXPECT_EQ(parseKeyedCounter(kCpuStat, "usage_usec"), 123456u);
  EXPECT_EQ(parseKeyedCounter(kCpuStat, "system_usec"), 23456u);
  EXPECT_EQ(parseKeyedCounter(kCpuStat, "usage"), std::nullopt) << "whole keys only";
  EXPECT_EQ(parseKeyedCounter("usage_usec -1\n", "usage_usec"), std::nullopt);
}

TEST(CpuUsage, ReadsTheCpuTimeOfARealCgroup) {
  auto layout = detectHostCgroupLayout();
  SKIFF_REQUIRE(layout, "no usable cgroup hierarchy: " << layout.error().message());
  // The agent's own cgroup has used CPU time; an absent one is kNotFound.
  auto missing = readCpuUsageNs(*layout, "/skiff-no-such-cgroup-" + std::to_string(getpid()));
  ASSERT_FALSE(missing);
  SKIFF_REQUIRE(missing.error().code() != ErrorCode::kFailedPrecondition,
                "no CPU accounting: " << missing.error().message());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound) << missing.error().message();
  auto root = readCpuUsageNs(*layout, "/");
  ASSERT_TRUE(root) << root.error().message();
  EXPECT_GT(*root, 0u);
}

}  // namespace
}  // namespace skiff::agent::runtime
