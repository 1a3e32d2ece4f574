#include "client/address.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/text.h"

namespace skiff::client {

Result<std::string> normalizeAddress(std::string_view address) {
  std::string text(trim(address));
  std::string scheme = "http";
  std::string rest = text;
  if (auto pos = text.find("://"); pos != std::string::npos) {
    scheme = text.substr(0, pos);
    rest = text.substr(pos + 3);
    if (scheme != "http" && scheme != "https") {
      return fail(ErrorCode::kInvalidArgument,
                  "invalid address \"" + sanitize(text) + "\": the scheme must be http or https");
    }
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
    return fail(ErrorCode::kInvalidArgument, "invalid address \"" + sanitize(text) +
                                                 "\": expected host:port or http://host:port");
  }
  for (char c : rest) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      return fail(ErrorCode::kInvalidArgument,
                  "invalid address \"" + sanitize(text) + "\": contains whitespace");
    }
  }
  return scheme + "://" + rest;
}

Result<std::string> readTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(ErrorCode::kInvalidArgument, "token file " + path + ": " + std::strerror(errno));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A directory opens fine on Linux but fails on the first read.
  if (in.bad() || (in.fail() && !in.eof())) {
    return fail(ErrorCode::kInvalidArgument,
                "token file " + path + ": cannot read it (is it a directory?)");
  }
  std::string token(trim(text));
  if (token.empty()) return fail(ErrorCode::kInvalidArgument, "token file " + path + " is empty");
  return token;
}

}  // namespace skiff::client
