#include "cli/config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace skiff::cli {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("skiff-cli-config-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    sources_.envHome = (dir_ / "home").string();
    sources_.adminTokenPath = (dir_ / "admin.token").string();  // Absent unless a test writes it.
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  fs::path dir_;
  ConfigSources sources_;
};

TEST_F(ConfigTest, DefaultsWithNothingConfigured) {
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->address, "http://127.0.0.1:7070");
  EXPECT_EQ(config->addressSource, "default");
  EXPECT_EQ(config->token, "");
  EXPECT_EQ(config->tokenSource, "none");
  EXPECT_EQ(config->configPath, "");  // The default file does not exist: not an error.
}

TEST_F(ConfigTest, FlagBeatsEnvironmentBeatsFileBeatsDefault) {
  std::string file =
      write("home/.config/skiff/config.yaml", "addr: file-host:1\ntoken: file-token\n");

  auto fromFile = resolveConfig(sources_);
  ASSERT_TRUE(fromFile) << fromFile.error().message();
  EXPECT_EQ(fromFile->address, "http://file-host:1");
  EXPECT_EQ(fromFile->token, "file-token");
  EXPECT_EQ(fromFile->configPath, file);
  EXPECT_EQ(fromFile->tokenSource, file);

  sources_.envAddr = "env-host:2";
  sources_.envToken = "env-token";
  auto fromEnv = resolveConfig(sources_);
  ASSERT_TRUE(fromEnv);
  EXPECT_EQ(fromEnv->address, "http://env-host:2");
  EXPECT_EQ(fromEnv->addressSource, "SKIFF_ADDR");
  EXPECT_EQ(fromEnv->token, "env-token");

  sources_.flagAddr = "https://flag-host:3/";
  sources_.flagToken = "flag-token";
  auto fromFlags = resolveConfig(sources_);
  ASSERT_TRUE(fromFlags);
  EXPECT_EQ(fromFlags->address, "https://flag-host:3");
  EXPECT_EQ(fromFlags->addressSource, "--addr");
  EXPECT_EQ(fromFlags->token, "flag-token");
  EXPECT_EQ(fromFlags->tokenSource, "--token");
}

TEST_F(ConfigTest, EmptyValuesCountAsUnset) {
  sources_.envAddr = "";
  sources_.flagToken = "";
  sources_.envToken = "env-token";
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->address, "http://127.0.0.1:7070");
  EXPECT_EQ(config->token, "env-token");
}

TEST_F(ConfigTest, XdgConfigHomeWinsOverHome) {
  write("home/.config/skiff/config.yaml", "addr: home-host:1\n");
  write("xdg/skiff/config.yaml", "addr: xdg-host:1\n");
  sources_.envXdgConfigHome = (dir_ / "xdg").string();
  EXPECT_EQ(defaultConfigPath(sources_), (dir_ / "xdg/skiff/config.yaml").string());
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->address, "http://xdg-host:1");
}

TEST_F(ConfigTest, ExplicitConfigFlag) {
  std::string file = write("custom.yaml", "addr: custom:9\n");
  sources_.flagConfig = file;
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->address, "http://custom:9");

  sources_.flagConfig = (dir_ / "missing.yaml").string();
  auto missing = resolveConfig(sources_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(missing.error().message().find("missing.yaml"), std::string::npos);
}

TEST_F(ConfigTest, TokenFileRelativeToConfigFile) {
  write("conf/token.txt", "  secret-token\n");
  sources_.flagConfig = write("conf/config.yaml", "tokenFile: token.txt\n");
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->token, "secret-token");
  EXPECT_EQ(config->tokenSource, (dir_ / "conf/token.txt").string());
}

TEST_F(ConfigTest, TokenFileWithTilde) {
  write("home/tok", "tilde-token");
  sources_.flagConfig = write("c.yaml", "tokenFile: ~/tok\n");
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->token, "tilde-token");
}

TEST_F(ConfigTest, EnvTokenBeatsConfigTokenFile) {
  sources_.flagConfig = write("c.yaml", "tokenFile: /definitely/missing\n");
  sources_.envToken = "env-token";
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config) << config.error().message();  // The file is not needed, so not read.
  EXPECT_EQ(config->token, "env-token");
}

TEST_F(ConfigTest, BadConfigFiles) {
  sources_.flagConfig = write("a.yaml", "addr: [1, 2\n");
  auto syntax = resolveConfig(sources_);
  ASSERT_FALSE(syntax);
  EXPECT_NE(syntax.error().message().find("a.yaml"), std::string::npos);
  EXPECT_NE(syntax.error().message().find("line"), std::string::npos);

  sources_.flagConfig = write("b.yaml", "- just\n- a list\n");
  EXPECT_FALSE(resolveConfig(sources_));

  sources_.flagConfig = write("c.yaml", "addr: 7070\n");
  auto wrongType = resolveConfig(sources_);
  ASSERT_FALSE(wrongType);
  EXPECT_NE(wrongType.error().message().find("addr must be a string"), std::string::npos);

  sources_.flagConfig = write("d.yaml", "token: t\ntokenFile: f\n");
  auto both = resolveConfig(sources_);
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().message().find("not both"), std::string::npos);

  sources_.flagConfig = write("e.yaml", "tokenFile: missing.token\n");
  auto missingToken = resolveConfig(sources_);
  ASSERT_FALSE(missingToken);
  EXPECT_NE(missingToken.error().message().find("missing.token"), std::string::npos);

  sources_.flagConfig = write("f.yaml", "addr: ftp://x:1\n");
  EXPECT_FALSE(resolveConfig(sources_));
}

TEST_F(ConfigTest, EmptyConfigFileAndUnknownKeys) {
  sources_.flagConfig = write("empty.yaml", "");
  auto empty = resolveConfig(sources_);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->address, "http://127.0.0.1:7070");

  sources_.flagConfig = write("extra.yaml", "addr: h:1\nadress: typo\n");
  auto extra = resolveConfig(sources_);
  ASSERT_TRUE(extra);
  ASSERT_EQ(extra->warnings.size(), 1u);
  EXPECT_NE(extra->warnings[0].find("adress"), std::string::npos);
}

TEST_F(ConfigTest, AdminTokenFallbackOnlyWhenNothingElse) {
  write("admin.token", "admin-secret\n");
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->token, "admin-secret");
  EXPECT_EQ(config->tokenSource, sources_.adminTokenPath);

  sources_.envToken = "env-token";
  auto configured = resolveConfig(sources_);
  ASSERT_TRUE(configured);
  EXPECT_EQ(configured->token, "env-token");
}

TEST_F(ConfigTest, UnreadableAdminTokenIsSkipped) {
  sources_.adminTokenPath = (dir_ / "no-such.token").string();
  auto config = resolveConfig(sources_);
  ASSERT_TRUE(config);
  EXPECT_EQ(config->token, "");
}

}  // namespace
}  // namespace skiff::cli
