// RegistryClient against a small in-process HTTP server: the bearer-token round trip, token
// caching, realm checks, verification of manifests and blobs. Needs neither root nor a registry.

#include "agent/image/registry_client.h"

#include <atomic>
#include <mutex>

#include <gtest/gtest.h>

#include "agent/image/fs_util.h"
#include "agent/image/manifest.h"
#include "testing/fake_http_server.h"
#include "testing/local_registry.h"

namespace skiff::agent::image {
namespace {

using testing::FakeHttpServer;
using testing::TempDir;

// Serves one repository ("demo/app") behind bearer-token auth, like Docker Hub: every /v2/
// request without the right token gets a 401 challenge naming the realm on this server.
class TokenRegistry {
 public:
  TokenRegistry() : server_([this](const FakeHttpServer::Request& r) { return handle(r); }) {}

  std::string host() const { return server_.host(); }
  std::string realm() const { return "http://" + server_.host() + "/token"; }

  void putBlob(const std::string& bytes) { blobs_[sha256Of(bytes).str()] = bytes; }
  void putTamperedBlob(const Digest& claimed, const std::string& bytes) {
    blobs_[claimed.str()] = bytes;
  }
  void putManifest(const std::string& ref, const std::string& bytes, std::string type) {
    manifests_[ref] = {bytes, std::move(type)};
  }

  std::atomic<int> tokenRequests{0};
  std::atomic<int> unauthorized{0};
  std::string realmOverride;      // Sent in challenges instead of realm().
  std::string lyingDigestHeader;  // Sent as Docker-Content-Digest instead of the real one.
  std::mutex mutex;
  std::string lastService;    // Guarded by mutex.
  std::string lastScope;      // Guarded by mutex.
  std::string lastTokenAuth;  // Guarded by mutex.

 private:
  FakeHttpServer::Response handle(const FakeHttpServer::Request& r) {
    if (r.path == "/token") {
      ++tokenRequests;
      std::lock_guard lock(mutex);
      lastService = testing::queryParam(r.query, "service");
      lastScope = testing::queryParam(r.query, "scope");
      auto auth = r.headers.find("authorization");
      lastTokenAuth = auth == r.headers.end() ? "" : auth->second;
      return {
          200, {{"Content-Type", "application/json"}}, R"({"token":"tok-123","expires_in":300})"};
    }
    auto auth = r.headers.find("authorization");
    if (auth == r.headers.end() || auth->second != "Bearer tok-123") {
      ++unauthorized;
      std::string realm = realmOverride.empty() ? this->realm() : realmOverride;
      return {401,
              {{"WWW-Authenticate", "Bearer realm=\"" + realm +
                                        "\",service=\"fake-registry\",scope=\"repository:demo/"
                                        "app:pull\""}},
              R"({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})"};
    }
    const std::string manifestsPrefix = "/v2/demo/app/manifests/";
    const std::string blobsPrefix = "/v2/demo/app/blobs/";
    if (r.path.starts_with(manifestsPrefix)) {
      auto it = manifests_.find(r.path.substr(manifestsPrefix.size()));
      if (it == manifests_.end()) {
        return {
            404, {}, R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})"};
      }
      std::string digest =
          lyingDigestHeader.empty() ? sha256Of(it->second.first).str() : lyingDigestHeader;
      return {200,
              {{"Content-Type", it->second.second}, {"Docker-Content-Digest", digest}},
              it->second.first};
    }
    if (r.path.starts_with(blobsPrefix)) {
      auto it = blobs_.find(r.path.substr(blobsPrefix.size()));
      if (it == blobs_.end()) {
        return {404, {}, R"({"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]})"};
      }
      return {200, {{"Content-Type", "application/octet-stream"}}, it->second};
    }
    return {404, {}, ""};
  }

  std::map<std::string, std::string> blobs_;
  std::map<std::string, std::pair<std::string, std::string>> manifests_;
  FakeHttpServer server_;  // Last: it stops before the maps go.
};

ImageReference ref(const TokenRegistry& registry, const std::string& rest) {
  return *ImageReference::parse(registry.host() + "/demo/app" + rest);
}

