#include "common/encoding.h"

#include <string>

#include <gtest/gtest.h>

#include "common/hash.h"

namespace skiff {
namespace {

TEST(HexEncode, WritesTwoLowercaseDigitsPerByteHighNibbleFirst) {
  const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  EXPECT_EQ(hexEncode(bytes, sizeof bytes), "000fa5ff");
  EXPECT_EQ(hexEncode(bytes, 0), "");
}

TEST(StringAt, ReadsNestedStringsAndIsEmptyForAnythingElse) {
  nlohmann::json doc = {{"job", {{"id", "job-1"}, {"size", 3}}}, {"name", "web"}};
  EXPECT_EQ(stringAt(doc, {"job", "id"}), "job-1");
  EXPECT_EQ(stringAt(doc, {"name"}), "web");
  EXPECT_EQ(stringAt(doc, {"job", "size"}), "") << "not a string";
  EXPECT_EQ(stringAt(doc, {"job", "missing"}), "");
  EXPECT_EQ(stringAt(doc, {"name", "deeper"}), "") << "a step that is not an object";
  EXPECT_EQ(stringAt(nlohmann::json::array(), {"job"}), "");
}

TEST(Base64Encode, MatchesTheRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode(std::string("\xfb\xff\xbf", 3)), "+/+/");
  EXPECT_EQ(base64Encode("user:pass"), "dXNlcjpwYXNz");
}

TEST(Base64Decode, InvertsBase64Encode) {
  for (std::string text : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto decoded = base64Decode(base64Encode(text));
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, text);
  }
  std::string binary("\x00\xfb\xff\xbf\x01", 5);
  EXPECT_EQ(base64Decode(base64Encode(binary)).value(), binary);
}

TEST(Base64Decode, RejectsMalformedText) {
  EXPECT_FALSE(base64Decode("Zg=").has_value());
  EXPECT_FALSE(base64Decode("Zg=a").has_value());
  EXPECT_FALSE(base64Decode("Z-8=").has_value());
  EXPECT_FALSE(base64Decode("Zg==Zg==").has_value());
}

TEST(Base64UrlEncode, UsesTheUrlAlphabetWithoutPadding) {
  EXPECT_EQ(base64UrlEncode(""), "");
  EXPECT_EQ(base64UrlEncode("f"), "Zg");
  EXPECT_EQ(base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64UrlEncode(std::string("\xfb\xff", 2)), "-_8");
  EXPECT_EQ(base64UrlEncode(std::string("\xfb\xff\xbf", 3)), "-_-_");
}

TEST(Base64UrlDecode, RoundTripsEveryLengthAndByte) {
  std::string data;
  for (int i = 0; i < 256; ++i) {
    data.push_back(static_cast<char>(i));
    auto decoded = base64UrlDecode(base64UrlEncode(data));
    ASSERT_TRUE(decoded) << i;
    EXPECT_EQ(*decoded, data);
  }
  EXPECT_EQ(*base64UrlDecode(""), "");
  EXPECT_EQ(*base64UrlDecode("Zm9vYmE"), "fooba");
  EXPECT_EQ(*base64UrlDecode("-_8"), std::string("\xfb\xff", 2));
}

TEST(Base64UrlDecode, RejectsPaddingForeignCharactersBadLengthsAndNonCanonicalText) {
  EXPECT_EQ(base64UrlDecode("Zg==").error().code(), ErrorCode::kInvalidArgument) << "padding";
  EXPECT_FALSE(base64UrlDecode("ab+c")) << "standard alphabet";
  EXPECT_FALSE(base64UrlDecode("ab c"));
  EXPECT_FALSE(base64UrlDecode("abcde")) << "no encoding is 5 characters long";
  EXPECT_FALSE(base64UrlDecode("Zh")) << "unused low bits set";
  EXPECT_FALSE(base64UrlDecode("-_9")) << "unused low bits set";
}

TEST(Fnv1a64, MatchesTheReferenceVectors) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
}

}  // namespace
}  // namespace skiff
