#include "common/encoding.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace skiff
