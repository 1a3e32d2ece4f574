#pragma once

// Small encodings shared by the programs: lowercase hex, base64 (standard and URL-safe), and
// reading a string out of a JSON document that may lack the field.

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace skiff {

// Lowercase hex of `size` bytes: two characters per byte, high nibble first.
std::string hexEncode(const unsigned char* data, size_t size);

// Base64 with the standard alphabet and '=' padding (RFC 4648 section 4).
std::string base64Encode(std::string_view data);

// Decodes base64 with the standard alphabet and '=' padding, as `base64Encode` writes it. Fails
// with kInvalidArgument on characters outside the alphabet, on a length that is not a multiple of
// four, and on misplaced padding.
Result<std::string> base64Decode(std::string_view text);

// Base64url without padding (RFC 4648 section 5), as JOSE uses it.
std::string base64UrlEncode(std::string_view data);

// Decodes unpadded base64url. Fails with kInvalidArgument on characters outside the alphabet,
// on padding, on a length that no encoding produces, and on unused low bits that are not zero
// (so every value has exactly one encoding).
Result<std::string> base64UrlDecode(std::string_view text);

// The string at `path` in `value` ({"job", "id"} reads value["job"]["id"]), or "" when a step is
// missing or not an object, or the value is not a string.
std::string stringAt(const nlohmann::json& value, std::initializer_list<const char*> path);

}  // namespace skiff
