// IMDSv2 rules, the token scheme and the credential cache, without sockets, on a manual clock.

#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/metadata/identity_provider.h"
#include "agent/metadata/imds_handler.h"
#include "common/clock.h"
#include "testing/fake_identity_provider.h"

namespace skiff::agent::metadata {
namespace {

using nlohmann::json;
using skiff::testing::FakeIdentityProvider;
using Method = ImdsRequest::Method;

TaskMetadata taskA() {
  TaskMetadata task;
  task.taskId = "job-a-0-0";
  task.jobId = "job-a";
  task.applicationName = "billing";
  task.iamRole = "billing-role";
  task.ipv4 = "10.64.0.7";
  task.nodeId = "node-1";
  task.availabilityZone = "zone-b";
  task.region = "skiff-1";
  task.imageId = "registry/app@sha256:abc";
  task.launchTimeMs = 1'700'000'000'000;
  return task;
}

class ImdsTest : public ::testing::Test {
 protected:
  ImdsTest()
      : upstream(std::make_shared<FakeIdentityProvider>(clock)),
        cache(upstream, clock),
        handler(tokens, cache, clock) {}

  ImdsResponse call(const TaskMetadata& task, ImdsRequest request) {
    auto response = handler.handle(task, request, true);
    EXPECT_TRUE(response.has_value());
    return response ? *response : ImdsResponse{};
  }
  ImdsResponse put(std::optional<std::string> ttl, const TaskMetadata& task = taskA()) {
    ImdsRequest request;
    request.method = Method::kPut;
    request.target = "/latest/api/token";
    request.ttlSeconds = std::move(ttl);
    return call(task, request);
  }
  std::string token(const TaskMetadata& task = taskA(), int ttl = 21600) {
    auto response = put(std::to_string(ttl), task);
    EXPECT_EQ(response.status, 200u);
    return response.body;
  }
  ImdsResponse get(const std::string& path, std::optional<std::string> token,
                   const TaskMetadata& task = taskA()) {
    ImdsRequest request;
    request.target = path;
    request.token = std::move(token);
    return call(task, request);
  }

