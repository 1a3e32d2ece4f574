#include "common/encoding.h"

namespace skiff {

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
