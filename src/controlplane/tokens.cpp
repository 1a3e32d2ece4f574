#include "controlplane/tokens.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/encoding.h"

namespace skiff::controlplane {
namespace {

Result<std::string> newToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return fail(ErrorCode::kInternal, "no randomness available for a token");
  }
  return hexEncode(bytes, sizeof(bytes));
}

Result<std::string> loadOrCreate(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    while (!token.empty() &&
           (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
      token.pop_back();
    }
    if (token.size() < 16)
      return fail(ErrorCode::kInvalidArgument, path + " holds no usable token");
    return token;
  }
  auto token = newToken();
  if (!token) return token;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::unexpected(errnoError("create " + path, errno));
  std::string line = *token + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            ::fsync(fd) == 0;
  int savedErrno = errno;
  ::close(fd);
  if (!ok) return std::unexpected(errnoError("write " + path, savedErrno));
  return token;
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

Result<Tokens> loadOrCreateTokens(const std::string& stateDir) {
  Tokens tokens;
  auto admin = loadOrCreate(stateDir + "/admin.token");
  if (!admin) return std::unexpected(admin.error().wrap("admin token"));
  auto join = loadOrCreate(stateDir + "/join.token");
  if (!join) return std::unexpected(join.error().wrap("join token"));
  tokens.admin = std::move(*admin);
  tokens.join = std::move(*join);
  return tokens;
}

std::optional<Error> authenticate(const Tokens& tokens, http::Access access,
                                  std::string_view authorization) {
  if (access == http::Access::kPublic) return std::nullopt;
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization.starts_with(kBearer)) {
    return Error(ErrorCode::kUnauthenticated, "missing bearer token");
  }
  std::string_view token = authorization.substr(kBearer.size());
  if (constantTimeEquals(token, tokens.admin)) return std::nullopt;
  if (constantTimeEquals(token, tokens.join)) {
    if (access == http::Access::kAgent) return std::nullopt;
    return Error(ErrorCode::kPermissionDenied, "the agent join token cannot call this endpoint");
  }
  return Error(ErrorCode::kUnauthenticated, "invalid bearer token");
}

}  // namespace skiff::controlplane