  ManualClock clock;
  std::shared_ptr<FakeIdentityProvider> upstream;
  ImdsTokens tokens;
  CachingIdentityProvider cache;
  ImdsHandler handler;
};

TEST_F(ImdsTest, TokenTtlMustBeBetween1And21600Seconds) {
  EXPECT_EQ(put(std::nullopt).status, 400u);
  EXPECT_EQ(put("").status, 400u);
  EXPECT_EQ(put("0").status, 400u);
  EXPECT_EQ(put("21601").status, 400u);
  EXPECT_EQ(put("-5").status, 400u);
  EXPECT_EQ(put("12abc").status, 400u);
  EXPECT_EQ(put("99999999999999999999999").status, 400u);
  auto one = put("1");
  EXPECT_EQ(one.status, 200u);
  ASSERT_EQ(one.headers.size(), 1u);
  EXPECT_EQ(one.headers[0].first, "X-aws-ec2-metadata-token-ttl-seconds");
  EXPECT_EQ(one.headers[0].second, "1");
  EXPECT_EQ(put("21600").status, 200u);
}

TEST_F(ImdsTest, TokenRequestThroughAForwardingProxyIsForbidden) {
  ImdsRequest request;
  request.method = Method::kPut;
  request.target = "/latest/api/token";
  request.ttlSeconds = "60";
  request.forwarded = true;
  EXPECT_EQ(call(taskA(), request).status, 403u);
}

TEST_F(ImdsTest, TokenPathOnlyTakesPut) {
  EXPECT_EQ(get("/latest/api/token", token()).status, 405u);
}

TEST_F(ImdsTest, GetWithoutTokenIsUnauthorized) {
  EXPECT_EQ(get("/latest/meta-data/instance-id", std::nullopt).status, 401u);
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/billing-role", std::nullopt).status,
            401u);
  EXPECT_EQ(get("/skiff/v1/task-identity", std::nullopt).status, 401u);
}

TEST_F(ImdsTest, GetWithInvalidTokenIsUnauthorized) {
  std::string good = token();
  std::string tampered = good;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_EQ(get("/latest/meta-data/instance-id", tampered).status, 401u);
  EXPECT_EQ(get("/latest/meta-data/instance-id", "").status, 401u);
  EXPECT_EQ(get("/latest/meta-data/instance-id", "garbage").status, 401u);
  // A later expiry with the old signature is not accepted either.
  std::string extended = "9" + good;
  EXPECT_EQ(get("/latest/meta-data/instance-id", extended).status, 401u);
  EXPECT_EQ(get("/latest/meta-data/instance-id", good).status, 200u);
}

TEST_F(ImdsTest, TokenExpiresAfterItsTtl) {
  std::string shortLived = token(taskA(), 2);
  clock.advanceMs(1999);
  EXPECT_EQ(get("/latest/meta-data/instance-id", shortLived).status, 200u);
  clock.advanceMs(1);
  EXPECT_EQ(get("/latest/meta-data/instance-id", shortLived).status, 401u);
}

TEST_F(ImdsTest, TokenIsBoundToTheTaskItWasIssuedIn) {
  TaskMetadata other = taskA();
  other.taskId = "job-b-0-0";
  std::string fromA = token(taskA());
  EXPECT_EQ(get("/latest/meta-data/instance-id", fromA, other).status, 401u);
  EXPECT_EQ(get("/latest/meta-data/instance-id", token(other), other).body, "job-b-0-0");
}

TEST_F(ImdsTest, TokenFromAnotherProxyInstanceIsRefused) {
  ImdsTokens otherKey;
  std::string foreign = otherKey.issue(taskA().taskId, 60, clock.nowMs());
  EXPECT_EQ(get("/latest/meta-data/instance-id", foreign).status, 401u);
}

TEST_F(ImdsTest, ServesMetaDataBasics) {
  std::string t = token();
  EXPECT_EQ(get("/latest/meta-data/instance-id", t).body, "job-a-0-0");
  EXPECT_EQ(get("/latest/meta-data/local-ipv4", t).body, "10.64.0.7");
  EXPECT_EQ(get("/latest/meta-data/placement/availability-zone", t).body, "zone-b");
  EXPECT_EQ(get("/latest/meta-data/placement/region", t).body, "skiff-1");
  EXPECT_EQ(get("/latest/meta-data/hostname", t).body, "job-a-0-0");
  std::string listing = get("/latest/meta-data/", t).body;
  EXPECT_NE(listing.find("instance-id"), std::string::npos);
  EXPECT_NE(listing.find("iam/"), std::string::npos);
  EXPECT_EQ(get("/latest/meta-data/ami-id", t).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/instance-type", t).status, 404u);
  EXPECT_EQ(get("/latest/user-data", t).status, 404u);
}

TEST_F(ImdsTest, ServesTheInstanceIdentityDocument) {
  auto response = get("/latest/dynamic/instance-identity/document", token());
  ASSERT_EQ(response.status, 200u);
  json document = json::parse(response.body);
  EXPECT_EQ(document["instanceId"], "job-a-0-0");
  EXPECT_EQ(document["privateIp"], "10.64.0.7");
  EXPECT_EQ(document["availabilityZone"], "zone-b");
  EXPECT_EQ(document["region"], "skiff-1");
  EXPECT_EQ(document["imageId"], "registry/app@sha256:abc");
  EXPECT_EQ(document["pendingTime"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(document["version"], "2017-09-30");
}

TEST_F(ImdsTest, IamInfoNamesTheInstanceProfile) {
  auto response = get("/latest/meta-data/iam/info", token());
  ASSERT_EQ(response.status, 200u);
  json info = json::parse(response.body);
  EXPECT_EQ(info["Code"], "Success");
  EXPECT_EQ(info["InstanceProfileArn"], "arn:aws:iam::000000000000:instance-profile/billing-role");
}

TEST_F(ImdsTest, SecurityCredentialsListOnlyTheJobsRole) {
  std::string t = token();
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/", t).body, "billing-role");
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials", t).body, "billing-role");
}

TEST_F(ImdsTest, CredentialsForTheJobsRoleHaveTheAwsShape) {
  auto response = get("/latest/meta-data/iam/security-credentials/billing-role", token());
  ASSERT_EQ(response.status, 200u);
  json credentials = json::parse(response.body);
  EXPECT_EQ(credentials["Code"], "Success");
  EXPECT_EQ(credentials["Type"], "AWS-HMAC");
  EXPECT_EQ(credentials["AccessKeyId"], "ASIAFAKE1");
  EXPECT_TRUE(credentials.contains("SecretAccessKey"));
  EXPECT_TRUE(credentials.contains("Token"));
  EXPECT_EQ(credentials["Expiration"], "2023-11-14T23:13:20Z");
}

TEST_F(ImdsTest, AnotherJobsRoleIsNotFound) {
  std::string t = token();
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/admin-role", t).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/billing-role/x", t).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/billing", t).status, 404u);
  EXPECT_EQ(upstream->credentialCalls, 0);
}

TEST_F(ImdsTest, TaskWithoutRoleHasNoIam) {
  TaskMetadata noRole = taskA();
  noRole.iamRole.clear();
  std::string t = token(noRole);
  EXPECT_EQ(get("/latest/meta-data/iam/", t, noRole).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/iam/info", t, noRole).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/", t, noRole).status, 404u);
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/billing-role", t, noRole).status, 404u);
}

TEST_F(ImdsTest, ServesTheTaskIdentityToken) {
  auto response = get("/skiff/v1/task-identity", token());
  ASSERT_EQ(response.status, 200u);
  EXPECT_TRUE(response.body.starts_with("jwt-for-job-a-0-0"));
}

TEST_F(ImdsTest, ColdCacheAsksForABlockingRetry) {
  ImdsRequest request;
  request.target = "/latest/meta-data/iam/security-credentials/billing-role";
  request.token = token();
  EXPECT_FALSE(handler.handle(taskA(), request, false).has_value());
  EXPECT_EQ(upstream->credentialCalls, 0);
  ASSERT_TRUE(handler.handle(taskA(), request, true).has_value());
  auto warm = handler.handle(taskA(), request, false);
  ASSERT_TRUE(warm.has_value());
  EXPECT_EQ(warm->status, 200u);
  EXPECT_EQ(upstream->credentialCalls, 1);
}

TEST_F(ImdsTest, UpstreamOutageWithNothingCachedIs503) {
  upstream->failing = true;
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/billing-role", token()).status, 503u);
}

TEST_F(ImdsTest, OtherMethodsAreNotAllowed) {
  ImdsRequest request;
  request.method = Method::kOther;
  request.target = "/latest/meta-data/instance-id";
  request.token = token();
  EXPECT_EQ(call(taskA(), request).status, 405u);
}

// ---- The cache ----

TEST(CachingIdentityProvider, ServesFromMemoryUntilTheRenewalWindow) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  auto first = cache.roleCredentials(taskA());
  ASSERT_TRUE(first);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(cache.roleCredentials(taskA()));
  EXPECT_EQ(upstream->credentialCalls, 1);

  // 45 minutes in, 15 remain: due for renewal.
  clock.advanceMs(44 * 60 * 1000);
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 1);
  clock.advanceMs(60 * 1000);
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 2);
  auto renewed = cache.cachedRoleCredentials(taskA().taskId);
  ASSERT_TRUE(renewed);
  EXPECT_NE(renewed->body, first->body);
  EXPECT_EQ(renewed->expiresAtMs, clock.nowMs() / 1000 * 1000 + 60 * 60 * 1000);
}

