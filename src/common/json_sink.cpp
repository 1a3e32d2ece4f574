#include "common/json_sink.h"

#include <cstdlib>
#include <cstring>

#include <rapidjson/encodings.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace skiff {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

bool validUtf8(std::string_view text) {
  size_t i = 0;
  // Most text is ASCII: check it a byte at a time without decoding.
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  if (i == text.size()) return true;
  // The decoder reads a sequence's continuation bytes without a bound: decode a terminated copy,
  // whose terminator ends a cut sequence as an invalid byte.
  const std::string rest(text.substr(i));
  rapidjson::StringStream in(rest.c_str());
  const char* end = rest.c_str() + rest.size();
  while (in.src_ < end) {
    unsigned codepoint = 0;
    if (!rapidjson::UTF8<>::Decode(in, &codepoint)) return false;
  }
  return in.src_ == end;
}

// Rare (text an agent relayed from a container): nlohmann replaces each invalid sequence with
// U+FFFD when it writes; reading that back gives the valid text.
std::string replaceInvalidUtf8(std::string_view text) {
  std::string quoted = nlohmann::json(std::string(text))
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(quoted).get<std::string>();
}

}  // namespace

struct JsonTextSink::Impl {
  rapidjson::StringBuffer buffer;
  Writer writer{buffer};
  std::vector<bool> openArrays;  // One entry per open object (false) or array (true).
};

JsonTextSink::JsonTextSink() : impl_(std::make_unique<Impl>()) {}
JsonTextSink::~JsonTextSink() = default;

void JsonTextSink::beginObject() {
  impl_->writer.StartObject();
  impl_->openArrays.push_back(false);
}

void JsonTextSink::beginObject(std::string_view key) {
  writeKey(key);
  beginObject();
}

void JsonTextSink::beginObjectValue() {
  beginObject();
}

void JsonTextSink::beginArray(std::string_view key) {
  writeKey(key);
  impl_->writer.StartArray();
  impl_->openArrays.push_back(true);
}

void JsonTextSink::end() {
  // Ending more than was begun is an emitter bug.
  if (impl_->openArrays.empty()) std::abort();
  bool array = impl_->openArrays.back();
  impl_->openArrays.pop_back();
  if (array) {
    impl_->writer.EndArray();
  } else {
    impl_->writer.EndObject();
  }
}

void JsonTextSink::field(std::string_view key, std::string_view value) {
  writeKey(key);
  writeString(value);
}

void JsonTextSink::field(std::string_view key, bool value) {
  writeKey(key);
  impl_->writer.Bool(value);
}

void JsonTextSink::field(std::string_view key, double value) {
  writeKey(key);
  impl_->writer.Double(value);
}

void JsonTextSink::field(std::string_view key, const nlohmann::json& value) {
  rawField(key, value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void JsonTextSink::rawField(std::string_view key, std::string_view json) {
  writeKey(key);
  writeRaw(json);
}

void JsonTextSink::value(std::string_view value) {
  writeString(value);
}

std::string JsonTextSink::take() {
  std::string out(impl_->buffer.GetString(), impl_->buffer.GetSize());
  impl_->buffer.Clear();
  impl_->writer.Reset(impl_->buffer);
  impl_->openArrays.clear();
  return out;
}

void JsonTextSink::writeKey(std::string_view key) {
  if (validUtf8(key)) {
    impl_->writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    return;
  }
  std::string valid = replaceInvalidUtf8(key);
  impl_->writer.Key(valid.data(), static_cast<rapidjson::SizeType>(valid.size()));
}

void JsonTextSink::writeString(std::string_view value) {
  if (validUtf8(value)) {
    impl_->writer.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
    return;
  }
  std::string valid = replaceInvalidUtf8(value);
  impl_->writer.String(valid.data(), static_cast<rapidjson::SizeType>(valid.size()));
}

void JsonTextSink::writeRaw(std::string_view json) {
  // RapidJSON copies raw text a byte at a time: let it write the separator for an empty value,
  // then append the text in one copy.
  impl_->writer.RawValue("", 0, rapidjson::kObjectType);
  std::memcpy(impl_->buffer.Push(json.size()), json.data(), json.size());
}

void JsonTextSink::writeInt(int64_t value) {
  impl_->writer.Int64(value);
}

void JsonTreeSink::beginObject() {
  root_ = nlohmann::json::object();
  stack_.assign(1, &root_);
}

void JsonTreeSink::beginObject(std::string_view key) {
  nlohmann::json& child = (*stack_.back())[std::string(key)];
  child = nlohmann::json::object();
  stack_.push_back(&child);
}

void JsonTreeSink::beginObjectValue() {
  stack_.back()->push_back(nlohmann::json::object());
  stack_.push_back(&stack_.back()->back());
}

void JsonTreeSink::beginArray(std::string_view key) {
  nlohmann::json& child = (*stack_.back())[std::string(key)];
  child = nlohmann::json::array();
  stack_.push_back(&child);
}

void JsonTreeSink::end() {
  stack_.pop_back();
}

nlohmann::json JsonTreeSink::take() {
  stack_.clear();
  return std::move(root_);
}

}  // namespace skiff
