#pragma once

// One field list, two outputs. A record's emitter is written once as a template over a sink and
// gives either JSON text (`JsonTextSink`, RapidJSON's writer: no tree, table-driven escaping) or
// an nlohmann tree (`JsonTreeSink`). Records written on every change (tasks, jobs) use the text
// sink: building an nlohmann tree and dumping it cost several times more per record
// (docs/benchmarks.md, "Control plane", results at 7722d43).
//
// Both sinks take the same calls: `beginObject()` for the root, then `field(key, value)`,
// `beginObject(key)` / `beginArray(key)` ... `end()`, and `value(v)` inside arrays. Strings that
// are not valid UTF-8 are written with each invalid sequence replaced by U+FFFD, as nlohmann's
// `error_handler_t::replace` does. Keys are the emitter's own literals.

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skiff {

class JsonTextSink {
 public:
  JsonTextSink();
  ~JsonTextSink();
  JsonTextSink(const JsonTextSink&) = delete;
  JsonTextSink& operator=(const JsonTextSink&) = delete;

  void beginObject();
  void beginObject(std::string_view key);
  void beginArray(std::string_view key);
  void end();

  void field(std::string_view key, std::string_view value);
  void field(std::string_view key, const char* value) { field(key, std::string_view(value)); }
  void field(std::string_view key, const std::string& value) {
    field(key, std::string_view(value));
  }
  void field(std::string_view key, bool value);
  void field(std::string_view key, double value);
  template <std::integral T>
  requires(!std::same_as<T, bool>) void field(std::string_view key, T value) {
    writeKey(key);
    writeInt(static_cast<int64_t>(value));
  }
  // A subtree built elsewhere, written as its dump.
  void field(std::string_view key, const nlohmann::json& value);
  // JSON text written as it is: the caller guarantees it is one valid JSON value.
  void rawField(std::string_view key, std::string_view json);

  void value(std::string_view value);
  template <std::integral T>
  requires(!std::same_as<T, bool>) void value(T value) { writeInt(static_cast<int64_t>(value)); }
  void beginObjectValue();

  // The text written so far; the sink is empty afterwards.
  std::string take();

 private:
  void writeKey(std::string_view key);
  void writeString(std::string_view value);
  void writeInt(int64_t value);
  void writeRaw(std::string_view json);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class JsonTreeSink {
 public:
  void beginObject();
  void beginObject(std::string_view key);
  void beginArray(std::string_view key);
  void end();

  template <class T>
  void field(std::string_view key, T&& value) {
    (*stack_.back())[std::string(key)] = std::forward<T>(value);
  }
  template <class T>
  void value(T&& value) {
    stack_.back()->push_back(std::forward<T>(value));
  }
  void beginObjectValue();

  nlohmann::json take();

 private:
  nlohmann::json root_;
  std::vector<nlohmann::json*> stack_;
};

}  // namespace skiff
