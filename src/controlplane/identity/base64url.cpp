#include "controlplane/identity/base64url.h"

#include <openssl/evp.h>

namespace skiff::identity {

std::string base64UrlEncode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(written));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

Result<std::string> base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return fail(ErrorCode::kInvalidArgument, "bad base64url length");
  std::string standard;
  standard.reserve(text.size() + 3);
  for (char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      standard.push_back(c);
    } else if (c == '-') {
      standard.push_back('+');
    } else if (c == '_') {
      standard.push_back('/');
    } else {
      return fail(ErrorCode::kInvalidArgument, "bad base64url character");
    }
  }
  size_t padding = (4 - standard.size() % 4) % 4;
  standard.append(padding, '=');
  std::string out(standard.size() / 4 * 3, '\0');
  int written = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(standard.data()),
                                static_cast<int>(standard.size()));
  if (written < 0) return fail(ErrorCode::kInvalidArgument, "bad base64url text");
  // EVP_DecodeBlock counts the bytes the padding stands for; they are not data.
  out.resize(static_cast<size_t>(written) - padding);
  // Unused low bits in the last character must be zero, so every value has one encoding and a
  // token cannot be altered without changing what it decodes to.
  if (base64UrlEncode(out) != text)
    return fail(ErrorCode::kInvalidArgument, "non-canonical base64url");
  return out;
}

}  // namespace skiff::identity
