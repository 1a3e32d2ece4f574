// Signing keys, JWTs, task-identity verification and role credentials, with a manual clock.

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/encoding.h"
#include "controlplane/identity/identity_service.h"
#include "controlplane/identity/jwt.h"
#include "controlplane/identity/signing_keys.h"

namespace skiff::identity {
namespace {

using nlohmann::json;

// A temporary directory removed when the test ends, also when it fails.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "skiff-identity-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

TaskIdentity sampleTask() {
  return {"job-1-0-0", "job-1", "billing", "billing-role", "10.64.0.7", "node-a"};
}

// Replaces the claims part of a JWT, keeping header and signature.
std::string withClaims(const std::string& token, const json& claims) {
  size_t first = token.find('.');
  size_t second = token.find('.', first + 1);
  return token.substr(0, first + 1) + base64UrlEncode(claims.dump()) + token.substr(second);
}

json claimsOf(const std::string& token) {
  size_t first = token.find('.');
  size_t second = token.find('.', first + 1);
  return json::parse(*base64UrlDecode(token.substr(first + 1, second - first - 1)));
}

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ring = KeyRing::inMemory(clock);
    ASSERT_TRUE(ring) << ring.error().message();
    keys = std::move(*ring);
    service = std::make_unique<IdentityService>(*keys, clock);
  }
  std::string issue(const TaskIdentity& identity = sampleTask()) {
    auto issued = service->issueTaskToken(identity);
    EXPECT_TRUE(issued) << issued.error().message();
    return issued ? issued->token : std::string();
  }

  ManualClock clock;
  std::unique_ptr<KeyRing> keys;
  std::unique_ptr<IdentityService> service;
};

TEST(Base64Url, RoundTripsEveryLengthWithoutPadding) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    std::string encoded = base64UrlEncode(data);
    EXPECT_EQ(encoded.find('='), std::string::npos);
    EXPECT_EQ(encoded.find('+'), std::string::npos);
    EXPECT_EQ(encoded.find('/'), std::string::npos);
    auto decoded = base64UrlDecode(encoded);
    ASSERT_TRUE(decoded) << i;
    EXPECT_EQ(*decoded, data);
    data.push_back(static_cast<char>(0xf0 + i));
  }
}

TEST(Base64Url, RejectsForeignCharactersAndPadding) {
  EXPECT_FALSE(base64UrlDecode("ab+c"));
  EXPECT_FALSE(base64UrlDecode("abc="));
  EXPECT_FALSE(base64UrlDecode("abcde"));
  EXPECT_EQ(*base64UrlDecode("-_8"), std::string("\xfb\xff", 2));
  // "-_9" differs from "-_8" only in bits that carry no data.
  EXPECT_FALSE(base64UrlDecode("-_9"));
}

TEST(KeyRing, CreatesAPrivateKeyFileOnFirstStartAndReloadsIt) {
  TempDir dir;
  ManualClock clock;
  std::string keyDir = dir.path + "/identity";
  auto first = KeyRing::loadOrCreate(keyDir, clock);
  ASSERT_TRUE(first) << first.error().message();
  std::string kid = (*first)->active()->kid();

  struct stat info {};
  ASSERT_EQ(::stat(keyDir.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700u);
  std::string file = keyDir + "/ed25519-" + std::to_string(clock.nowMs()) + ".pem";
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  auto again = KeyRing::loadOrCreate(keyDir, clock);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)->active()->kid(), kid);
  EXPECT_EQ((*again)->keys().size(), 1u);
}

TEST(KeyRing, RefusesAKeyFileOthersCanRead) {
  TempDir dir;
  ManualClock clock;
  std::string keyDir = dir.path + "/identity";
  ASSERT_TRUE(KeyRing::loadOrCreate(keyDir, clock));
  std::string file = keyDir + "/ed25519-" + std::to_string(clock.nowMs()) + ".pem";
  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  auto reloaded = KeyRing::loadOrCreate(keyDir, clock);
  ASSERT_FALSE(reloaded);
  EXPECT_NE(reloaded.error().message().find("chmod 600"), std::string::npos);
}

