#pragma once

// Base64url without padding (RFC 4648 section 5), as JOSE uses it. Built on OpenSSL's
// EVP_EncodeBlock / EVP_DecodeBlock.

#include <string>
#include <string_view>

#include "common/error.h"

namespace skiff::identity {

std::string base64UrlEncode(std::string_view data);

// Decodes unpadded base64url. Fails with kInvalidArgument on characters outside the alphabet,
// on padding, and on a length that no encoding produces.
Result<std::string> base64UrlDecode(std::string_view text);

}  // namespace skiff::identity
