#pragma once

// A walker for JSON documents that collects every violation with its path (internal to src/api).
//
// Paths are dotted ("container.resources.cpu"), list items are indexed ("command[2]"), and the
// document's root is "". Every method that reads a field records what is wrong with it in
// `errors` and returns nothing (or an empty value); a missing or null field is an error only when
// it is required. Messages quote user values through `describeValue`, so they stay one line.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/job.h"

namespace skiff::api::detail {

using nlohmann::json;

// A user value rendered for an error message: JSON-escaped and cut short, so the message stays
// one readable line whatever the input holds.
std::string describeValue(const json& value);
// "integer", "number", "string", "object", ...
std::string typeOf(const json& value);
// `path.key`, or `key` at the root.
std::string joinPath(const std::string& path, std::string_view key);
// Integral values without a fraction ("4", not "4.0").
std::string formatNumber(double value);

class Checker {
 public:
  FieldErrors errors;

  void add(std::string field, std::string message);

  // Checks that `value` is an object whose keys are all in `allowed`.
  bool object(const json& value, const std::string& path,
              std::initializer_list<std::string_view> allowed);
  // The field `key` of `object`, or null when it is missing or null.
  const json* field(const json& object, const std::string& path, std::string_view key,
                    bool required);
  // A string of at most `maxBytes` bytes.
  std::optional<std::string> string(const json& object, const std::string& path,
                                    std::string_view key, bool required,
                                    size_t maxBytes = Limits::kMaxStringBytes);
  std::optional<std::string> stringValue(const json& value, const std::string& path,
                                         size_t maxBytes = Limits::kMaxStringBytes);
  // An integer in [min, max]; integral floating-point values count as integers.
  std::optional<int64_t> integer(const json& object, const std::string& path, std::string_view key,
                                 bool required, int64_t min, int64_t max);
  std::optional<bool> boolean(const json& object, const std::string& path, std::string_view key);
  // A number in [min, max].
  std::optional<double> number(const json& object, const std::string& path, std::string_view key,
                               bool required, double min, double max);
  // A string that is a valid name (`validName` in api/names.h).
  std::optional<std::string> name(const json& object, const std::string& path, std::string_view key,
                                  bool required);
  // A list of strings holding at most `Limits::kMaxEnvBytes` bytes in all.
  std::vector<std::string> stringList(const json& object, const std::string& path,
                                      std::string_view key);
  // A map of strings with keys of 1 to 256 bytes and at most `maxEntries` entries.
  std::map<std::string, std::string> stringMap(const json& object, const std::string& path,
                                               std::string_view key, size_t maxEntries);
};

}  // namespace skiff::api::detail
