#pragma once

// Small encodings shared by the programs: lowercase hex, and reading a string out of a JSON
// document that may lack the field.

#include <cstddef>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

namespace skiff {

// Lowercase hex of `size` bytes: two characters per byte, high nibble first.
std::string hexEncode(const unsigned char* data, size_t size);

// The string at `path` in `value` ({"job", "id"} reads value["job"]["id"]), or "" when a step is
// missing or not an object, or the value is not a string.
std::string stringAt(const nlohmann::json& value, std::initializer_list<const char*> path);

}  // namespace skiff