TEST(KeyRing, RotationKeepsOldKeysVerifyingUntilTheyArePruned) {
  TempDir dir;
  ManualClock clock;
  auto ring = KeyRing::loadOrCreate(dir.path + "/identity", clock);
  ASSERT_TRUE(ring);
  KeyRing& keys = **ring;
  IdentityService service(keys, clock);
  auto oldToken = service.issueTaskToken(sampleTask());
  ASSERT_TRUE(oldToken);
  std::string oldKid = keys.active()->kid();

  clock.advanceMs(1000);
  auto rotated = keys.rotate(/*retainMs=*/2 * 3600 * 1000);
  ASSERT_TRUE(rotated) << rotated.error().message();
  EXPECT_NE((*rotated)->kid(), oldKid);
  EXPECT_EQ(keys.active()->kid(), (*rotated)->kid());
  EXPECT_EQ(keys.jwks()["keys"].size(), 2u);
  EXPECT_TRUE(service.verifyTaskToken(oldToken->token, "10.64.0.7"));
  auto newToken = service.issueTaskToken(sampleTask());
  EXPECT_EQ(newToken->kid, (*rotated)->kid());

  // A restart sees both keys, the newest active.
  auto reloaded = KeyRing::loadOrCreate(dir.path + "/identity", clock);
  ASSERT_TRUE(reloaded);
  EXPECT_EQ((*reloaded)->active()->kid(), (*rotated)->kid());
  EXPECT_EQ((*reloaded)->keys().size(), 2u);

  // Once the old key was superseded longer ago than the retention, the next rotation drops it.
  clock.advanceMs(3 * 3600 * 1000);
  ASSERT_TRUE(keys.rotate(2 * 3600 * 1000));
  EXPECT_EQ(keys.keys().size(), 2u);
  EXPECT_EQ(keys.find(oldKid), nullptr);
  auto afterPrune = KeyRing::loadOrCreate(dir.path + "/identity", clock);
  EXPECT_EQ((*afterPrune)->keys().size(), 2u);
}

TEST_F(IdentityTest, JwksPublishesOkpEd25519KeysWithThumbprintIds) {
  json jwks = service->jwks();
  ASSERT_EQ(jwks["keys"].size(), 1u);
  const json& jwk = jwks["keys"][0];
  EXPECT_EQ(jwk["kty"], "OKP");
  EXPECT_EQ(jwk["crv"], "Ed25519");
  EXPECT_EQ(jwk["alg"], "EdDSA");
  EXPECT_EQ(jwk["use"], "sig");
  EXPECT_FALSE(jwk.contains("d"));
  auto x = base64UrlDecode(jwk["x"].get<std::string>());
  ASSERT_TRUE(x);
  EXPECT_EQ(x->size(), 32u);
  EXPECT_EQ(jwk["kid"], jwkThumbprint(*x));
}

TEST_F(IdentityTest, JwksKeyAloneVerifiesAnIssuedToken) {
  std::string token = issue();
  json jwk = service->jwks()["keys"][0];
  auto publicKey = SigningKey::fromPublicKey(*base64UrlDecode(jwk["x"].get<std::string>()), 0);
  ASSERT_TRUE(publicKey);
  size_t lastDot = token.rfind('.');
  EXPECT_TRUE(
      (*publicKey)->verify(token.substr(0, lastDot), *base64UrlDecode(token.substr(lastDot + 1))));
}

TEST_F(IdentityTest, TokenCarriesTaskJobApplicationRoleIpAndExpiry) {
  auto issued = service->issueTaskToken(sampleTask());
  ASSERT_TRUE(issued);
  auto claims = service->verifyTaskToken(issued->token, "10.64.0.7");
  ASSERT_TRUE(claims) << claims.error().message();
  EXPECT_EQ((*claims)["task"], "job-1-0-0");
  EXPECT_EQ((*claims)["sub"], "job-1-0-0");
  EXPECT_EQ((*claims)["job"], "job-1");
  EXPECT_EQ((*claims)["application"], "billing");
  EXPECT_EQ((*claims)["role"], "billing-role");
  EXPECT_EQ((*claims)["ip"], "10.64.0.7");
  EXPECT_EQ((*claims)["node"], "node-a");
  EXPECT_EQ((*claims)["exp"].get<int64_t>(), clock.nowMs() / 1000 + 3600);
  EXPECT_EQ(issued->expiresAtMs, (clock.nowMs() / 1000 + 3600) * 1000);
}

TEST_F(IdentityTest, TamperedClaimsAreRefused) {
  std::string token = issue();
  json claims = claimsOf(token);
  claims["role"] = "admin-role";
  auto verified = service->verifyTaskToken(withClaims(token, claims), "10.64.0.7");
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(verified.error().message().find("bad signature"), std::string::npos);
}

TEST_F(IdentityTest, TamperedSignatureIsRefused) {
  std::string token = issue();
  // Flip a character in the middle of the signature: every bit there carries data.
  size_t middle = token.rfind('.') + 20;
  token[middle] = token[middle] == 'A' ? 'B' : 'A';
  auto verified = service->verifyTaskToken(token, "10.64.0.7");
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated);
}

TEST_F(IdentityTest, AlgNoneAndOtherAlgorithmsAreRefused) {
  std::string token = issue();
  std::string claimsPart = token.substr(token.find('.') + 1);
  claimsPart = claimsPart.substr(0, claimsPart.find('.'));
  for (const char* alg : {"none", "HS256", "ES256"}) {
    json header = {{"alg", alg}, {"typ", "JWT"}, {"kid", keys->active()->kid()}};
    std::string forged = base64UrlEncode(header.dump()) + "." + claimsPart + ".";
    auto verified = service->verifyTaskToken(forged, "10.64.0.7");
    ASSERT_FALSE(verified) << alg;
    EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated);
  }
}