TEST(RegistryClientTest, BearerTokenRoundTripAndCaching) {
  TokenRegistry registry;
  std::string manifest = R"({"schemaVersion":2,"config":{"digest":"sha256:)" +
                         std::string(64, 'c') + R"(","size":1},"layers":[]})";
  registry.putManifest("v1", manifest, std::string(media_type::kOciManifest));
  registry.putManifest(sha256Of(manifest).str(), manifest, std::string(media_type::kOciManifest));
  RegistryClient client;
  auto fetched = client.fetchManifest(ref(registry, ":v1"));
  ASSERT_TRUE(fetched) << fetched.error().message();
  EXPECT_EQ(fetched->bytes, manifest);
  EXPECT_EQ(fetched->digest, sha256Of(manifest));
  EXPECT_EQ(fetched->mediaType, media_type::kOciManifest);
  EXPECT_EQ(registry.tokenRequests.load(), 1);
  EXPECT_EQ(client.tokenRequests(), 1);
  {
    std::lock_guard lock(registry.mutex);
    EXPECT_EQ(registry.lastService, "fake-registry");
    EXPECT_EQ(registry.lastScope, "repository:demo/app:pull");
    EXPECT_EQ(registry.lastTokenAuth, "");  // Anonymous: no credentials configured.
  }
  // The token is cached: later requests go straight through.
  int before = registry.unauthorized.load();
  ASSERT_TRUE(client.fetchManifest(ref(registry, ":v1")));
  ASSERT_TRUE(client.fetchManifest(ref(registry, "@" + sha256Of(manifest).str())));
  EXPECT_EQ(registry.tokenRequests.load(), 1);
  EXPECT_EQ(registry.unauthorized.load(), before);
}

TEST(RegistryClientTest, TokenRequestCarriesConfiguredCredentials) {
  TokenRegistry registry;
  registry.putManifest("v1", R"({"schemaVersion":2,"manifests":[]})",
                       std::string(media_type::kOciIndex));
  RegistryClientOptions options;
  options.credentials[registry.host()] = {"alice", "s3cret"};
  RegistryClient client(options);
  ASSERT_TRUE(client.fetchManifest(ref(registry, ":v1")));
  std::lock_guard lock(registry.mutex);
  EXPECT_EQ(registry.lastTokenAuth, "Basic YWxpY2U6czNjcmV0");
}

TEST(RegistryClientTest, PlainHttpRealmOnRemoteHostIsRefused) {
  TokenRegistry registry;
  registry.realmOverride = "http://auth.example.com/token";
  registry.putManifest("v1", "{}", "application/json");
  RegistryClient client;
  auto fetched = client.fetchManifest(ref(registry, ":v1"));
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(fetched.error().message().find("https"), std::string::npos);
  EXPECT_EQ(registry.tokenRequests.load(), 0);
}

TEST(RegistryClientTest, UnknownManifestIsNotFoundWithTheRegistrysReason) {
  TokenRegistry registry;
  RegistryClient client;
  auto fetched = client.fetchManifest(ref(registry, ":nope"));
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fetched.error().message().find("MANIFEST_UNKNOWN"), std::string::npos);
}

TEST(RegistryClientTest, ManifestDigestsAreVerified) {
  TokenRegistry registry;
  std::string manifest = R"({"schemaVersion":2,"manifests":[]})";
  Digest other = sha256Of("something else");
  registry.putManifest(other.str(), manifest, std::string(media_type::kOciIndex));
  RegistryClient client;
  auto byDigest = client.fetchManifest(ref(registry, "@" + other.str()));
  ASSERT_FALSE(byDigest);
  EXPECT_TRUE(isDigestMismatch(byDigest.error())) << byDigest.error().message();
  EXPECT_NE(byDigest.error().message().find(other.str()), std::string::npos);

  registry.putManifest("v1", manifest, std::string(media_type::kOciIndex));
  registry.lyingDigestHeader = other.str();
  auto lying = client.fetchManifest(ref(registry, ":v1"));
  ASSERT_FALSE(lying);
  EXPECT_TRUE(isDigestMismatch(lying.error())) << lying.error().message();
}

