// Addresses as every program accepts them, and token files.

#include "client/address.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace skiff::client {
namespace {

namespace fs = std::filesystem;

TEST(NormalizeAddressTest, AcceptsCommonForms) {
  EXPECT_EQ(normalizeAddress("127.0.0.1:7070").value(), "http://127.0.0.1:7070");
  EXPECT_EQ(normalizeAddress("localhost:7070/").value(), "http://localhost:7070");
  EXPECT_EQ(normalizeAddress("http://h:1").value(), "http://h:1");
  EXPECT_EQ(normalizeAddress("https://h:1//").value(), "https://h:1");
  EXPECT_EQ(normalizeAddress("  h:1 ").value(), "http://h:1");
  EXPECT_EQ(normalizeAddress("[::1]:7070").value(), "http://[::1]:7070");
  EXPECT_EQ(normalizeAddress("http://h:1/prefix/").value(), "http://h:1/prefix");
}

TEST(NormalizeAddressTest, RejectsNonsense) {
  EXPECT_FALSE(normalizeAddress(""));
  EXPECT_FALSE(normalizeAddress("http://"));
  EXPECT_FALSE(normalizeAddress("ftp://h:1"));
  EXPECT_FALSE(normalizeAddress("unix:///run/skiff.sock"));
  EXPECT_FALSE(normalizeAddress("h :1"));
  EXPECT_FALSE(normalizeAddress(":7070"));
  EXPECT_EQ(normalizeAddress("ftp://h").error().code(), ErrorCode::kInvalidArgument);
}

TEST(ReadTokenFileTest, TrimsTheTokenAndRejectsEmptyOrMissingFiles) {
  fs::path dir = fs::temp_directory_path() / ("skiff-address-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "token") << "  secret\n";
  std::ofstream(dir / "empty") << " \n";
  EXPECT_EQ(readTokenFile((dir / "token").string()).value(), "secret");
  auto empty = readTokenFile((dir / "empty").string());
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::kInvalidArgument);
  auto missing = readTokenFile((dir / "missing").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("missing"), std::string::npos);
  EXPECT_FALSE(readTokenFile(dir.string()));  // A directory.
  fs::remove_all(dir);
}

}  // namespace
}  // namespace skiff::client