TEST_F(IdentityTest, MalformedTokensAreRefusedWithoutThrowing) {
  for (const char* text : {"", "a", "a.b", "a.b.c.d", "..", "e30.e30.", "eyJhbGciOjF9.e30.AA"}) {
    auto verified = service->verifyTaskToken(text, "10.64.0.7");
    ASSERT_FALSE(verified) << text;
    EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated) << text;
  }
}

TEST_F(IdentityTest, ExpiredTokenIsRefused) {
  std::string token = issue();
  clock.advanceMs(3600 * 1000 - 1000);
  EXPECT_TRUE(service->verifyTaskToken(token, "10.64.0.7"));
  clock.advanceMs(1000);
  auto verified = service->verifyTaskToken(token, "10.64.0.7");
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(verified.error().message().find("expired"), std::string::npos);
}

TEST_F(IdentityTest, TokenPresentedFromAnotherIpIsRefused) {
  std::string token = issue();
  auto verified = service->verifyTaskToken(token, "10.64.0.8");
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_FALSE(service->verifyTaskToken(token, "not-an-ip"));
  EXPECT_FALSE(service->verifyTaskToken(token, ""));
  // The same address written as IPv4-mapped IPv6 is the same presenter.
  EXPECT_TRUE(service->verifyTaskToken(token, "::ffff:10.64.0.7"));
}

TEST_F(IdentityTest, TokenFromAnotherSigningKeyIsRefused) {
  ManualClock otherClock;
  auto otherKeys = KeyRing::inMemory(otherClock);
  IdentityService other(**otherKeys, otherClock);
  auto foreign = other.issueTaskToken(sampleTask());
  auto verified = service->verifyTaskToken(foreign->token, "10.64.0.7");
  ASSERT_FALSE(verified);
  EXPECT_NE(verified.error().message().find("unknown key"), std::string::npos);
}

TEST_F(IdentityTest, WrongAudienceOrIssuerIsRefused) {
  IdentityConfig config;
  config.audience = "elsewhere";
  IdentityService elsewhere(*keys, clock, config);
  auto token = elsewhere.issueTaskToken(sampleTask());
  EXPECT_FALSE(service->verifyTaskToken(token->token, "10.64.0.7"));
}

TEST_F(IdentityTest, IssuingNeedsAContainerIp) {
  TaskIdentity identity = sampleTask();
  identity.containerIp = "10.64.0";
  EXPECT_FALSE(service->issueTaskToken(identity));
}

TEST_F(IdentityTest, RoleCredentialsHaveTheAwsSdkShape) {
  SkiffRoleCredentialIssuer issuer(*keys, clock);
  auto credentials = issuer.issue(sampleTask());
  ASSERT_TRUE(credentials) << credentials.error().message();
  json aws = credentials->toAwsJson();
  EXPECT_EQ(aws["Code"], "Success");
  EXPECT_EQ(aws["Type"], "AWS-HMAC");
  std::string keyId = aws["AccessKeyId"];
  EXPECT_EQ(keyId.size(), 20u);
  EXPECT_TRUE(keyId.starts_with("ASIA"));
  EXPECT_EQ(aws["SecretAccessKey"].get<std::string>().size(), 40u);
  EXPECT_EQ(aws["LastUpdated"], "2023-11-14T22:13:20Z");  // ManualClock's default start.
  EXPECT_EQ(aws["Expiration"], "2023-11-14T23:13:20Z");
  EXPECT_EQ(aws.size(), 7u);

  // The session token is a signed JWT naming the role and key, never the secret, and is not
  // accepted as a task identity.
  std::string token = aws["Token"];
  auto session = decodeAndVerify(token, *keys, "skiff-session+jwt");
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_EQ(session->claims["role"], "billing-role");
  EXPECT_EQ(session->claims["akid"], keyId);
  EXPECT_EQ(token.find(aws["SecretAccessKey"].get<std::string>()), std::string::npos);
  EXPECT_FALSE(service->verifyTaskToken(token, "10.64.0.7"));

  auto second = issuer.issue(sampleTask());
  EXPECT_NE(second->accessKeyId, credentials->accessKeyId);
  EXPECT_NE(second->secretAccessKey, credentials->secretAccessKey);
}

TEST_F(IdentityTest, NoCredentialsWithoutARole) {
  SkiffRoleCredentialIssuer issuer(*keys, clock);
  TaskIdentity identity = sampleTask();
  identity.role.clear();
  auto credentials = issuer.issue(identity);
  ASSERT_FALSE(credentials);
  EXPECT_EQ(credentials.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace skiff::identity
