#include "agent/image/reference.h"

#include <gtest/gtest.h>

namespace skiff::agent::image {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(ImageReferenceTest, BareNameUsesDefaultRegistryAndLatest) {
  auto ref = ImageReference::parse("busybox");
  ASSERT_TRUE(ref) << ref.error().message();
  EXPECT_EQ(ref->registry(), "docker.io");
  EXPECT_EQ(ref->apiHost(), "registry-1.docker.io");
  EXPECT_EQ(ref->repository(), "library/busybox");
  EXPECT_EQ(ref->tag(), "latest");
  EXPECT_EQ(ref->str(), "docker.io/library/busybox:latest");
  EXPECT_EQ(ref->manifestReference(), "latest");
}

TEST(ImageReferenceTest, ConfiguredDefaultRegistryGetsNoLibraryPrefix) {
  auto ref = ImageReference::parse("team/app:1.2", {.defaultRegistry = "127.0.0.1:5000"});
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->registry(), "127.0.0.1:5000");
  EXPECT_EQ(ref->repository(), "team/app");
  EXPECT_EQ(ref->tag(), "1.2");
  auto single = ImageReference::parse("app", {.defaultRegistry = "mirror.local"});
  ASSERT_TRUE(single);
  EXPECT_EQ(single->repository(), "app");
}

TEST(ImageReferenceTest, HostWithPortAndDeepPath) {
  auto ref = ImageReference::parse("127.0.0.1:5000/a/b/c:v1-rc.2");
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->registry(), "127.0.0.1:5000");
  EXPECT_EQ(ref->hostName(), "127.0.0.1");
  EXPECT_EQ(ref->repository(), "a/b/c");
  EXPECT_EQ(ref->tag(), "v1-rc.2");
  EXPECT_EQ(ref->name(), "127.0.0.1:5000/a/b/c");
}

TEST(ImageReferenceTest, LocalhostAndIpv6Hosts) {
  auto local = ImageReference::parse("localhost/app");
  ASSERT_TRUE(local);
  EXPECT_EQ(local->registry(), "localhost");
  EXPECT_EQ(local->hostName(), "localhost");
  auto v6 = ImageReference::parse("[::1]:5000/app:x");
  ASSERT_TRUE(v6) << v6.error().message();
  EXPECT_EQ(v6->registry(), "[::1]:5000");
  EXPECT_EQ(v6->hostName(), "::1");
  EXPECT_TRUE(isLoopbackHost(v6->hostName()));
}

TEST(ImageReferenceTest, DigestWinsOverTag) {
  auto ref = ImageReference::parse("r.io/app:v1@" + kDigest);
  ASSERT_TRUE(ref);
  EXPECT_EQ(ref->tag(), "v1");
  ASSERT_TRUE(ref->digest());
  EXPECT_EQ(ref->manifestReference(), kDigest);
  auto pinned = ImageReference::parse("r.io/app@" + kDigest);
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->tag(), "");
  EXPECT_EQ(pinned->str(), "r.io/app@" + kDigest);
  EXPECT_EQ(ref->withDigest(*ref->digest()).str(), "r.io/app@" + kDigest);
}

TEST(ImageReferenceTest, RejectsMalformed) {
  for (const std::string& bad : std::vector<std::string>{
           "", "UPPER/app", "r.io/app:", "r.io/app:-bad", "r.io//app", "r.io/app@",
           "r.io/app@sha256:abc", "r.io/app@md5:" + std::string(32, 'a'), "r.io:port/app", "app/",
           "a..b", "[::1/app", "r.io/a:b:c"}) {
    auto ref = ImageReference::parse(bad);
    EXPECT_FALSE(ref) << bad;
    if (!ref) {
      EXPECT_EQ(ref.error().code(), ErrorCode::kInvalidArgument);
    }
  }
}

TEST(ImageReferenceTest, SeparatorsInComponents) {
  EXPECT_TRUE(ImageReference::parse("r.io/a_b/c__d/e-f/g--h/i.j"));
  EXPECT_FALSE(ImageReference::parse("r.io/a___b"));
  EXPECT_FALSE(ImageReference::parse("r.io/a.-b"));
  EXPECT_FALSE(ImageReference::parse("r.io/-a"));
}

TEST(ImageReferenceTest, Loopback) {
  EXPECT_TRUE(isLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(isLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(isLoopbackHost("localhost"));
  EXPECT_TRUE(isLoopbackHost("::1"));
  EXPECT_FALSE(isLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(isLoopbackHost("registry.example.com"));
  EXPECT_FALSE(isLoopbackHost("128.0.0.1"));
}

}  // namespace
}  // namespace skiff::agent::image
