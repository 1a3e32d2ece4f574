#include "api/json_checker.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "api/names.h"

namespace skiff::api::detail {

std::string describeValue(const json& value) {
  std::string text = value.dump(-1, ' ', true, json::error_handler_t::replace);
  constexpr size_t kMax = 64;
  if (text.size() > kMax) {
    text.resize(kMax);
    text += "...";
  }
  return text;
}

std::string typeOf(const json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

std::string joinPath(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out = path;
  out += '.';
  out += key;
  return out;
}

std::string formatNumber(double value) {
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return json(value).dump();
}

void Checker::add(std::string field, std::string message) {
  errors.push_back({std::move(field), std::move(message)});
}

bool Checker::object(const json& value, const std::string& path,
                     std::initializer_list<std::string_view> allowed) {
  if (!value.is_object()) {
    add(path, "must be an object (got " + typeOf(value) + ")");
    return false;
  }
  for (const auto& [key, unused] : value.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      add(joinPath(path, key), "unknown field");
    }
  }
  return true;
}

const json* Checker::field(const json& object, const std::string& path, std::string_view key,
                           bool required) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) add(joinPath(path, key), "is required");
    return nullptr;
  }
  return &*it;
}

std::optional<std::string> Checker::string(const json& object, const std::string& path,
                                           std::string_view key, bool required, size_t maxBytes) {
  const json* value = field(object, path, key, required);
  if (value == nullptr) return std::nullopt;
  std::string fieldPath = joinPath(path, key);
  return stringValue(*value, fieldPath, maxBytes);
}

std::optional<std::string> Checker::stringValue(const json& value, const std::string& path,
                                                size_t maxBytes) {
  if (!value.is_string()) {
    add(path, "must be a string (got " + typeOf(value) + ")");
    return std::nullopt;
  }
  const auto& text = value.get_ref<const std::string&>();
  if (text.size() > maxBytes) {
    add(path, "must be at most " + std::to_string(maxBytes) + " bytes (got " +
                  std::to_string(text.size()) + ")");
    return std::nullopt;
  }
  return text;
}

std::optional<int64_t> Checker::integer(const json& object, const std::string& path,
                                        std::string_view key, bool required, int64_t min,
                                        int64_t max) {
  const json* value = field(object, path, key, required);
  if (value == nullptr) return std::nullopt;
  std::string fieldPath = joinPath(path, key);
  std::optional<int64_t> number;
  if (value->is_number_unsigned()) {
    uint64_t raw = value->get<uint64_t>();
    number = raw > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(raw);
  } else if (value->is_number_integer()) {
    number = value->get<int64_t>();
  } else if (value->is_number_float()) {
    double raw = value->get<double>();
    if (std::floor(raw) == raw) {
      // Integral but beyond int64: clamp, so the range check below reports it.
      number = std::fabs(raw) < 9e15 ? static_cast<int64_t>(raw) : raw > 0 ? INT64_MAX : INT64_MIN;
    }
  }
  if (!number) {
    add(fieldPath, "must be an integer (got " +
                       (value->is_number() ? describeValue(*value) : typeOf(*value)) + ")");
    return std::nullopt;
  }
  if (*number < min || *number > max) {
    add(fieldPath, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                       " (got " + describeValue(*value) + ")");
    return std::nullopt;
  }
  return number;
}

std::optional<bool> Checker::boolean(const json& object, const std::string& path,
                                     std::string_view key) {
  const json* value = field(object, path, key, false);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    add(joinPath(path, key), "must be true or false (got " + typeOf(*value) + ")");
    return std::nullopt;
  }
  return value->get<bool>();
}

std::optional<double> Checker::number(const json& object, const std::string& path,
                                      std::string_view key, bool required, double min, double max) {
  const json* value = field(object, path, key, required);
  if (value == nullptr) return std::nullopt;
  std::string fieldPath = joinPath(path, key);
  if (!value->is_number()) {
    add(fieldPath, "must be a number (got " + typeOf(*value) + ")");
    return std::nullopt;
  }
  double number = value->get<double>();
  if (!(number >= min && number <= max)) {
    add(fieldPath, "must be between " + formatNumber(min) + " and " + formatNumber(max) + " (got " +
                       describeValue(*value) + ")");
    return std::nullopt;
  }
  return number;
}

std::optional<std::string> Checker::name(const json& object, const std::string& path,
                                         std::string_view key, bool required) {
  auto text = string(object, path, key, required);
  if (text && !validName(*text)) {
    add(joinPath(path, key),
        "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit "
        "(got " +
            describeValue(*text) + ")");
    return std::nullopt;
  }
  return text;
}

std::vector<std::string> Checker::stringList(const json& object, const std::string& path,
                                             std::string_view key) {
  std::vector<std::string> out;
  const json* value = field(object, path, key, false);
  if (value == nullptr) return out;
  std::string fieldPath = joinPath(path, key);
  if (!value->is_array()) {
    add(fieldPath, "must be a list of strings (got " + typeOf(*value) + ")");
    return out;
  }
  size_t total = 0;
  for (size_t i = 0; i < value->size(); ++i) {
    auto item = stringValue((*value)[i], fieldPath + "[" + std::to_string(i) + "]");
    if (item) {
      total += item->size();
      out.push_back(std::move(*item));
    }
  }
  if (total > Limits::kMaxEnvBytes) {
    add(fieldPath, "must hold at most " + std::to_string(Limits::kMaxEnvBytes) +
                       " bytes in all (got " + std::to_string(total) + ")");
  }
  return out;
}

std::map<std::string, std::string> Checker::stringMap(const json& object, const std::string& path,
                                                      std::string_view key, size_t maxEntries) {
  std::map<std::string, std::string> out;
  const json* value = field(object, path, key, false);
  if (value == nullptr) return out;
  std::string fieldPath = joinPath(path, key);
  if (!value->is_object()) {
    add(fieldPath, "must be a map of strings (got " + typeOf(*value) + ")");
    return out;
  }
  if (value->size() > maxEntries) {
    add(fieldPath, "must have at most " + std::to_string(maxEntries) + " entries (got " +
                       std::to_string(value->size()) + ")");
  }
  for (const auto& [entryKey, entryValue] : value->items()) {
    std::string entryPath = joinPath(fieldPath, entryKey);
    if (entryKey.empty() || entryKey.size() > 256) {
      add(fieldPath, "keys must be 1 to 256 bytes (got " + describeValue(entryKey) + ")");
      continue;
    }
    auto text = stringValue(entryValue, entryPath);
    if (text) out.emplace(entryKey, std::move(*text));
  }
  return out;
}

}  // namespace skiff::api::detail
