#include "api/names.h"

#include <random>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace skiff::api {
namespace {

// The rules as regular expressions (the grammar as written in the docs): each scan must agree
// with its expression on every string tried.
struct Rule {
  const char* name;
  bool (*scan)(std::string_view);
  std::regex expression;
};

std::vector<Rule> rules() {
  return {
      {"validName", validName, std::regex("[A-Za-z0-9][A-Za-z0-9._-]{0,127}")},
      {"validMetricName", validMetricName, std::regex("[A-Za-z][A-Za-z0-9._-]{0,127}")},
      {"validEnvName", validEnvName, std::regex("[A-Za-z_][A-Za-z0-9_]*")},
      {"validImageTag", validImageTag, std::regex("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")},
      {"validImageDigest", validImageDigest, std::regex("sha256:[a-f0-9]{64}")},
      {"validEmail", validEmail, std::regex("[^@\\s]+@[^@\\s]+\\.[^@\\s]+")},
      {"validImageName", validImageName,
       std::regex(
           "(([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
           "(:[0-9]{1,5})?|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?:[0-9]{1,5}|localhost)/)?"
           "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*")},
  };
}

void expectAgreement(const Rule& rule, const std::string& text) {
  EXPECT_EQ(rule.scan(text), std::regex_match(text, rule.expression))
      << rule.name << " on \"" << text << "\"";
}

TEST(Names, ExamplesFollowTheirRules) {
  EXPECT_TRUE(validName("web-1.prod_a"));
  EXPECT_FALSE(validName("-web"));
  EXPECT_FALSE(validName(std::string(129, 'a')));
  EXPECT_TRUE(validName(std::string(128, 'a')));
  EXPECT_TRUE(validImageName("busybox"));
  EXPECT_TRUE(validImageName("localhost:5000/team/app"));
  EXPECT_TRUE(validImageName("registry.example.com/a__b/c--d"));
  EXPECT_FALSE(validImageName("Busybox"));
  EXPECT_FALSE(validImageName("team//app"));
  EXPECT_FALSE(validImageName("a___b"));
  EXPECT_TRUE(validEmail("team@example.com"));
  EXPECT_FALSE(validEmail("team@example."));
  EXPECT_FALSE(validEmail("team @example.com"));
  EXPECT_TRUE(validEnvName("_PATH2"));
  EXPECT_FALSE(validEnvName("2PATH"));
  EXPECT_TRUE(validImageDigest("sha256:" + std::string(64, 'f')));
  EXPECT_FALSE(validImageDigest("sha256:" + std::string(64, 'F')));
}

TEST(Names, EachScanAgreesWithItsRegularExpressionOnEdgeCases) {
  std::vector<std::string> cases = {"",
                                    "a",
                                    "A",
                                    "_",
                                    ".",
                                    "-",
                                    "a.",
                                    "a-",
                                    "a_",
                                    ".a",
                                    "-a",
                                    "_a",
                                    "a..b",
                                    "a__b",
                                    "a___b",
                                    "a---b",
                                    "a-_b",
                                    "a._b",
                                    "a/b",
                                    "a//b",
                                    "/a",
                                    "a/",
                                    "localhost",
                                    "localhost/a",
                                    "localhost:5000/a",
                                    "host:5000/a",
                                    "host:123456/a",
                                    "host:/a",
                                    "a.b/c",
                                    "a.b:1/c",
                                    "a-.b/c",
                                    "-a.b/c",
                                    "a.b-/c",
                                    "A.B/c",
                                    "A/c",
                                    "a@b.c",
                                    "@b.c",
                                    "a@.c",
                                    "a@b.",
                                    "a@b",
                                    "a@b@c.d",
                                    "a b@c.d",
                                    "a@b..c",
                                    "a@.b.c",
                                    "x@y.z\n",
                                    "sha256:",
                                    std::string(128, 'a'),
                                    std::string(129, 'a'),
                                    "a" + std::string(127, '-'),
                                    "1abc",
                                    "ab:cd",
                                    "a\tb",
                                    "sha256:" + std::string(64, 'a'),
                                    "sha256:" + std::string(63, 'a'),
                                    "sha256:" + std::string(65, 'a')};
  for (const Rule& rule : rules()) {
    for (const std::string& text : cases) expectAgreement(rule, text);
  }
}

TEST(Names, EachScanAgreesWithItsRegularExpressionOnRandomStrings) {
  // Strings from the characters the rules care about, so matches are common enough to count.
  const std::string alphabet = "ab0Z_.-/:@ \t5";
  std::mt19937 random(20261207);
  std::uniform_int_distribution<size_t> length(0, 14);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  int matched = 0;
  for (const Rule& rule : rules()) {
    for (int i = 0; i < 4000; ++i) {
      std::string text;
      for (size_t n = length(random); n > 0; --n) text += alphabet[pick(random)];
      if (rule.scan(text)) ++matched;
      expectAgreement(rule, text);
    }
  }
  EXPECT_GT(matched, 1000);
}

}  // namespace
}  // namespace skiff::api
