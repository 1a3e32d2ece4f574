#include "agent/image/digest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "common/encoding.h"

namespace skiff::agent::image {

Result<Digest> Digest::parse(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (text.size() != kPrefix.size() + 64 || !text.starts_with(kPrefix)) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid digest '" + std::string(text) + "': want sha256:<64 hex digits>");
  }
  for (char c : text.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return fail(ErrorCode::kInvalidArgument,
                  "invalid digest '" + std::string(text) + "': want lowercase hex");
    }
  }
  return Digest(std::string(text));
}

Digest Digest::fromRaw(const unsigned char* raw32) {
  return Digest("sha256:" + hexEncode(raw32, 32));
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure of a few hundred bytes is not worth an error path; abort like `new` would.
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::update(const void* data, size_t size) {
  if (size > 0) {
    EVP_DigestUpdate(ctx_, data, size);
  }
}

Digest Sha256::finish() {
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx_, raw, &length);
  return Digest::fromRaw(raw);
}

Digest sha256Of(std::string_view data) {
  Sha256 hash;
  hash.update(data);
  return hash.finish();
}

Result<Digest> sha256File(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(errnoError("open " + path, errno));
  }
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      return std::unexpected(errnoError("read " + path, err));
    }
    if (n == 0) {
      break;
    }
    hash.update(buffer.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return hash.finish();
}

Error digestMismatchError(std::string_view what, const Digest& expected, const Digest& actual) {
  std::string message(what);
  message.append(" ").append(expected.str()).append(": ").append(kDigestMismatch);
  message.append(" (content hashes to ").append(actual.str()).append(")");
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}

bool isDigestMismatch(const Error& error) {
  return error.code() == ErrorCode::kInvalidArgument &&
         error.message().find(kDigestMismatch) != std::string::npos;
}

}  // namespace skiff::agent::image
