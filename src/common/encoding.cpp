#include "common/encoding.h"

#include <cstdint>

namespace skiff {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kBase64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encodeBase64(std::string_view data, const char* alphabet, bool pad) {
  std::string out;
  out.reserve(4 * ((data.size() + 2) / 3));
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(data[i])); };
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t group = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out.push_back(alphabet[group >> 18 & 63]);
    out.push_back(alphabet[group >> 12 & 63]);
    out.push_back(alphabet[group >> 6 & 63]);
    out.push_back(alphabet[group & 63]);
  }
  size_t rest = data.size() - i;
  if (rest == 0) return out;
  uint32_t group = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
  out.push_back(alphabet[group >> 18 & 63]);
  out.push_back(alphabet[group >> 12 & 63]);
  if (rest == 2) out.push_back(alphabet[group >> 6 & 63]);
  if (pad) out.append(3 - rest, '=');
  return out;
}

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

}  // namespace

std::string hexEncode(const unsigned char* data, size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

std::string base64Encode(std::string_view data) {
  return encodeBase64(data, kBase64, true);
}

std::string base64UrlEncode(std::string_view data) {
  return encodeBase64(data, kBase64Url, false);
}

Result<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return fail(ErrorCode::kInvalidArgument, "bad base64 length");
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  const size_t end = text.size() - padding;
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t group = 0;
    for (size_t j = 0; j < 4; ++j) {
      int value = i + j < end ? base64Value(text[i + j]) : 0;
      if (value < 0) return fail(ErrorCode::kInvalidArgument, "bad base64 character");
      group = group << 6 | static_cast<uint32_t>(value);
    }
    out.push_back(static_cast<char>(group >> 16 & 0xff));
    if (i + 2 < end) out.push_back(static_cast<char>(group >> 8 & 0xff));
    if (i + 3 < end) out.push_back(static_cast<char>(group & 0xff));
  }
  return out;
}

Result<std::string> base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return fail(ErrorCode::kInvalidArgument, "bad base64url length");
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t bits = 0;  // Decoded bits not yet written, in the low `pending` bits.
  int pending = 0;
  for (char c : text) {
    int value = base64UrlValue(c);
    if (value < 0) return fail(ErrorCode::kInvalidArgument, "bad base64url character");
    bits = (bits << 6 | static_cast<uint32_t>(value)) & 0x3fff;
    pending += 6;
    if (pending >= 8) {
      pending -= 8;
      out.push_back(static_cast<char>(bits >> pending & 0xff));
    }
  }
  if ((bits & ((1u << pending) - 1)) != 0) {
    return fail(ErrorCode::kInvalidArgument, "non-canonical base64url");
  }
  return out;
}

std::string stringAt(const nlohmann::json& value, std::initializer_list<const char*> path) {
  const nlohmann::json* node = &value;
  for (const char* name : path) {
    if (!node->is_object()) return {};
    auto it = node->find(name);
    if (it == node->end()) return {};
    node = &*it;
  }
  return node->is_string() ? node->get<std::string>() : std::string();
}

}  // namespace skiff