TEST(CachingIdentityProvider, ShortLifetimesRenewAtHalfLife) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock, 10 * 60 * 1000);
  CachingIdentityProvider cache(upstream, clock);
  ASSERT_TRUE(cache.taskIdentity(taskA()));
  clock.advanceMs(5 * 60 * 1000 - 1);
  cache.renewDue();
  EXPECT_EQ(upstream->identityCalls, 1);
  clock.advanceMs(1);
  cache.renewDue();
  EXPECT_EQ(upstream->identityCalls, 2);
}

TEST(CachingIdentityProvider, FailedRenewalKeepsServingAndRetriesAfterAPause) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  ASSERT_TRUE(cache.roleCredentials(taskA()));
  clock.advanceMs(50 * 60 * 1000);
  upstream->failing = true;
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 2);
  // Still valid for 10 minutes: served, and requests do not hammer skiffd.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(cache.roleCredentials(taskA()));
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 2);
  clock.advanceMs(10 * 1000);
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 3);
  upstream->failing = false;
  clock.advanceMs(10 * 1000);
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 4);
  EXPECT_EQ(cache.cachedRoleCredentials(taskA().taskId)->expiresAtMs,
            clock.nowMs() / 1000 * 1000 + 60 * 60 * 1000);
}

TEST(CachingIdentityProvider, ExpiredCredentialsAreNeverServed) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  ASSERT_TRUE(cache.roleCredentials(taskA()));
  upstream->failing = true;
  clock.advanceMs(60 * 60 * 1000);
  EXPECT_FALSE(cache.cachedRoleCredentials(taskA().taskId));
  auto result = cache.roleCredentials(taskA());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
}

