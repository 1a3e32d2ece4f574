#include "common/json_sink.h"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace skiff {
namespace {

using nlohmann::json;

// The same calls on both sinks, as a record's emitter makes them.
template <class Sink>
void emitSample(Sink& out, std::string_view text) {
  out.beginObject();
  out.field("text", text);
  out.field("literal", "batch");
  out.field("int", int64_t{-42});
  out.field("max", std::numeric_limits<int64_t>::max());
  out.field("size", size_t{7});
  out.field("flag", true);
  out.field("ratio", 0.1);
  out.beginObject("nested");
  out.field("empty", "");
  out.end();
  out.beginArray("list");
  out.value(int64_t{1});
  out.value(std::string_view("two"));
  out.beginObjectValue();
  out.field("three", 3);
  out.end();
  out.end();
  out.field("tree", json{{"a", {1, 2}}, {"b", nullptr}});
}

json viaText(std::string_view text) {
  JsonTextSink out;
  emitSample(out, text);
  out.end();
  return json::parse(out.take());
}

json viaTree(std::string_view text) {
  JsonTreeSink out;
  emitSample(out, text);
  out.end();
  return out.take();
}

TEST(JsonSink, TextAndTreeSinksGiveTheSameDocument) {
  for (std::string_view text : {"plain", "quote \" backslash \\ tab \t nul-free \x01 end",
                                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80", ""}) {
    json fromText = viaText(text);
    EXPECT_EQ(fromText, viaTree(text)) << text;
    EXPECT_EQ(fromText["text"], std::string(text));
  }
  json doc = viaText("x");
  EXPECT_EQ(doc["literal"], "batch") << "a string literal is not written as a bool";
  EXPECT_EQ(doc["max"], std::numeric_limits<int64_t>::max());
  EXPECT_EQ(doc["ratio"], 0.1);
  EXPECT_EQ(doc["list"], json::parse(R"([1,"two",{"three":3}])"));
}

TEST(JsonSink, RawTextIsWrittenAsItIs) {
  JsonTextSink out;
  emitSample(out, "x");
  out.rawField("raw", R"({"x":[true,false]})");
  out.end();
  json doc = json::parse(out.take());
  EXPECT_EQ(doc["raw"]["x"], json::parse("[true,false]"));
  EXPECT_EQ(doc["literal"], "batch");
}

TEST(JsonSink, InvalidUtf8IsReplacedAsNlohmannReplacesIt) {
  for (std::string_view bad : {std::string_view("bad \xff byte"), std::string_view("cut \xe2\x82"),
                               std::string_view("\xc3"), std::string_view("over\xc0\xaflong")}) {
    JsonTextSink out;
    out.beginObject();
    out.field("s", bad);
    out.end();
    std::string text = out.take();
    json parsed = json::parse(text);  // Valid JSON, valid UTF-8.
    EXPECT_EQ(
        parsed["s"],
        json::parse(json(std::string(bad)).dump(-1, ' ', false, json::error_handler_t::replace)));
  }
}

TEST(JsonSink, TakeLeavesTheTextSinkEmptyForTheNextRecord) {
  JsonTextSink out;
  out.beginObject();
  out.field("a", 1);
  out.end();
  EXPECT_EQ(out.take(), R"({"a":1})");
  out.beginObject();
  out.field("b", 2);
  out.end();
  EXPECT_EQ(out.take(), R"({"b":2})");
}

}  // namespace
}  // namespace skiff
