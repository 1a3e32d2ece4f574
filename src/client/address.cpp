#include "client/address.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  // Plain reads rather than a stream: libstdc++ throws when a stream reads a directory.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(ErrorCode::kInvalidArgument, "token file " + path + ": " + std::strerror(errno));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int error = errno;
      ::close(fd);
      return fail(ErrorCode::kInvalidArgument, "token file " + path + ": " + std::strerror(error));
    }
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  std::string token(trim(text));
  if (token.empty()) return fail(ErrorCode::kInvalidArgument, "token file " + path + " is empty");
  return token;
}

}  // namespace skiff::client
