#include "agent/image/manifest.h"

#include <gtest/gtest.h>

#include "agent/image/digest.h"
#include "agent/image/registry_client.h"

namespace skiff::agent::image {
namespace {

std::string d(char c) {
  return "sha256:" + std::string(64, c);
}

TEST(DigestTest, ParseAndHash) {
  EXPECT_TRUE(Digest::parse(d('a')));
  EXPECT_FALSE(Digest::parse("sha256:" + std::string(64, 'A')));
  EXPECT_FALSE(Digest::parse("sha512:" + std::string(64, 'a')));
  EXPECT_FALSE(Digest::parse("sha256:abc"));
  // The empty string's SHA-256.
  EXPECT_EQ(sha256Of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 streaming;
  streaming.update("ab");
  streaming.update("c");
  EXPECT_EQ(streaming.finish(), sha256Of("abc"));
}

TEST(DigestTest, MismatchErrorIsRecognizableAndNamesTheDigest) {
  Digest want = *Digest::parse(d('1'));
  Digest got = *Digest::parse(d('2'));
  Error e = digestMismatchError("blob", want, got).wrap("pull x");
  EXPECT_TRUE(isDigestMismatch(e));
  EXPECT_NE(e.message().find(want.str()), std::string::npos);
  EXPECT_FALSE(isDigestMismatch(Error(ErrorCode::kIo, "digest")));
}

TEST(ManifestTest, ParsesOciManifest) {
  std::string doc = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                    d('c') +
                    R"(","size":12},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
                    d('1') +
                    R"(","size":100},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":")" +
                    d('2') + R"(","size":200}]})";
  auto m = parseManifest(doc, "");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->kind, ManifestKind::kImage);
  EXPECT_EQ(m->config.digest.str(), d('c'));
  ASSERT_EQ(m->layers.size(), 2u);
  EXPECT_EQ(m->layers[1].size, 200);
  EXPECT_EQ(*layerCompression(m->layers[1].mediaType), Compression::kZstd);
}

TEST(ManifestTest, ParsesDockerSchema2WithoutMediaTypeFieldFromContentType) {
  std::string doc = R"({"schemaVersion":2,
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":")" +
                    d('c') + R"(","size":12},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":")" +
                    d('1') + R"(","size":100}]})";
  auto m = parseManifest(doc, "application/vnd.docker.distribution.manifest.v2+json; x=y");
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->mediaType, media_type::kDockerManifest);
  EXPECT_EQ(*layerCompression(m->layers[0].mediaType), Compression::kGzip);
}

TEST(ManifestTest, IndexSelectsPlatform) {
  std::string doc =
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests":[
      {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      d('a') +
      R"(","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")" +
      d('b') + R"(","size":1,"platform":{"os":"linux","architecture":"amd64"}}]})";
  auto m = parseManifest(doc, "");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, ManifestKind::kIndex);
  auto amd = selectPlatform(*m, Platform{});
  ASSERT_TRUE(amd);
  EXPECT_EQ(amd->digest.str(), d('b'));
  auto arm = selectPlatform(*m, {"linux", "arm64", "v8"});
  ASSERT_TRUE(arm);
  EXPECT_EQ(arm->digest.str(), d('a'));
  auto none = selectPlatform(*m, {"linux", "s390x", ""});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(none.error().message().find("linux/arm64/v8"), std::string::npos);
}

TEST(ManifestTest, RefusesBadDocuments) {
  EXPECT_FALSE(parseManifest("not json", ""));
  EXPECT_FALSE(parseManifest(R"({"schemaVersion":1,"fsLayers":[]})", ""));
  EXPECT_FALSE(parseManifest(R"({"schemaVersion":2,"mediaType":"application/x-foo"})", ""));
  EXPECT_FALSE(parseManifest(R"({"schemaVersion":2,"layers":[]})", ""));  // No config.
  std::string foreign =
      R"({"schemaVersion":2,"config":{"digest":")" + d('c') +
      R"(","size":1},"layers":[{"mediaType":)"
      R"("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":")" +
      d('1') + R"(","size":1}]})";
  EXPECT_FALSE(parseManifest(foreign, ""));
  std::string badDigest =
      R"({"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]})";
  EXPECT_FALSE(parseManifest(badDigest, ""));
  std::string typeConfusion = R"({"schemaVersion":2,"config":[],"layers":{}})";
  EXPECT_FALSE(parseManifest(typeConfusion, ""));
}

TEST(ManifestTest, ParsesImageConfig) {
  std::string doc = R"({"os":"linux","architecture":"amd64","config":{
      "Entrypoint":["/bin/busybox"],"Cmd":["sh","-c","echo hi"],"Env":["PATH=/bin","A=b"],
      "WorkingDir":"/work","User":"1000:1000"},
    "rootfs":{"type":"layers","diff_ids":[")" +
                    d('1') + R"("]}})";
  auto c = parseImageConfig(doc);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->entrypoint, std::vector<std::string>{"/bin/busybox"});
  EXPECT_EQ(c->cmd.size(), 3u);
  EXPECT_EQ(c->env[1], "A=b");
  EXPECT_EQ(c->workingDir, "/work");
  EXPECT_EQ(c->user, "1000:1000");
  ASSERT_EQ(c->diffIds.size(), 1u);
  auto round = imageConfigFromJson(imageConfigToJson(*c));
  ASSERT_TRUE(round);
  EXPECT_EQ(round->cmd, c->cmd);
  EXPECT_EQ(round->user, c->user);
  // A null config section (scratch images) is fine.
  EXPECT_TRUE(parseImageConfig(R"({"os":"linux","config":null})"));
  EXPECT_FALSE(parseImageConfig("[]"));
}

TEST(WwwAuthenticateTest, ParsesBearerChallenge) {
  auto c = parseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/busybox:pull")");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "Bearer");
  EXPECT_EQ((*c)[0].params.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*c)[0].params.at("service"), "registry.docker.io");
  EXPECT_EQ((*c)[0].params.at("scope"), "repository:library/busybox:pull");
}

TEST(WwwAuthenticateTest, QuotedCommasEscapesSpacesAndSeveralChallenges) {
  auto c = parseWwwAuthenticate(
      R"(Basic realm="x y", BEARER  Realm = "https://a/t?x=1" , )"
      R"(scope="repository:a:pull,push",error="invalid_token", note="say \"hi\"",plain=tok)");
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].scheme, "Basic");
  EXPECT_EQ((*c)[0].params.at("realm"), "x y");
  EXPECT_EQ((*c)[1].scheme, "BEARER");
  EXPECT_EQ((*c)[1].params.at("realm"), "https://a/t?x=1");
  EXPECT_EQ((*c)[1].params.at("scope"), "repository:a:pull,push");
  EXPECT_EQ((*c)[1].params.at("note"), "say \"hi\"");
  EXPECT_EQ((*c)[1].params.at("plain"), "tok");
}

TEST(WwwAuthenticateTest, RejectsMalformed) {
  EXPECT_FALSE(parseWwwAuthenticate(""));
  EXPECT_FALSE(parseWwwAuthenticate(R"(Bearer realm="unterminated)"));
  EXPECT_FALSE(parseWwwAuthenticate(R"(Bearer realm="a" junk="b")"));
}

}  // namespace
}  // namespace skiff::agent::image