TEST(RegistryClientTest, BlobsAreVerifiedAndNothingIsLeftOnMismatch) {
  TokenRegistry registry;
  TempDir dir;
  std::string good = std::string(300000, 'x') + "end";
  registry.putBlob(good);
  Digest goodDigest = sha256Of(good);
  Digest claimed = sha256Of("the real content");
  registry.putTamperedBlob(claimed, "the evil content");
  RegistryClient client;
  auto repo = ref(registry, ":v1");

  ASSERT_TRUE(client.fetchBlob(
      repo, {goodDigest, static_cast<int64_t>(good.size()), dir.path() + "/good"}));
  EXPECT_EQ(*fs::readFile(dir.path() + "/good"), good);

  Status bad = client.fetchBlob(repo, {claimed, 16, dir.path() + "/bad"});
  ASSERT_FALSE(bad);
  EXPECT_TRUE(isDigestMismatch(bad.error())) << bad.error().message();
  EXPECT_NE(bad.error().message().find(claimed.str()), std::string::npos);
  EXPECT_EQ(fs::listDir(dir.path()), std::vector<std::string>{"good"});

  // More bytes than the descriptor says: aborted, nothing left.
  Status tooBig = client.fetchBlob(repo, {goodDigest, 1000, dir.path() + "/big"});
  ASSERT_FALSE(tooBig);
  EXPECT_EQ(tooBig.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(fs::listDir(dir.path()), std::vector<std::string>{"good"});

  Status missing = client.fetchBlob(repo, {sha256Of("nope"), -1, dir.path() + "/missing"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(RegistryClientTest, ParallelBlobFetchesCallBackForEach) {
  TokenRegistry registry;
  TempDir dir;
  std::vector<BlobRequest> requests;
  for (int i = 0; i < 6; ++i) {
    std::string blob = "blob number " + std::to_string(i) + std::string(50000, 'a' + i);
    registry.putBlob(blob);
    requests.push_back(
        {sha256Of(blob), static_cast<int64_t>(blob.size()), dir.path() + "/b" + std::to_string(i)});
  }
  RegistryClient client;
  std::mutex mutex;
  std::vector<size_t> done;
  Status s = client.fetchBlobs(ref(registry, ":v1"), requests, 3, [&](size_t i) -> Status {
    std::lock_guard lock(mutex);
    done.push_back(i);
    return {};
  });
  ASSERT_TRUE(s) << s.error().message();
  std::sort(done.begin(), done.end());
  EXPECT_EQ(done, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(registry.tokenRequests.load(), 1);
}

TEST(RegistryClientTest, UnreachableRegistryIsUnavailable) {
  // A loopback port nobody listens on (the fake server's, after it stopped).
  std::string host;
  {
    TokenRegistry gone;
    host = gone.host();
  }
  RegistryClientOptions options;
  options.retries = 0;
  RegistryClient client(options);
  auto fetched = client.fetchManifest(*ImageReference::parse(host + "/demo/app:v1"));
  ASSERT_FALSE(fetched);
  EXPECT_EQ(fetched.error().code(), ErrorCode::kUnavailable);
}

// What each registry answer means for a task: definitive answers end it, others are retried.
TEST(RegistryClientTest, PullErrorsAreClassifiedByWhatTheRegistryAnswered) {
  struct Row {
    int status;
    std::string code;  // The registry's error code; none: an empty body.
    PullFailure expected;
  };
  const Row kRows[] = {
      {404, "MANIFEST_UNKNOWN", PullFailure::kNotFound},
      {404, "NAME_UNKNOWN", PullFailure::kNotFound},
      {400, "NAME_INVALID", PullFailure::kNotFound},
      {401, "UNAUTHORIZED", PullFailure::kDenied},
      {403, "DENIED", PullFailure::kDenied},
      {429, "TOOMANYREQUESTS", PullFailure::kTransient},
      {500, "", PullFailure::kTransient},
      {503, "", PullFailure::kTransient},
  };
  for (const Row& row : kRows) {
    std::string body = row.code.empty() ? std::string()
                                        : R"({"errors":[{"code":")" + row.code +
                                              R"(","message":"the registry's words"}]})";
    FakeHttpServer server([&](const FakeHttpServer::Request&) -> FakeHttpServer::Response {
      return {row.status, {{"Content-Type", "application/json"}}, body};
    });
    RegistryClientOptions options;
    options.retries = 0;
    RegistryClient client(options);
    auto fetched = client.fetchManifest(*ImageReference::parse(server.host() + "/demo/app:v1"));
    ASSERT_FALSE(fetched) << row.status;
    EXPECT_EQ(classifyPullError(fetched.error()), row.expected)
        << row.status << ": " << fetched.error().message();
    // The registry's own words reach the task's message (a 401 without a challenge says so).
    if (row.status == 401) continue;
    EXPECT_NE(fetched.error().message().find(row.code + (row.code.empty() ? "" : ": the registry")),
              std::string::npos)
        << fetched.error().message();
  }
}

TEST(RegistryClientTest, AnUnreachableRegistryIsATransientPullFailure) {
  std::string host;
  {
    TokenRegistry gone;
    host = gone.host();
  }
  RegistryClientOptions options;
  options.retries = 0;
  RegistryClient client(options);
  auto fetched = client.fetchManifest(*ImageReference::parse(host + "/demo/app:v1"));
  ASSERT_FALSE(fetched);
  EXPECT_EQ(classifyPullError(fetched.error()), PullFailure::kTransient);
  EXPECT_EQ(classifyPullError(Error(ErrorCode::kInvalidArgument, "digest mismatch")),
            PullFailure::kLocal);
}

}  // namespace
}  // namespace skiff::agent::image
