// The proxy over real sockets on loopback (no root needed): each task gets its own listener, and
// a token fetched through one listener is refused on another.

#include "agent/metadata/metadata_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_probe.h"
#include "testing/fake_identity_provider.h"

namespace skiff::agent::metadata {
namespace {

using boost::beast::http::verb;
using skiff::testing::FakeIdentityProvider;
using testing::httpRequest;
using testing::Probe;

// A listening socket on 127.0.0.1 and a free port.
std::pair<int, uint16_t> loopbackListener() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::listen(fd, 128);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return {fd, ntohs(address.sin_port)};
}

TaskMetadata task(const std::string& id, const std::string& role) {
  TaskMetadata metadata;
  metadata.taskId = id;
  metadata.jobId = "job-" + id;
  metadata.iamRole = role;
  metadata.ipv4 = "10.64.0.1";
  metadata.nodeId = "node-1";
  return metadata;
}

class MetadataProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream = std::make_shared<FakeIdentityProvider>(SystemClock::instance());
    MetadataProxyOptions options;
    options.renewIntervalMs = 50;
    auto created = MetadataProxy::create(options, upstream);
    ASSERT_TRUE(created) << created.error().message();
    proxy = std::move(*created);
  }

  uint16_t serve(const TaskMetadata& metadata) {
    auto [fd, port] = loopbackListener();
    auto adopted = proxy->adoptListener(metadata, fd);
    EXPECT_TRUE(adopted) << adopted.error().message();
    return port;
  }

  std::string token(uint16_t port) {
    Probe probe = httpRequest("127.0.0.1", port, verb::put, "/latest/api/token",
                              {{"X-aws-ec2-metadata-token-ttl-seconds", "300"}});
    EXPECT_EQ(probe.status, 200) << probe.error;
    return probe.body;
  }

  std::shared_ptr<FakeIdentityProvider> upstream;
  std::unique_ptr<MetadataProxy> proxy;
};

TEST_F(MetadataProxyTest, ServesTheImdsv2FlowOverHttp) {
  uint16_t port = serve(task("t-a", "role-a"));
  EXPECT_EQ(httpRequest("127.0.0.1", port, verb::put, "/latest/api/token").status, 400);
  EXPECT_EQ(httpRequest("127.0.0.1", port, verb::get, "/latest/meta-data/instance-id").status, 401);
  std::string t = token(port);
  Probe id = httpRequest("127.0.0.1", port, verb::get, "/latest/meta-data/instance-id",
                         {{"X-aws-ec2-metadata-token", t}});
  EXPECT_EQ(id.status, 200);
  EXPECT_EQ(id.body, "t-a");
  Probe credentials =
      httpRequest("127.0.0.1", port, verb::get, "/latest/meta-data/iam/security-credentials/role-a",
                  {{"X-aws-ec2-metadata-token", t}});
  ASSERT_EQ(credentials.status, 200) << credentials.error;
  EXPECT_EQ(nlohmann::json::parse(credentials.body)["Type"], "AWS-HMAC");
  EXPECT_EQ(
      httpRequest("127.0.0.1", port, verb::get, "/latest/meta-data/iam/security-credentials/role-b",
                  {{"X-aws-ec2-metadata-token", t}})
          .status,
      404);
}

TEST_F(MetadataProxyTest, TokenFromOneTasksListenerIsRefusedOnAnother) {
  uint16_t portA = serve(task("t-a", "role-a"));
  uint16_t portB = serve(task("t-b", "role-b"));
  std::string tokenA = token(portA);
  EXPECT_EQ(httpRequest("127.0.0.1", portB, verb::get,
                        "/latest/meta-data/iam/security-credentials/role-b",
                        {{"X-aws-ec2-metadata-token", tokenA}})
                .status,
            401);
  EXPECT_EQ(httpRequest("127.0.0.1", portB, verb::get,
                        "/latest/meta-data/iam/security-credentials/role-a",
                        {{"X-aws-ec2-metadata-token", token(portB)}})
                .status,
            404);
}

TEST_F(MetadataProxyTest, PrefetchesOnAddAndStopsServingOnRemove) {
  uint16_t port = serve(task("t-a", "role-a"));
  for (int i = 0; i < 200 && !proxy->identity().cachedRoleCredentials("t-a"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(proxy->identity().cachedRoleCredentials("t-a"));
  EXPECT_TRUE(proxy->identity().cachedTaskIdentity("t-a"));
  EXPECT_FALSE(proxy->adoptListener(task("t-a", "role-a"), loopbackListener().first));

  ASSERT_TRUE(proxy->removeTask("t-a"));
  EXPECT_FALSE(proxy->hasTask("t-a"));
  EXPECT_FALSE(proxy->identity().cachedRoleCredentials("t-a"));
  Probe after = Probe{};
  for (int i = 0; i < 100; ++i) {
    after = httpRequest("127.0.0.1", port, verb::put, "/latest/api/token",
                        {{"X-aws-ec2-metadata-token-ttl-seconds", "60"}});
    if (after.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(after.status, 0);
  EXPECT_FALSE(proxy->removeTask("t-a"));
}

}  // namespace
}  // namespace skiff::agent::metadata