TEST(CachingIdentityProvider, NoRoleMeansNoUpstreamCall) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  TaskMetadata noRole = taskA();
  noRole.iamRole.clear();
  auto result = cache.roleCredentials(noRole);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  cache.refresh(noRole);
  EXPECT_EQ(upstream->credentialCalls, 0);
  EXPECT_EQ(upstream->identityCalls, 1);
}

TEST(CachingIdentityProvider, ForgetDropsTheTask) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  cache.refresh(taskA());
  EXPECT_TRUE(cache.cachedRoleCredentials(taskA().taskId));
  cache.forget(taskA().taskId);
  EXPECT_FALSE(cache.cachedRoleCredentials(taskA().taskId));
  clock.advanceMs(2 * 60 * 60 * 1000);
  cache.renewDue();
  EXPECT_EQ(upstream->credentialCalls, 1);
}

TEST(CachingIdentityProvider, RetainOnlyDropsTasksThatAreGone) {
  ManualClock clock;
  auto upstream = std::make_shared<FakeIdentityProvider>(clock);
  CachingIdentityProvider cache(upstream, clock);
  TaskMetadata other = taskA();
  other.taskId = "job-b-0-0";
  cache.refresh(taskA());
  cache.refresh(other);
  cache.retainOnly({other.taskId});
  EXPECT_FALSE(cache.cachedRoleCredentials(taskA().taskId));
  EXPECT_TRUE(cache.cachedRoleCredentials(other.taskId));
}

TEST(RoleCredentialsParsing, RejectsDocumentsMissingFields) {
  json document = {{"Code", "Success"}, {"Type", "AWS-HMAC"}};
  EXPECT_FALSE(parseRoleCredentials(document, "r", 0));
  EXPECT_FALSE(parseIso8601("2023-11-14 22:13:20"));
  EXPECT_EQ(*parseIso8601("2023-11-14T22:13:20Z"), 1'700'000'000'000);
}

TEST(TaskMetadataFromAssignment, ReadsTaskAndJob) {
  json assignment = {
      {"task", {{"id", "t1"}, {"jobId", "j1"}, {"image", "img@sha256:1"}}},
      {"job",
       {{"descriptor",
         {{"applicationName", "app"}, {"container", {{"securityProfile", {{"iamRole", "r"}}}}}}}}}};
  TaskMetadata task =
      taskMetadataFromAssignment(assignment, "10.0.0.2", "n1", "z1", "skiff-1", "m1", 5);
  EXPECT_EQ(task.taskId, "t1");
  EXPECT_EQ(task.jobId, "j1");
  EXPECT_EQ(task.applicationName, "app");
  EXPECT_EQ(task.iamRole, "r");
  EXPECT_EQ(task.imageId, "img@sha256:1");
  EXPECT_EQ(task.ipv4, "10.0.0.2");
  EXPECT_EQ(task.availabilityZone, "z1");
}

}  // namespace
}  // namespace skiff::agent::metadata
